"""Retry policy arithmetic and the deliverer's outcomes, with a recording channel (pure logic)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
from dispatcher.delivery.breaker import BreakerSettings
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.isolation import Isolation, IsolationSettings
from dispatcher.delivery.outcome import DeadLetter, Delivered, RetryLater
from dispatcher.delivery.retry import RetryPolicy, compute_backoff
from dispatcher.delivery.schedule import Schedule
from dispatcher.events import Event
from dispatcher.rates import Rate
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
        (1, SendFailed("timed out", retryable=True, timed_out=True), None),  # to the tiers at once
    ],
)
def test_next_delay(attempt: int, failure: SendFailed, expected: float | None) -> None:
    policy = RetryPolicy(attempts=3, initial_s=0.5, max_s=10.0, max_retry_after_s=30.0)
    assert policy.next_delay(attempt, failure, jitter=1.0) == expected


@dataclass
class RecordingChannel:
    results: list[SendResult]
    sent: list[Delivery] = field(default_factory=list)

    rate: Rate | None = None

    def target_key(self, delivery: Delivery) -> str:
        return "recorded"

    def default_rate(self, delivery: Delivery) -> Rate | None:
        return self.rate

    async def send(self, delivery: Delivery) -> SendResult:
        self.sent.append(delivery)
        return self.results.pop(0)

    async def close(self) -> None:
        return None


class ExplodingChannel(RecordingChannel):
    async def send(self, delivery: Delivery) -> SendResult:
        self.sent.append(delivery)
        raise RuntimeError("bug")


NOW = 1_800_000_000.0  # the wall clock the deliverer is given
TWO_TIERS = Schedule((10.0, 60.0), max_age_s=3600.0)


def _delivery(**history: Any) -> Delivery:
    event = Event(id="e1", source="s", type="a.b", attributes={}, data=None, body=b"{}")
    sub = Subscription.model_validate({"name": "s1", "events": ["*"], "target": {"type": "log"}})
    return dataclasses.replace(Delivery.of(event, sub), **history)


async def _deliver(
    channel: RecordingChannel,
    attempts: int = 3,
    delivery: Delivery | None = None,
    schedule: Schedule = TWO_TIERS,
    isolation: Isolation | None = None,
) -> tuple[object, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    deliverer = Deliverer(
        {"log": channel},
        RetryPolicy(attempts=attempts),
        schedule,
        sleep=sleep,
        jitter=lambda: 1.0,
        clock=lambda: NOW,
        isolation=isolation,
    )
    return await deliverer.deliver(delivery or _delivery()), slept


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


async def test_retryable_past_the_tries_in_process_waits_on_the_first_tier() -> None:
    outcome, slept = await _deliver(RecordingChannel([RETRYABLE] * 3))
    assert outcome == RetryLater(
        10.0, "HTTP 503", attempts=3, retries=1, first_attempt_at=NOW, last_attempt_at=NOW
    )
    assert slept == [0.5, 1.0]


async def test_back_from_a_tier_one_try_then_the_next_tier() -> None:
    earlier = NOW - 30
    delivery = _delivery(attempts=3, retries=1, first_attempt_at=earlier)
    channel = RecordingChannel([RETRYABLE])
    outcome, slept = await _deliver(channel, delivery=delivery)
    assert outcome == RetryLater(60.0, "HTTP 503", 4, 2, earlier, NOW)
    assert (len(channel.sent), slept) == (1, [])


@pytest.mark.parametrize(
    ("history", "failure", "code"),
    [
        ({"attempts": 4, "retries": 2}, RETRYABLE, "retries_exhausted"),  # both tiers used
        ({"attempts": 1, "retries": 1, "first_attempt_at": NOW - 3590}, RETRYABLE, "expired"),
        ({}, SendFailed("HTTP 404 from http://x", retryable=False), "permanent_failure"),
    ],
)
async def test_dead_letters_say_why(
    history: dict[str, Any], failure: SendFailed, code: str
) -> None:
    outcome, _ = await _deliver(RecordingChannel([failure]), delivery=_delivery(**history))
    assert isinstance(outcome, DeadLetter)
    assert (outcome.code, outcome.reason) == (code, failure.reason)
    assert outcome.attempts == history.get("attempts", 0) + 1
    assert outcome.first_attempt_at == history.get("first_attempt_at", NOW)


async def test_a_timeout_goes_to_the_tiers_without_another_try_in_process() -> None:
    channel = RecordingChannel([SendFailed("timed out after 1s", True, timed_out=True)])
    outcome, slept = await _deliver(channel)
    assert isinstance(outcome, RetryLater)
    assert (outcome.delay_s, len(channel.sent), slept) == (10.0, 1, [])


async def test_a_long_retry_after_skips_to_a_tier_at_least_that_long() -> None:
    channel = RecordingChannel([SendFailed("429", True, retry_after_s=45.0)])
    outcome, _ = await _deliver(channel)
    assert isinstance(outcome, RetryLater)
    assert (outcome.delay_s, outcome.retries) == (60.0, 2)


async def test_a_subscriptions_own_schedule_overrides_the_default() -> None:
    sub = Subscription.model_validate(
        {
            "name": "s1",
            "events": ["*"],
            "target": {"type": "log"},
            "retry": {"delays": ["5s"], "max_age": "1m"},
        }
    )
    delivery = dataclasses.replace(_delivery(), subscription=sub)
    outcome, _ = await _deliver(RecordingChannel([RETRYABLE] * 3), delivery=delivery)
    assert isinstance(outcome, RetryLater)
    assert outcome.delay_s == 5.0


async def test_a_channel_that_raises_is_retried_then_waits_on_a_tier() -> None:
    outcome, _ = await _deliver(ExplodingChannel([]), attempts=2)
    assert isinstance(outcome, RetryLater)
    assert outcome.reason == "internal error in channel: RuntimeError"
    assert outcome.attempts == 2


async def test_an_open_circuit_parks_and_a_disabled_target_dead_letters_without_a_try() -> None:
    monotonic = [0.0]
    breaker = BreakerSettings(min_attempts=2, failure_ratio=0.5, open_s=3600.0, max_open_s=3600.0)
    settings = IsolationSettings(breaker=breaker, disable_after_s=60.0)
    guard = Isolation(settings, clock=lambda: monotonic[0])
    channel = RecordingChannel([RETRYABLE, RETRYABLE])
    for _ in range(2):
        outcome, _ = await _deliver(channel, attempts=1, isolation=guard)
        assert isinstance(outcome, RetryLater)
    parked, _ = await _deliver(channel, attempts=1, isolation=guard)
    assert isinstance(parked, RetryLater)
    assert (parked.attempts, parked.reason) == (0, "held back: circuit_open")
    monotonic[0] += 61.0  # failing past disable_after; the breaker holds no probe for an hour
    disabled, _ = await _deliver(channel, attempts=1, isolation=guard)
    assert isinstance(disabled, DeadLetter)
    assert (disabled.code, disabled.attempts) == ("target_disabled", 0)
    assert len(channel.sent) == 2  # neither the parked nor the disabled delivery was tried


async def test_no_more_tries_in_process_once_the_circuit_opens() -> None:
    breaker = BreakerSettings(min_attempts=2, failure_ratio=0.5)
    guard = Isolation(IsolationSettings(breaker=breaker), clock=lambda: 0.0)
    channel = RecordingChannel([RETRYABLE] * 5)
    outcome, _ = await _deliver(channel, attempts=5, isolation=guard)
    assert isinstance(outcome, RetryLater)  # the second failure opened it: off to the tiers
    assert (outcome.attempts, len(channel.sent)) == (2, 2)
    closed, _ = await _deliver(RecordingChannel([RETRYABLE] * 3), attempts=3)
    assert isinstance(closed, RetryLater)
    assert closed.attempts == 3  # without a breaker's say, every try in process is made
