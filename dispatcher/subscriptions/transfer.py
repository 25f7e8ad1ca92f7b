"""Subscriptions in and out of files, for `dispatcher subscriptions add|import|export` (pure:
no store, no I/O): `${VAR}` read as the config loader reads it, the merge patch that turns one
body into another, whether two subscriptions are the same, and exports whose secrets are
`${DISPATCHER_SECRET_<NAME>_<FIELD>}` references."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dispatcher.config import REFERENCE
from dispatcher.subscriptions.models import Subscription

#: the prefix of the variables `export` refers to secrets by
VARIABLE_PREFIX = "DISPATCHER_SECRET_"


#: `$${` (a literal `${`), a reference, or a `${` that opens none: as the config loader reads them
_EXPAND = re.compile(r"\$(\$\{)|" + REFERENCE + r"|\$\{")


def expanded(value: Any, path: tuple[str, ...], problems: list[tuple[str, str]]) -> Any:
    """`value` with `${VAR}`, `${VAR:-default}` and `$${` read as the config loader reads them."""
    if isinstance(value, dict):
        return {key: expanded(item, (*path, str(key)), problems) for key, item in value.items()}
    if isinstance(value, list):
        return [expanded(item, (*path, str(i)), problems) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return str(escaped)
        if name is None:
            problems.append((".".join(path), "a '${' must open ${NAME}; $${ is a literal"))
            return match.group()
        found = os.environ.get(name)
        if found is None and default is None:
            problems.append((".".join(path), f"environment variable {name} is not set"))
        return default if default is not None and not found else found or ""

    return _EXPAND.sub(replace, value)


def mask_problems(subscription: Subscription) -> list[tuple[str, str]]:
    from dispatcher.admin.api import MASK
    from dispatcher.subscriptions.bodies import split_secrets

    return [
        (field_of(pointer), "is a mask (****...) as shown, not the secret: give the secret")
        for pointer, secret in split_secrets(subscription)[1].items()
        if secret.startswith(MASK)
    ]


def field_of(pointer: str) -> str:
    """`target.headers.X-Key` of the JSON pointer `/target/headers/X-Key`."""
    tokens = pointer.split("/")[1:]
    return ".".join(token.replace("~1", "/").replace("~0", "~") for token in tokens)


def same(one: Subscription, other: Subscription) -> bool:
    """The same subscription, however each was written (defaults given or left out)."""
    from dispatcher.subscriptions.bodies import split_secrets

    return (
        one.model_dump(mode="json") == other.model_dump(mode="json")
        and split_secrets(one)[1] == split_secrets(other)[1]
    )


def replacing(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new` (keys `new` leaves out: null)."""
    patch: dict[str, Any] = dict.fromkeys(set(old) - set(new))
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = replacing(before, value)
        elif key not in old or value != before:
            patch[key] = value
    return patch


def exported(
    subscriptions: Iterable[Subscription],
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Each subscription's body with every secret a `${DISPATCHER_SECRET_<NAME>_<FIELD>}`
    reference (and any other `${` escaped as `$${`), and the variables referred to."""
    from dispatcher.subscriptions.bodies import join_secrets, split_secrets

    bodies: list[dict[str, Any]] = []
    variables: list[dict[str, str]] = []
    used: set[str] = set()
    for sub in subscriptions:
        body, secrets = split_secrets(sub)
        references = {}
        for pointer in secrets:
            at = field_of(pointer)
            base = VARIABLE_PREFIX + re.sub(r"[^A-Z0-9]+", "_", f"{sub.name}_{at}".upper())
            name, n = base.rstrip("_"), 1
            while name in used:  # two names that differ only in punctuation
                n += 1
                name = f"{base.rstrip('_')}_{n}"
            used.add(name)
            variables.append({"name": name, "subscription": sub.name, "field": at})
            references[pointer] = "${" + name + "}"
        bodies.append(join_secrets(_escaped(body), references))
    return bodies, variables


def _escaped(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value.replace("${", "$${") if isinstance(value, str) else value
