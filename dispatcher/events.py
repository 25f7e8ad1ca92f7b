"""The CloudEvents 1.0 envelope: turn an AMQP message into an `Event`, or say why it is not one.

Pure: no I/O, no broker types. `decode` never raises on input; anything that is not a valid
event comes back as `InvalidEvent(reason)` so the consumer can dead-letter it with that reason.
"""

from __future__ import annotations

import base64
import calendar
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

DEFAULT_MAX_EVENT_BYTES = 256 * 1024

#: Extension attributes that subscriptions filter on, by the filter field that reads them.
MATCH_ATTRIBUTES = (
    "organization",
    "project",
    "environment",
    "envtype",
    "repository",
    "app",
    "actor",
)

#: Header prefixes that carry attributes in binary mode, lower-case: compared case-insensitively.
_PREFIXES = ("ce-", "ce_", "cloudevents:", "cloudevents_")
_REQUIRED = ("id", "source", "type")
_CHECKED_FIRST = frozenset(("specversion", *_REQUIRED))
_STRING_ATTRIBUTES = frozenset(("subject", "datacontenttype", "dataschema", *MATCH_ATTRIBUTES))
_KNOWN_NAMES = _CHECKED_FIRST | _STRING_ATTRIBUTES | {"time"}
_DATA_KEYS = frozenset(("data", "data_base64"))
_NAME = re.compile(r"[a-z0-9]+")
_NAME_RULE = "use lower-case letters a-z and digits only"
_RFC3339 = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:"
    r"(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MAX_TYPE_BYTES = 255  # the type is the routing key, an AMQP short string
_MAX_DEPTH = 254  # orjson encodes no deeper (it decodes 1024): renderers and logs re-encode data
_ECHO_CHARS = 80
_KINDS = {type(None): "null", bool: "bool", str: "string", dict: "object", list: "array"}
_JSON_KINDS = {**_KINDS, int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True, slots=True)
class Event:
    """A valid CloudEvent.

    `attributes` holds every context attribute (required, optional and extensions) but not the
    data. `body` is the structured-mode JSON encoding of the whole event: the original bytes when
    the event arrived in structured mode, so it can be forwarded without re-encoding.
    """

    id: str
    source: str
    type: str
    attributes: Mapping[str, Any]
    data: Any
    body: bytes

    def attr(self, name: str) -> str | None:
        """A string attribute, or None when absent (extension values are strings after decode)."""
        value = self.attributes.get(name)
        return value if isinstance(value, str) else None

    @property
    def time(self) -> str | None:
        return self.attr("time")

    @property
    def subject(self) -> str | None:
        return self.attr("subject")


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """A message that is not a valid event, and the reason a person can act on."""

    reason: str


