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
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome, RetryLater
from dispatcher.events import DEFAULT_LIMITS, Event, EventLimits, InvalidEvent, decode
from dispatcher.observe import EventObserver, NullObserver
from dispatcher.subscriptions.matcher import Matcher
from dispatcher.subscriptions.models import Subscription

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
    fanout_exceeded: int = 0  # events that matched more than `max_fanout` subscriptions
    retried: int = 0


class Pipeline:
    """Decodes, matches and delivers one message at a time (many run concurrently)."""

    def __init__(
        self,
        matcher: Matcher,
        deliverer: Deliverer,
        *,
        max_fanout: int,
        limits: EventLimits = DEFAULT_LIMITS,
        metrics: EventObserver | None = None,
    ) -> None:
        """`max_fanout`: the most subscriptions one event is delivered to; one that matches
        more is delivered to the first `max_fanout` (in the matcher's order, the
        subscriptions' own) and dead-lettered as `fanout_exceeded` for each of the rest, so a
        person can see it and replay those, and no event holds unbounded work in memory."""
        self.matcher = matcher  # replaced whole on reload; a running match keeps the old one
        self._deliverer = deliverer
        self._limits = limits
        self._max_fanout = max_fanout
        self._metrics = NullObserver() if metrics is None else metrics
        self.stats = Stats()

    async def handle(self, message: Incoming) -> Verdict:
        self.stats.consumed += 1
        decoded = decode(message.body, message.headers, message.content_type, limits=self._limits)
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
        deliveries = [Delivery.of(event, sub) for sub in subscriptions[: self._max_fanout]]
        if len(deliveries) == 1:
            outcomes: list[Outcome] = [await self._deliverer.deliver(deliveries[0])]
        else:
            outcomes = list(await asyncio.gather(*map(self._deliverer.deliver, deliveries)))
        self._count(outcomes)
        results = tuple(zip(deliveries, outcomes, strict=True))
        if len(subscriptions) > self._max_fanout:
            results += self._over_fanout(event, subscriptions)
        return Handled(results)

    def _over_fanout(
        self, event: Event, subscriptions: list[Subscription]
    ) -> tuple[tuple[Delivery, Outcome], ...]:
        """A `fanout_exceeded` dead letter for each subscription past `max_fanout`."""
        rest = subscriptions[self._max_fanout :]
        why = (
            f"the event matched {len(subscriptions)} subscriptions and delivery.max_fanout is "
            f"{self._max_fanout}: not delivered to this one; replay the dead letter to deliver it"
        )
        log.warning(
            "event matched more subscriptions than delivery.max_fanout; the rest dead-lettered",
            event_id=event.id,
            type=event.type,
            matched=len(subscriptions),
            max_fanout=self._max_fanout,
        )
        self.stats.fanout_exceeded += 1
        self.stats.dead_lettered += len(rest)
        self._metrics.fanout_exceeded(len(rest))
        dead = DeadLetter(why, attempts=0, code="fanout_exceeded")
        return tuple((Delivery.of(event, sub), dead) for sub in rest)

    async def resume(self, message: Incoming, resume: Resume | str) -> Verdict:
        """One delivery from the deliveries queue: its event, to its subscription only."""
        self.stats.consumed += 1
        if isinstance(resume, str):
            log.warning("invalid delivery dead-lettered", reason=resume)
            return Rejected(resume)
        decoded = decode(message.body, None, CLOUDEVENTS_JSON, limits=self._limits)
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
