"""Outcome to broker message, in one place: what the broker must hold before an event is acked.

The pipeline says what became of a message (a `Verdict`: not an event, or each delivery's
outcome); `Messages.of` turns that into the messages to publish with confirms: a dead letter
(to the dead-letter exchange) for an invalid event or a delivery given up. Deliveries that
succeeded publish nothing: the happy path costs no broker round trip beyond the ack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.amqp import headers as h
from dispatcher.channels.base import Delivery
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome, RetryLater
from dispatcher.pipeline import Incoming, Invalid, Verdict
from dispatcher.settings import BrokerSettings

CLOUDEVENTS_JSON = "application/cloudevents+json"


class Route(enum.Enum):
    """Where an outgoing message goes."""

    DEAD_LETTER = "dead letter"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish (with confirms, mandatory) before the incoming one is acked."""

    route: Route
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    message_id: str | None = None


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Messages:
    """Maps verdicts to broker messages for one deployment's names (`BrokerSettings`)."""

    def __init__(self, broker: BrokerSettings) -> None:
        self._dead_exchange = broker.dead_exchange

    def of(self, incoming: Incoming, verdict: Verdict) -> list[Outgoing]:
        if isinstance(verdict, Invalid):
            return [self.invalid(incoming, verdict.reason)]
        return [
            self.dead_letter(delivery, outcome)
            for delivery, outcome in verdict.results
            if not isinstance(outcome, Delivered)
        ]

    def invalid(self, incoming: Incoming, reason: str) -> Outgoing:
        headers = dict(incoming.headers)
        headers.update({h.KIND: h.KIND_INVALID, h.REASON: reason, h.FAILED_AT: now_rfc3339()})
        return Outgoing(
            Route.DEAD_LETTER,
            self._dead_exchange,
            incoming.routing_key,
            incoming.body,
            headers,
            incoming.content_type,
        )

    def dead_letter(self, delivery: Delivery, outcome: Outcome) -> Outgoing:
        if isinstance(outcome, RetryLater):  # durable tiers are not declared yet: park it
            outcome = DeadLetter(outcome.reason, outcome.attempts)
        assert isinstance(outcome, DeadLetter)
        event = delivery.event
        headers = {
            h.KIND: h.KIND_DELIVERY,
            h.REASON: outcome.reason,
            h.SUBSCRIPTION: delivery.subscription.name,
            h.TARGET_TYPE: delivery.subscription.target.type,
            h.DELIVERY_ID: delivery.id,
            h.ATTEMPTS: outcome.attempts,
            h.EVENT_ID: event.id,
            h.FAILED_AT: now_rfc3339(),
        }
        return Outgoing(
            Route.DEAD_LETTER,
            self._dead_exchange,
            event.type,
            event.body,
            headers,
            CLOUDEVENTS_JSON,
            delivery.id,
        )
