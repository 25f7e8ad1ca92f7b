"""Retry policy arithmetic and the deliverer's outcomes, with a recording channel (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.outcome import DeadLetter, Delivered
from dispatcher.delivery.retry import RetryPolicy, compute_backoff
from dispatcher.events import Event
from dispatcher.subscriptions.models import Subscription


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [(1, 1.0, 0.5), (2, 1.0, 1.0), (3, 1.0, 2.0), (10, 1.0, 10.0), (3, 0.5, 1.0), (1, 0.0, 0.0)],
)
def test_backoff_is_capped_full_jitter(attempt: int, jitter: float, expected: float) -> None:
    assert compute_backoff(attempt, initial_s=0.5, max_s=10.0, jitter=jitter) == expected


RETRYABLE = SendFailed("HTTP 503", retryable=True)


@pytest.mark.parametrize(
    ("attempt", "failure", "expected"),
    [
        (1, RETRYABLE, 0.5),
        (2, RETRYABLE, 1.0),
        (3, RETRYABLE, None),  # tries used up
        (1, SendFailed("HTTP 404", retryable=False), None),
        (1, SendFailed("429", retryable=True, retry_after_s=7.0), 7.0),
        (1, SendFailed("429", retryable=True, retry_after_s=120.0), None),  # longer than we hold
    ],
)
def test_next_delay(attempt: int, failure: SendFailed, expected: float | None) -> None:
    policy = RetryPolicy(attempts=3, initial_s=0.5, max_s=10.0, max_retry_after_s=30.0)
    assert policy.next_delay(attempt, failure, jitter=1.0) == expected


@dataclass
class RecordingChannel:
    results: list[SendResult]
    sent: list[Delivery] = field(default_factory=list)

    async def send(self, delivery: Delivery) -> SendResult:
        self.sent.append(delivery)
        return self.results.pop(0)

    async def close(self) -> None:
        return None


class ExplodingChannel(RecordingChannel):
    async def send(self, delivery: Delivery) -> SendResult:
        self.sent.append(delivery)
        raise RuntimeError("bug")


def _delivery() -> Delivery:
    event = Event(id="e1", source="s", type="a.b", attributes={}, data=None, body=b"{}")
    sub = Subscription.model_validate({"name": "s1", "events": ["*"], "target": {"type": "log"}})
    return Delivery.of(event, sub)


async def _deliver(channel: RecordingChannel, attempts: int = 3) -> tuple[object, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    deliverer = Deliverer(
        {"log": channel}, RetryPolicy(attempts=attempts), sleep=sleep, jitter=lambda: 1.0
    )
    return await deliverer.deliver(_delivery()), slept


async def test_success_first_time() -> None:
    outcome, slept = await _deliver(RecordingChannel([SendOk("HTTP 204")]))
    assert outcome == Delivered(attempts=1, detail="HTTP 204")
    assert slept == []


async def test_retryable_then_success_waits_with_backoff() -> None:
    channel = RecordingChannel([RETRYABLE, SendFailed("x", True, retry_after_s=2.0), SendOk()])
    outcome, slept = await _deliver(channel)
    assert outcome == Delivered(attempts=3)
    assert slept == [0.5, 2.0]
    assert len({d.id for d in channel.sent}) == 1


async def test_retryable_until_exhausted_is_dead_lettered_with_reason() -> None:
    outcome, slept = await _deliver(RecordingChannel([RETRYABLE] * 3))
    assert outcome == DeadLetter("gave up after 3 tries: HTTP 503", attempts=3)
    assert slept == [0.5, 1.0]


async def test_permanent_failure_is_not_retried() -> None:
    channel = RecordingChannel([SendFailed("HTTP 404 from http://x", retryable=False)])
    outcome, _ = await _deliver(channel)
    assert outcome == DeadLetter("permanent failure: HTTP 404 from http://x", attempts=1)
    assert len(channel.sent) == 1


async def test_a_channel_that_raises_is_retried_then_dead_lettered() -> None:
    outcome, _ = await _deliver(ExplodingChannel([]), attempts=2)
    assert outcome == DeadLetter(
        "gave up after 2 tries: internal error in channel: RuntimeError", attempts=2
    )
