"""What happens to one message: decode, match, deliver to every match, and say which messages
the broker must take (dead letters) before the event may be acked.

Broker-neutral: the consumer turns AMQP deliveries into `Incoming` and publishes the returned
`Outgoing` messages with confirms. `broker_actions` is the one place where delivery outcomes
become broker messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from dispatcher.admin.metrics import Metrics
from dispatcher.channels.base import Delivery
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome, RetryLater
from dispatcher.events import Event, InvalidEvent, decode
from dispatcher.subscriptions.matcher import Matcher

log = structlog.get_logger(__name__)

CLOUDEVENTS_JSON = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class Incoming:
    body: bytes
    headers: Mapping[str, Any]
    content_type: str | None
    routing_key: str
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish (with confirms) before the incoming one is acked."""

    kind: str  # "dead_letter" now; retry tiers add "retry"
    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    routing_key: str
    message_id: str | None = None


@dataclass(slots=True)
class Stats:
    consumed: int = 0
    invalid: int = 0
    unmatched: int = 0
    delivered: int = 0
    dead_lettered: int = 0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def invalid_dead_letter(message: Incoming, reason: str) -> Outgoing:
    headers = dict(message.headers)
    headers.update({"x-dispatcher-kind": "invalid-event", "x-dispatcher-reason": reason})
    headers["x-dispatcher-failed-at"] = _now()
    return Outgoing("dead_letter", message.body, headers, message.content_type, message.routing_key)


def broker_actions(deliveries: Sequence[Delivery], outcomes: Sequence[Outcome]) -> list[Outgoing]:
    """Map each delivery's outcome to what the broker must hold before the event is acked."""
    actions: list[Outgoing] = []
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        if isinstance(outcome, Delivered):
            continue
        if isinstance(outcome, RetryLater):  # durable tiers are not declared yet: park it
            outcome = DeadLetter(outcome.reason, outcome.attempts)
        event = delivery.event
        headers = {
            "x-dispatcher-kind": "delivery",
            "x-dispatcher-reason": outcome.reason,
            "x-dispatcher-subscription": delivery.subscription.name,
            "x-dispatcher-target-type": delivery.subscription.target.type,
            "x-dispatcher-delivery-id": delivery.id,
            "x-dispatcher-attempts": outcome.attempts,
            "x-dispatcher-event-id": event.id,
            "x-dispatcher-failed-at": _now(),
        }
        actions.append(
            Outgoing("dead_letter", event.body, headers, CLOUDEVENTS_JSON, event.type, delivery.id)
        )
    return actions


class Pipeline:
    """Decodes, matches and delivers one message at a time (many run concurrently)."""

    def __init__(
        self,
        matcher: Matcher,
        deliverer: Deliverer,
        *,
        max_event_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.matcher = matcher  # replaced whole on reload; a running match keeps the old one
        self._deliverer = deliverer
        self._max_event_bytes = max_event_bytes
        self._metrics = metrics or Metrics(process=False)
        self.stats = Stats()

    async def handle(self, message: Incoming) -> list[Outgoing]:
        self.stats.consumed += 1
        decoded = decode(
            message.body, message.headers, message.content_type, max_bytes=self._max_event_bytes
        )
        if isinstance(decoded, InvalidEvent):
            self.stats.invalid += 1
            self._metrics.event_invalid()
            log.warning(
                "invalid event dead-lettered",
                reason=decoded.reason,
                routing_key=message.routing_key,
            )
            return [invalid_dead_letter(message, decoded.reason)]
        self._metrics.event_consumed(decoded.type)
        return await self.deliver(decoded)

    async def deliver(self, event: Event) -> list[Outgoing]:
        subscriptions = self.matcher.match(event)
        if not subscriptions:
            self.stats.unmatched += 1
            self._metrics.event_unmatched()
            log.debug("no subscription matched", event_id=event.id, type=event.type)
            return []
        deliveries = [Delivery.of(event, sub) for sub in subscriptions]
        if len(deliveries) == 1:
            outcomes: list[Outcome] = [await self._deliverer.deliver(deliveries[0])]
        else:
            outcomes = list(await asyncio.gather(*map(self._deliverer.deliver, deliveries)))
        for outcome in outcomes:
            if isinstance(outcome, Delivered):
                self.stats.delivered += 1
            else:
                self.stats.dead_lettered += 1
        return broker_actions(deliveries, outcomes)
