"""The CloudEvents 1.0 envelope: turn an AMQP message into an `Event`, or say why it is not one.

Pure: no I/O, no broker types. `decode` never raises on input; anything that is not a valid
event comes back as `InvalidEvent(reason)` so the consumer can dead-letter it with that reason.
"""

from __future__ import annotations

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
    raise NotImplementedError


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
