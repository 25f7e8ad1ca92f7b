"""What happens to one message: decode, match, deliver to every match, and say what became of
it (a `Verdict`).

Broker-neutral: the consumer turns AMQP deliveries into `Incoming`, and
`dispatcher.amqp.messages` turns the verdict into the messages the broker must take before the
event is acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from dispatcher.channels.base import Delivery, delivery_id
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.outcome import Delivered, Outcome, RetryLater
from dispatcher.events import Event, InvalidEvent, decode
from dispatcher.observe import EventObserver, NullObserver
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
class Rejected:
    """Dead-letter the message as it came, with the reason: it is not an event
    (`invalid_event`), or the subscription it was for is gone (`subscription_gone`)."""

    reason: str
    code: str = "invalid_event"


@dataclass(frozen=True, slots=True)
class Resume:
    """A delivery coming back (from a retry tier, a parked wait, a replay) for one
    subscription, with its history so far."""

    subscription: str
    attempts: int = 0
    retries: int = 0
    first_attempt_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Handled:
    """The event's deliveries, each with how it ended (none: no subscription matched)."""

    results: tuple[tuple[Delivery, Outcome], ...]


#: what became of one message; `dispatcher.amqp.messages` turns it into broker messages
Verdict = Rejected | Handled


@dataclass(slots=True)
class Stats:
    consumed: int = 0
    invalid: int = 0
    unmatched: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    retried: int = 0


class Pipeline:
    """Decodes, matches and delivers one message at a time (many run concurrently)."""

    def __init__(
        self,
        matcher: Matcher,
        deliverer: Deliverer,
        *,
        max_event_bytes: int,
        metrics: EventObserver | None = None,
    ) -> None:
        self.matcher = matcher  # replaced whole on reload; a running match keeps the old one
        self._deliverer = deliverer
        self._max_event_bytes = max_event_bytes
        self._metrics = NullObserver() if metrics is None else metrics
        self.stats = Stats()

    async def handle(self, message: Incoming) -> Verdict:
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
            return Rejected(decoded.reason)
        self._metrics.event_consumed(decoded.type)
        return await self.deliver(decoded)

    async def deliver(self, event: Event) -> Handled:
        subscriptions = self.matcher.match(event)
        if not subscriptions:
            self.stats.unmatched += 1
            self._metrics.event_unmatched()
            log.debug("no subscription matched", event_id=event.id, type=event.type)
            return Handled(())
        deliveries = [Delivery.of(event, sub) for sub in subscriptions]
        if len(deliveries) == 1:
            outcomes: list[Outcome] = [await self._deliverer.deliver(deliveries[0])]
        else:
            outcomes = list(await asyncio.gather(*map(self._deliverer.deliver, deliveries)))
        self._count(outcomes)
        return Handled(tuple(zip(deliveries, outcomes, strict=True)))

    async def resume(self, message: Incoming, resume: Resume | str) -> Verdict:
        """One delivery from the deliveries queue: its event, to its subscription only."""
        self.stats.consumed += 1
        if isinstance(resume, str):
            log.warning("invalid delivery dead-lettered", reason=resume)
            return Rejected(resume)
        decoded = decode(message.body, None, CLOUDEVENTS_JSON, max_bytes=self._max_event_bytes)
        if isinstance(decoded, InvalidEvent):
            log.warning("invalid delivery dead-lettered", reason=decoded.reason)
            return Rejected(decoded.reason)
        subscription = self.matcher.subscription(resume.subscription)
        if subscription is None:
            why = f"subscription {resume.subscription!r} is no longer configured or enabled"
            log.warning("delivery dead-lettered", reason=why, event_id=decoded.id)
            return Rejected(why, "subscription_gone")
        delivery = Delivery(
            decoded,
            subscription,
            delivery_id(decoded, subscription.name),
            resume.attempts,
            resume.retries,
            resume.first_attempt_at,
            resume.last_error,
        )
        outcome = await self._deliverer.deliver(delivery)
        self._count((outcome,))
        return Handled(((delivery, outcome),))

    def _count(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Delivered):
                self.stats.delivered += 1
            elif isinstance(outcome, RetryLater):
                self.stats.retried += 1
            else:
                self.stats.dead_lettered += 1
