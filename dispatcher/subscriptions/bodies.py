"""Subscription bodies as the SQL store keeps and edits them: secrets split out, merge patches.

A body is the JSON shape a subscription is written in (what `Subscription.model_validate` takes).
`split_secrets` finds every secret by walking the model's fields, so a `SecretStr` added to any
target later is found too, and so is every string of a field marked secret (a webhook's custom
`headers`: see `dispatcher.redaction`) although typed `str`. Pure: no I/O, no cryptography.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from dispatcher.redaction import secrecy


def split_secrets(model: BaseModel) -> tuple[dict[str, Any], dict[str, str]]:
    """The body of a model (the fields it was given) with each secret replaced by None, and
    the secrets revealed, keyed by their JSON pointer (RFC 6901) into the body."""
    secrets: dict[str, str] = {}
    return _model_body(model, "", secrets), secrets


def join_secrets(body: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """The body with each secret put back at its pointer: the inverse of `split_secrets`."""
    whole = copy.deepcopy(dict(body))
    for pointer, value in secrets.items():
        *parents, last = [_unescape(token) for token in pointer.split("/")[1:]]
        node: Any = whole
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node.get(token)
        if not isinstance(node, dict) or last not in node:
            raise ValueError(f"stored secret {pointer} has no place in the body")
        node[last] = value
    return whole


def revealed_body(model: BaseModel) -> dict[str, Any]:
    """The body of a model with its secrets in clear (pydantic's own dump masks them)."""
    return join_secrets(*split_secrets(model))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces.

    >>> merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": 4}})
    {'b': {'c': 4, 'd': 3}}
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _model_body(model: BaseModel, pointer: str, secrets: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        if name not in model.model_fields_set:
            continue  # left to its default, as the writer left it
        key = field.alias or name
        where = f"{pointer}/{_escape(key)}"
        marked = secrecy(field) is not None
        body[key] = _value_body(getattr(model, name), where, secrets, marked)
    return body


def _value_body(value: Any, pointer: str, secrets: dict[str, str], marked: bool = False) -> Any:
    """`marked`: the field is declared secret, so its strings are (a mapping keeps its keys)."""
    if isinstance(value, SecretStr) or (marked and isinstance(value, str)):
        secrets[pointer] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None
    if isinstance(value, BaseModel):
        return _model_body(value, pointer, secrets)
    if isinstance(value, Mapping):
        return {
            k: _value_body(v, f"{pointer}/{_escape(str(k))}", secrets, marked)
            for k, v in value.items()
        }
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_value_body(v, f"{pointer}/{i}", secrets, marked) for i, v in enumerate(value)]
    return to_jsonable_python(value)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")
