"""What both event targets require of every answer of `dispatcher.events.decode`.

`decode` documents that it never raises on input: a message is an `Event` or an
`InvalidEvent(reason)`. Beyond that, what the rest of the daemon relies on:
- a reason is short text that encodes as UTF-8: it becomes a dead-letter header and a log field;
- an event's type is a valid routing key (at most 255 bytes of UTF-8), its attributes are JSON
  scalars, and its `body` decodes again, in structured mode under the same size limit, to the
  same event: a delivery waiting on a retry tier comes back as that body (`Pipeline.resume`).
"""

from __future__ import annotations

from dispatcher.events import Event, EventLimits, InvalidEvent, decode

#: the smallest `broker.max_event_bytes` a config may set: fuzzed inputs reach it
SMALLEST_MAX_EVENT_BYTES = 1024
#: a reason quotes bits of input, each cut to ~80 characters; this bounds it whatever the input
MAX_REASON_CHARS = 1024
#: the content type a delivery comes back from a retry tier with (`dispatcher.amqp.messages`)
CLOUDEVENTS_JSON = "application/cloudevents+json"


def check_decoded(result: Event | InvalidEvent, max_bytes: int) -> None:
    """Raise AssertionError where `result`, decoded under `max_bytes`, breaks the contract."""
    if isinstance(result, InvalidEvent):
        reason = result.reason
        assert isinstance(reason, str), reason
        assert 0 < len(reason) <= MAX_REASON_CHARS, f"a reason of {len(reason)} characters"
        reason.encode("utf-8")  # raises on a lone surrogate
        return
    assert isinstance(result, Event), f"decode answered a {type(result).__name__}"
    for value in (result.id, result.source, result.type):
        assert isinstance(value, str), value
        assert value, "an empty id, source or type"
    assert len(result.type.encode("utf-8")) <= 255, "a type too long for a routing key"
    for name, value in result.attributes.items():
        assert isinstance(value, str | int | float), f"attribute {name!r} is a {type(value)}"
    again = decode(
        result.body, None, CLOUDEVENTS_JSON, limits=EventLimits(max_event_bytes=max_bytes)
    )
    assert isinstance(again, Event), f"the event's body does not decode again: {again}"
    assert (again.attributes, again.data) == (result.attributes, result.data), (
        "the event's body decodes to another event"
    )
