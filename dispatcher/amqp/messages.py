"""Outcome to broker message, in one place: what the broker must hold before an event is acked.

The pipeline says what became of a message (a `Verdict`: rejected as it came, or each
delivery's outcome); `Messages.of` turns that into the messages to publish with confirms:
- a delivery to retry later goes to the retry tier of its delay (`<queue>.retry.<delay>`),
  carrying its subscription and history in headers (`dispatcher.amqp.headers`);
- a delivery given up, or a message that is no event, goes to the dead-letter exchange with
  the reason, the last error and the history.
Deliveries that succeeded publish nothing: the happy path costs no broker round trip beyond the
ack. `read_resume` reads a delivery's headers back when its tier hands it to the deliveries queue.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dispatcher.amqp import headers as h
from dispatcher.amqp.topology import QueueSpec, retry_queue
from dispatcher.channels.base import Delivery
from dispatcher.delivery.outcome import DeadLetter, RetryLater
from dispatcher.pipeline import Handled, Incoming, Rejected, Resume, Verdict
from dispatcher.settings import BrokerSettings

CLOUDEVENTS_JSON = "application/cloudevents+json"
#: the longest last error a header carries: reasons are short, but a header has no bound but
#: the broker's frame size, and a message that cannot be published is never acked
MAX_ERROR_CHARS = 1000


class Route(enum.Enum):
    """Where an outgoing message goes."""

    DEAD_LETTER = "dead letter"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish (with confirms, mandatory) before the incoming one is acked.
    `declare` is a queue to declare first if this session has not yet (a retry tier)."""

    route: Route
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    message_id: str | None = None
    declare: QueueSpec | None = None


def rfc3339(epoch_s: float | None = None) -> str:
    moment = datetime.now(UTC) if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(value: object) -> float | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "\u2026"


def read_resume(headers: Mapping[str, Any]) -> Resume | str:
    """The delivery a message of the deliveries queue carries on, or why it carries none."""
    subscription = _text(headers.get(h.SUBSCRIPTION))
    if not subscription:
        return f"a message on the deliveries queue without the {h.SUBSCRIPTION} header"
    return Resume(
        subscription=subscription,
        attempts=_count(headers.get(h.ATTEMPTS)),
        retries=_count(headers.get(h.RETRIES)),
        first_attempt_at=_epoch(headers.get(h.FIRST_ATTEMPT_AT)),
        last_error=_text(headers.get(h.LAST_ERROR)),
    )


class Messages:
    """Maps verdicts to broker messages for one deployment's names (`BrokerSettings`)."""

    def __init__(self, broker: BrokerSettings) -> None:
        self._broker = broker
        self._dead_exchange = broker.dead_exchange

    def of(self, incoming: Incoming, verdict: Verdict) -> list[Outgoing]:
        if isinstance(verdict, Rejected):
            return [self.rejected(incoming, verdict)]
        return self._deliveries(verdict) if verdict.results else []

    def _deliveries(self, verdict: Handled) -> list[Outgoing]:
        out = []
        for delivery, outcome in verdict.results:
            if isinstance(outcome, RetryLater):
                out.append(self.retry(delivery, outcome))
            elif isinstance(outcome, DeadLetter):
                out.append(self.dead_letter(delivery, outcome))
        return out

    def rejected(self, incoming: Incoming, verdict: Rejected) -> Outgoing:
        """The message as it came, headers and all, with why it was dead-lettered. A delivery
        (from a tier or a replay) stays one, so a replay sends it to its one subscription."""
        headers = {name: h.republishable(value) for name, value in incoming.headers.items()}
        if verdict.code == h.INVALID_EVENT and headers.get(h.KIND) != h.KIND_DELIVERY:
            headers[h.KIND] = h.KIND_INVALID
        headers.update({h.REASON: verdict.code, h.LAST_ERROR: _bounded(verdict.reason)})
        headers[h.FAILED_AT] = rfc3339()
        return Outgoing(
            Route.DEAD_LETTER,
            self._dead_exchange,
            incoming.routing_key,
            incoming.body,
            headers,
            incoming.content_type,
        )

    def retry(self, delivery: Delivery, outcome: RetryLater) -> Outgoing:
        queue = retry_queue(self._broker, outcome.delay_s)
        headers = self._about(delivery, outcome.attempts, outcome.reason)
        headers[h.RETRIES] = outcome.retries
        headers[h.FIRST_ATTEMPT_AT] = rfc3339(outcome.first_attempt_at)
        if outcome.last_attempt_at is not None:
            headers[h.LAST_ATTEMPT_AT] = rfc3339(outcome.last_attempt_at)
        headers[h.TIER] = queue.name.removeprefix(self._broker.retry_queue(""))
        return Outgoing(
            Route.RETRY,
            "",
            queue.name,
            delivery.event.body,
            headers,
            CLOUDEVENTS_JSON,
            delivery.id,
            declare=queue,
        )

    def dead_letter(self, delivery: Delivery, outcome: DeadLetter) -> Outgoing:
        headers = self._about(delivery, outcome.attempts, outcome.reason)
        headers[h.REASON] = outcome.code
        if outcome.first_attempt_at is not None:
            headers[h.FIRST_ATTEMPT_AT] = rfc3339(outcome.first_attempt_at)
        if outcome.last_attempt_at is not None:
            headers[h.LAST_ATTEMPT_AT] = rfc3339(outcome.last_attempt_at)
        headers[h.FAILED_AT] = rfc3339()
        return Outgoing(
            Route.DEAD_LETTER,
            self._dead_exchange,
            delivery.event.type,
            delivery.event.body,
            headers,
            CLOUDEVENTS_JSON,
            delivery.id,
        )

    @staticmethod
    def _about(delivery: Delivery, attempts: int, last_error: str) -> dict[str, Any]:
        return {
            h.KIND: h.KIND_DELIVERY,
            h.SUBSCRIPTION: delivery.subscription.name,
            h.TARGET_TYPE: delivery.subscription.target.type,
            h.DELIVERY_ID: delivery.id,
            h.EVENT_ID: delivery.event.id,
            h.ATTEMPTS: attempts,
            h.LAST_ERROR: _bounded(last_error),
        }