def decode(
    body: bytes,
    headers: Mapping[str, Any] | None = None,
    content_type: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Event | InvalidEvent:
    """Decode one AMQP message (structured or binary mode) into an Event or an InvalidEvent."""
    if len(body) > max_bytes:
        return InvalidEvent(f"message of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    if not isinstance(content_type, str) or not content_type:
        content_type = None
    # The AMQP binding: an application/cloudevents* content type always means structured mode.
    if headers and not (content_type or "").lower().startswith("application/cloudevents"):
        found = _attribute_headers(headers)
        if any(name == "specversion" for _, name, _ in found):
            return _binary(body, found, content_type, max_bytes)
    return _structured(body)


def _structured(body: bytes) -> Event | InvalidEvent:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return InvalidEvent(_why_not_json(body, error))
    if not isinstance(document, dict):
        return InvalidEvent(f"body is a JSON {_JSON_KINDS[type(document)]}, expected an object")
    attributes: dict[str, Any] = {}
    for name, value in document.items():
        if name in _DATA_KEYS:
            continue
        if name not in _KNOWN_NAMES and not _NAME.fullmatch(name):
            return InvalidEvent(f"{_show(name)} is not a valid attribute name: {_NAME_RULE}")
        if value is not None:  # the JSON format: a null attribute is an absent one
            attributes[name] = value
    reason = _check(attributes) or _check_data(document) or _check_depth(body, document)
    if reason is not None:
        return InvalidEvent(reason)
    data = document.get("data")
    return Event(attributes["id"], attributes["source"], attributes["type"], attributes, data, body)


def _why_not_json(body: bytes, error: orjson.JSONDecodeError) -> str:
    if not body:
        return "body is empty"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not valid UTF-8"
    return f"body is not valid JSON: {error}"


def _check_data(document: dict[str, Any]) -> str | None:
    encoded = document.get("data_base64")
    if encoded is None:
        return None
    if document.get("data") is not None:
        return "event has both 'data' and 'data_base64', expected at most one"
    if not isinstance(encoded, str):
        return f"'data_base64' must be a base64 string, got {_kind(encoded)}"
    try:
        base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character
        return "'data_base64' is not valid base64"
    return None


def _check_depth(body: bytes, document: dict[str, Any]) -> str | None:
    if body.count(b"[") + body.count(b"{") <= _MAX_DEPTH:
        return None  # cannot be nested that deep: the common case costs two scans of the bytes
    try:
        encode(document)
    except orjson.JSONEncodeError:  # the only one a decoded document can raise: too deep
        return f"event is nested more than {_MAX_DEPTH} levels deep"
    return None


def _attribute_headers(headers: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(header, attribute name, value) for each header with an attribute prefix."""
    found = []
    for header, value in headers.items():
        lower = header.lower() if isinstance(header, str) else ""
        for prefix in _PREFIXES:
            if lower.startswith(prefix):
                found.append((header, lower[len(prefix) :], value))
                break
    return found


def _binary(
    body: bytes, found: list[tuple[str, str, Any]], content_type: str | None, max_bytes: int
) -> Event | InvalidEvent:
    attributes = _binary_attributes(found)
    if isinstance(attributes, str):
        return InvalidEvent(attributes)
    if content_type is not None:
        attributes.setdefault("datacontenttype", content_type)
    reason = _check(attributes)
    if reason is not None:
        return InvalidEvent(reason)
    document, data = dict(attributes), None
    media_type = attributes.get("datacontenttype")
    if body and (media_type is None or _is_json(media_type)):
        try:
            data = document["data"] = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            if media_type is not None:
                return InvalidEvent(f"body is not valid JSON ({_show(media_type)}): {error}")
    if body and "data" not in document:
        try:
            data = document["data"] = body.decode("utf-8")
        except UnicodeDecodeError:
            document["data_base64"] = base64.b64encode(body).decode("ascii")
    try:
        encoded = encode(document)
    except orjson.JSONEncodeError as error:  # a huge integer, a lone surrogate in a header
        return InvalidEvent(f"event cannot be encoded as JSON: {error}")
    if len(encoded) > max_bytes:  # kept in this form: a retry tier hands it back to `decode`
        return InvalidEvent(
            f"event of {len(encoded)} bytes as structured JSON exceeds the limit of"
            f" {max_bytes} bytes"
        )
    type_ = attributes["type"]
    return Event(attributes["id"], attributes["source"], type_, attributes, data, encoded)


def _binary_attributes(found: list[tuple[str, str, Any]]) -> dict[str, Any] | str:
    """The attributes the headers carry, or why they cannot be read."""
    attributes: dict[str, Any] = {}
    header_of: dict[str, str] = {}
    for header, name, value in found:
        if name not in _KNOWN_NAMES and not _NAME.fullmatch(name):
            return f"header {_show(header)} does not name a valid attribute: {_NAME_RULE}"
        if name in _DATA_KEYS:
            return f"header {_show(header)} is not allowed: in binary mode the body is the data"
        if name in header_of:
            return f"attribute {name!r} is set twice: {_show(header_of[name])}, {_show(header)}"
        header_of[name] = header
        if isinstance(value, bytes | bytearray):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                return f"header {_show(header)} is not valid UTF-8"
        elif isinstance(value, datetime):  # an AMQP timestamp, which is UTC
            value = (value.isoformat() if value.tzinfo else f"{value.isoformat()}Z").replace(
                "+00:00", "Z"
            )
        if value is not None:  # an AMQP void is an absent attribute
            attributes[name] = value
    return attributes


def _check(attributes: Mapping[str, Any]) -> str | None:
    """Why these context attributes do not make a valid event, or None."""
    version = attributes.get("specversion")
    if version is None:
        return "missing required attribute 'specversion'"
    if not isinstance(version, str):
        return f"attribute 'specversion' must be the string '1.0', got {_kind(version)}"
    if version != "1.0":
        return f"unsupported specversion {_show(version)}, expected '1.0'"
    for name in _REQUIRED:
        value = attributes.get(name)
        if value is None:
            return f"missing required attribute {name!r}"
        if not isinstance(value, str) or not value:
            got = "an empty string" if isinstance(value, str) else _kind(value)
            return f"attribute {name!r} must be a non-empty string, got {got}"
    type_ = attributes["type"]
    if not type_.isprintable() or " " in type_:  # isprintable also rejects lone surrogates
        return f"attribute 'type' must not contain whitespace or control characters: {_show(type_)}"
    size = len(type_) if type_.isascii() else len(type_.encode("utf-8"))
    if size > _MAX_TYPE_BYTES:
        return f"attribute 'type' is {size} bytes long, the limit is {_MAX_TYPE_BYTES} bytes"
    for name, value in attributes.items():
        if name in _CHECKED_FIRST or (type(value) is str and name != "time"):
            continue  # the common case: any string is valid for any other attribute
        reason = _check_optional(name, value)
        if reason is not None:
            return reason
    return None


def _check_optional(name: str, value: Any) -> str | None:
    if name == "time":
        if not isinstance(value, str):
            return f"attribute 'time' must be an RFC 3339 timestamp string, got {_kind(value)}"
        if not _is_rfc3339(value):
            shown = _show(value)
            return (
                f"attribute 'time' must be an RFC 3339 timestamp with an offset or Z, got {shown}"
            )
    elif name in _STRING_ATTRIBUTES:
        if not isinstance(value, str):
            return f"attribute {name!r} must be a string, got {_kind(value)}"
    elif not isinstance(value, str | int | float):
        return f"attribute {_show(name)} must be a string, number or boolean, got {_kind(value)}"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"attribute {_show(name)} must be a finite number, got {value}"
    return None


def _is_rfc3339(value: str) -> bool:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    return day <= _DAYS_IN_MONTH[month - 1] + (month == 2 and calendar.isleap(year))


def _is_json(media_type: str) -> bool:
    essence = media_type.partition(";")[0].strip().lower()
    return essence in ("application/json", "text/json") or essence.endswith("+json")


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _show(text: str) -> str:
    """A piece of input for a reason: quoted and escaped like repr, at most ~80 characters."""
    return repr(text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 1] + "\u2026")


def new_event(
    type: str,
    source: str,
    *,
    data: Any = None,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
    **extensions: str,
) -> dict[str, Any]:
    """A well-formed structured-mode CloudEvent as a dict: a fresh id and the current time unless
    given. Extensions (`project=`, `envtype=`, ...) are added as attributes when not None."""
    if time is not None and time.utcoffset() is None:
        raise ValueError("time must be timezone-aware (e.g. datetime.now(UTC))")
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }
    if subject is not None:
        event["subject"] = subject
    event.update({name: value for name, value in extensions.items() if value is not None})
    if data is not None:
        event["datacontenttype"] = "application/json"
        event["data"] = data
    return event


def encode(event: Mapping[str, Any]) -> bytes:
    """The structured-mode JSON encoding of an event dict."""
    return orjson.dumps(event)
