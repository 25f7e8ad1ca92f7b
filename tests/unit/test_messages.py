"""Verdicts to broker messages (`amqp/messages.py`) and back to a replay (`replacement`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiormq
from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode

from dispatcher.amqp import headers as h
from dispatcher.amqp.deadletters import DeadLetter, Replacement, replacement
from dispatcher.amqp.messages import Messages, Outgoing, Route
from dispatcher.pipeline import Incoming, Rejected
from dispatcher.settings import BrokerSettings

BROKER = BrokerSettings(queue="q")
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def replayed_to(out: Outgoing) -> str:
    """The queue `dispatcher dead-letters replay` would send this dead letter to."""
    properties = aiormq.spec.Basic.Properties(headers=dict(out.headers))
    letter = DeadLetter(1, out.body, dict(out.headers), properties, "q.dead", out.routing_key)
    plan = replacement(letter, BROKER, NOW)
    assert isinstance(plan, Replacement), plan
    return plan.queue


def test_an_invalid_event_is_replayed_to_the_work_queue() -> None:
    incoming = Incoming(b"{not json", {}, "application/json", "x")
    out = Messages(BROKER).rejected(incoming, Rejected("not JSON"))
    assert (out.route, out.headers[h.KIND], out.headers[h.REASON]) == (
        Route.DEAD_LETTER,
        h.KIND_INVALID,
        h.INVALID_EVENT,
    )
    assert replayed_to(out) == "q"


def test_a_delivery_refused_as_invalid_is_replayed_to_its_own_subscription_only() -> None:
    # e.g. max_event_bytes lowered while it waited on a tier: replaying it must not send the
    # event to every subscription again
    headers = {h.KIND: h.KIND_DELIVERY, h.SUBSCRIPTION: "s1", h.DELIVERY_ID: "dlv_1"}
    incoming = Incoming(b"{}", headers, "application/json", "q.deliveries")
    out = Messages(BROKER).rejected(incoming, Rejected("too large"))
    assert out.headers[h.KIND] == h.KIND_DELIVERY
    assert out.headers[h.REASON] == h.INVALID_EVENT
    assert replayed_to(out) == "q.deliveries"


def test_a_refused_message_keeps_headers_pamqp_decodes_but_cannot_encode() -> None:
    # found by fuzz/fuzz_events_binary.py (corpus: non-utf8-attribute): a long string that is not
    # UTF-8 arrives as bytes, which pamqp cannot publish, so the dead letter failed and the
    # message went round until the delivery limit parked it without its reason
    headers = {
        "ce-type": b"\xff\xfe",
        "x-ratio": 1e300,  # a double: pamqp writes floats as single precision
        "x-amount": Decimal(4294967295),  # a decimal's mantissa is 32 bits unsigned in, signed out
        "x-death": [{"trace": b"\xc3\x28", "count": 1}],
    }
    out = Messages(BROKER).rejected(Incoming(b"", headers, None, "x"), Rejected("not UTF-8"))

    _, sent = amqp_decode.field_table(amqp_encode.field_table(out.headers))
    assert sent["ce-type"] == bytearray(b"\xff\xfe")  # the same bytes, as a byte array
    assert sent["x-death"] == [{"trace": bytearray(b"\xc3\x28"), "count": 1}]
    assert (sent["x-ratio"], sent["x-amount"]) == ("1e+300", "4294967295")
    assert sent[h.LAST_ERROR] == "not UTF-8"


def test_a_replayed_message_keeps_headers_pamqp_decodes_but_cannot_encode() -> None:
    # a message the broker dead-lettered itself (its delivery limit) was never rewritten by
    # dispatcher: replaying it must not fail on the same headers
    headers: dict[str, Any] = {
        "ce-type": b"\xff\xfe",
        "x-ratio": 1e300,
        "x-death": [{"queue": "q", "count": 1}],
    }
    properties = aiormq.spec.Basic.Properties(headers=headers)
    letter = DeadLetter(1, b"{}", headers, properties, "q.dead", "x.y")
    plan = replacement(letter, BROKER, NOW)
    assert isinstance(plan, Replacement), plan
    _, sent = amqp_decode.field_table(amqp_encode.field_table(plan.headers))
    assert (sent["ce-type"], sent["x-ratio"]) == (bytearray(b"\xff\xfe"), "1e+300")
