"""Verdicts to broker messages (`amqp/messages.py`) and back to a replay (`replacement`)."""

from __future__ import annotations

from datetime import UTC, datetime

import aiormq

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
