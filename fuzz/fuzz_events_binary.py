"""Fuzz the binary-mode event decoder with AMQP headers as pamqp delivers them to the consumer.

An input is the wire form of what a message carries: its headers as an AMQP field table, then
its content type as an AMQP short string (empty: none), then the body (the rest):

    pamqp.encode.field_table(headers) + pamqp.encode.short_string(content_type) + body

pamqp decodes the table into the values the consumer really sees: str, bytes (a long string
that is not UTF-8), bytearray, bool, int, float, Decimal, datetime, None, and nested tables and
arrays of them. An input pamqp refuses is one no broker connection delivers, and is skipped.
The answer must meet `fuzz.decoded`'s contract, and a refused message must be one the consumer
can dead-letter: its headers, with the reason, encode again as an AMQP table.
"""

from __future__ import annotations

import logging

from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode

from fuzz.harness import fuzz, instrumented

with instrumented(__name__):
    from dispatcher.amqp.messages import Messages
    from dispatcher.events import EventLimits, InvalidEvent, decode
    from dispatcher.pipeline import Incoming, Rejected
    from dispatcher.settings import BrokerSettings
    from fuzz.decoded import SMALLEST_MAX_EVENT_BYTES, check_decoded


def message(data: bytes) -> Incoming | None:
    """The message `data` is the wire form of, or None if pamqp would not deliver it."""
    try:
        used, headers = amqp_decode.field_table(data)
        more, content_type = amqp_decode.short_str(data[used:])
    except ValueError:
        return None
    return Incoming(data[used + more :], headers, content_type or None, "fuzz")


def check(data: bytes) -> None:
    incoming = message(data)
    if incoming is None:
        return
    limit = SMALLEST_MAX_EVENT_BYTES  # an event re-encoded for a retry tier grows: reach the limit
    decoded = decode(
        incoming.body,
        incoming.headers,
        incoming.content_type,
        limits=EventLimits(max_event_bytes=limit),
    )
    check_decoded(decoded, limit)
    if isinstance(decoded, InvalidEvent):
        dead = Messages(BrokerSettings()).rejected(incoming, Rejected(decoded.reason))
        amqp_encode.field_table(dead.headers)


if __name__ == "__main__":
    # pamqp warns of each header name it cuts to 128 bytes: fuzzing makes many, and says nothing
    logging.getLogger("pamqp").setLevel(logging.ERROR)
    fuzz(check)
