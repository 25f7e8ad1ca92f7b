"""Fuzz the structured-mode event decoder: each input is a message body, as the consumer hands it
to `dispatcher.events.decode` (headers without a specversion, so the body is the whole event).

Every body is an `Event` or an `InvalidEvent` meeting `fuzz.decoded`'s contract, whatever the
content type; run by scripts/fuzz, corpus in fuzz/corpus/events_structured/.
"""

from __future__ import annotations

from fuzz.harness import fuzz, instrumented

with instrumented(__name__):
    from dispatcher.events import DEFAULT_MAX_EVENT_BYTES, EventLimits, decode
    from fuzz.decoded import CLOUDEVENTS_JSON, check_decoded

#: the default limit, not the smallest: a body deep enough to test JSON nesting is over 1 KiB
MAX_BYTES = DEFAULT_MAX_EVENT_BYTES


def check(data: bytes) -> None:
    decoded = decode(data, {}, CLOUDEVENTS_JSON, limits=EventLimits(max_event_bytes=MAX_BYTES))
    check_decoded(decoded, MAX_BYTES)
    for content_type in (None, "application/json"):  # the body alone decides in this mode
        other = decode(
            data, {"x-death": []}, content_type, limits=EventLimits(max_event_bytes=MAX_BYTES)
        )
        assert other == decoded, f"{content_type!r} changed the answer: {other}"


if __name__ == "__main__":
    fuzz(check)
