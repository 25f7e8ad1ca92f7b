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
DEFAULT_MAX_ATTRIBUTES = 64
DEFAULT_MAX_ATTRIBUTE_BYTES = 4096
DEFAULT_MAX_DATA_DEPTH = 64

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
_ECHO_CHARS = 80
#: a JSON body's shape: its brackets, all alike, and the quotes around strings
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_QUOTED = re.compile(rb'"[^"]*"')
_KINDS = {type(None): "null", bool: "bool", str: "string", dict: "object", list: "array"}
_JSON_KINDS = {**_KINDS, int: "number", float: "number", bool: "boolean"}


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What one message may hold, so that no message makes the work or the memory spent on it
    grow without bound. Each is the `broker.` setting of the same name, and the reason a message
    over one is dead-lettered with names it. `max_attribute_bytes` bounds an attribute's name
    and its value (UTF-8); `max_data_depth` the nesting of `data` (`{"a": [1]}` is 2 deep)."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_attribute_bytes: int = DEFAULT_MAX_ATTRIBUTE_BYTES
    max_data_depth: int = DEFAULT_MAX_DATA_DEPTH


DEFAULT_LIMITS = EventLimits()


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
    limits: EventLimits = DEFAULT_LIMITS,
) -> Event | InvalidEvent:
    """Decode one AMQP message (structured or binary mode) into an Event or an InvalidEvent."""
    if len(body) > limits.max_event_bytes:
        return InvalidEvent(
            f"message of {len(body)} bytes exceeds the limit of {limits.max_event_bytes} bytes"
            " (broker.max_event_bytes)"
        )
    if not isinstance(content_type, str) or not content_type:
        content_type = None
    # The AMQP binding: an application/cloudevents* content type always means structured mode.
    if headers and not (content_type or "").lower().startswith("application/cloudevents"):
        found = _attribute_headers(headers)
        if any(name == "specversion" for _, name, _ in found):
            return _binary(body, found, content_type, limits)
    return _structured(body, limits)


def _structured(body: bytes, limits: EventLimits) -> Event | InvalidEvent:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return InvalidEvent(_why_not_json(body, error))
    if not isinstance(document, dict):
        return InvalidEvent(f"body is a JSON {_JSON_KINDS[type(document)]}, expected an object")
    if len(document) > limits.max_attributes:  # before the names are read, one by one
        count = len(document) - ("data" in document) - ("data_base64" in document)
        if count > limits.max_attributes:
            return InvalidEvent(_too_many(count, limits))
    attributes: dict[str, Any] = {}
    for name, value in document.items():
        if name in _DATA_KEYS:
            continue
        if name not in _KNOWN_NAMES:
            # Only here: a binary-mode name is an AMQP short string, 255 bytes at most.
            if len(name) > limits.max_attribute_bytes:
                size = _utf8_size(name)
                why = f"attribute name {_show(name)} is {size} bytes long"
                return InvalidEvent(f"{why}, {_limit(limits.max_attribute_bytes)}")
            if not _NAME.fullmatch(name):
                return InvalidEvent(f"{_show(name)} is not a valid attribute name: {_NAME_RULE}")
        if value is not None:  # the JSON format: a null attribute is an absent one
            attributes[name] = value
    data = document.get("data")
    reason = _check(attributes) or _check_data(document)
    # A value's JSON is at least as long as its UTF-8: a body this short holds no long value.
    if reason is None and len(body) > limits.max_attribute_bytes:
        reason = _too_long(attributes, limits.max_attribute_bytes)
    if reason is None:
        reason = _check_depth(body, limits.max_data_depth + 1, limits.max_data_depth)
    if reason is not None:
        return InvalidEvent(reason)
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
    body: bytes, found: list[tuple[str, str, Any]], content_type: str | None, limits: EventLimits
) -> Event | InvalidEvent:
    if len(found) > limits.max_attributes:
        return InvalidEvent(_too_many(len(found), limits))
    attributes = _binary_attributes(found)
    if isinstance(attributes, str):
        return InvalidEvent(attributes)
    if content_type is not None:
        attributes.setdefault("datacontenttype", content_type)
    if len(attributes) > limits.max_attributes:  # the content type made one more
        return InvalidEvent(_too_many(len(attributes), limits))
    reason = _check(attributes) or _too_long(attributes, limits.max_attribute_bytes)
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
        else:
            reason = _check_depth(body, limits.max_data_depth, limits.max_data_depth)
            if reason is not None:
                return InvalidEvent(reason)
    if body and "data" not in document:
        try:
            data = document["data"] = body.decode("utf-8")
        except UnicodeDecodeError:
            document["data_base64"] = base64.b64encode(body).decode("ascii")
    try:
        encoded = encode(document)
    except orjson.JSONEncodeError as error:  # a huge integer, a lone surrogate in a header
        return InvalidEvent(f"event cannot be encoded as JSON: {error}")
    if len(encoded) > limits.max_event_bytes:  # kept so: a retry tier hands it back to `decode`
        return InvalidEvent(
            f"event of {len(encoded)} bytes as structured JSON exceeds the limit of"
            f" {limits.max_event_bytes} bytes (broker.max_event_bytes)"
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


def _too_long(attributes: Mapping[str, Any], max_bytes: int) -> str | None:
    """Which string attribute is longer than `max_bytes` of UTF-8, if one is."""
    quick = max_bytes // 4  # a string of at most this many characters fits in any encoding
    for name, value in attributes.items():
        if type(value) is str and len(value) > quick and (size := _utf8_size(value)) > max_bytes:
            return f"attribute {_show(name)} is {size} bytes long, {_limit(max_bytes)}"
    return None


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate is refused later


def _limit(max_bytes: int) -> str:
    return f"the limit is {max_bytes} bytes (broker.max_attribute_bytes)"


def _too_many(count: int, limits: EventLimits) -> str:
    limit = limits.max_attributes
    return f"event has {count} attributes, the limit is {limit} (broker.max_attributes)"


def _check_depth(body: bytes, levels: int, max_depth: int) -> str | None:
    """Why a body that is valid JSON nests more than `levels` deep, or None (`max_depth` is the
    setting, for the reason; a structured event's envelope is one level more). Read from the
    bytes, at C speed and with no recursion: a body with no more brackets than that cannot nest
    deeper, which is almost every event; else the strings are dropped (they may hold brackets)
    and each round removes the innermost pairs, so a body is `levels` deep at most when it is
    gone after `levels` rounds."""
    if body.count(b"[") + body.count(b"{") <= levels:
        return None
    if b"\\" in body:  # escapes, as JSON tokenizes them: `\\` first, then `\"` is no quote
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = body.translate(_BRACKETS, _NOT_SHAPE).replace(b'""', b"")
    # Dropping `""` drops an empty string, or joins two strings into one: quotes still pair in
    # order, so the regex drops what is left of strings that held brackets.
    if b'"' in shape:
        shape = _QUOTED.sub(b"", shape)
    for _ in range(levels):
        if not shape:
            return None
        shape = shape.replace(b"[]", b"")
    if not shape:
        return None
    return f"data is nested more than {max_depth} levels deep (broker.max_data_depth)"


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
