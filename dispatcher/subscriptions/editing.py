"""What an edit through the SQL store must be: a valid body, owner and labels, and the cursors
its pages hand out. Pure; the store's errors about stored data live with the store."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from dispatcher.subscriptions.matcher import compile_glob
from dispatcher.subscriptions.models import Subscription, normalise_event_name
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget, validation_context

#: the most subscriptions one page holds
MAX_PAGE = 1000

_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}")
_MASK = "**********"


def validated(body: Mapping[str, Any], budget: TemplateBudget = DEFAULT_BUDGET) -> Subscription:
    """The subscription of a body (its templates checked under `budget`), or its ValidationError
    with the input values left out: they may be secrets, given now or (in an update) stored
    before."""
    try:
        return Subscription.model_validate(body, context=validation_context(budget))
    except ValidationError as error:
        problems = [
            InitErrorDetails(
                type=PydanticCustomError(problem["type"], problem["msg"]),
                loc=problem["loc"],
                input=_MASK,
            )
            for problem in error.errors(include_url=False)
        ]
        raise ValidationError.from_exception_data(error.title, problems, hide_input=True) from None


def checked_owner(owner: str | None) -> str | None:
    if owner is not None and not 1 <= len(owner) <= 200:
        raise ValueError("owner must be from 1 to 200 characters")
    return owner


def checked_labels(labels: Mapping[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(
                f"label key {key!r} must be 1 to 63 letters, digits and _ . : / -,"
                " starting with a letter or digit"
            )
        if not isinstance(value, str) or len(value) > 200:
            raise ValueError(f"label {key!r} must have a text value of at most 200 characters")
    return dict(labels)


def event_filter(event_type: str | None) -> Callable[[Sequence[str]], bool]:
    """Whether a subscription's event patterns take this event type (all do without one)."""
    if event_type is None:
        return lambda _: True
    wanted = normalise_event_name(event_type)
    return lambda patterns: any(compile_glob(pattern)(wanted) for pattern in patterns)


def page_cursor(position: int) -> str:
    """An opaque cursor for the page after `position` (a row's place in creation order)."""
    return base64.urlsafe_b64encode(f"seq:{position}".encode()).decode().rstrip("=")


def cursor_position(cursor: str) -> int:
    """The position a cursor of `page_cursor` stands for, or ValueError."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix, _, position = text.partition(":")
    if prefix != "seq" or not position.isdigit():
        raise ValueError("not a cursor this store returned")
    return int(position)
