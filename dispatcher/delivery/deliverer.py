"""One delivery, start to end: send through the target's channel, retry quickly in process, and
decide the outcome: delivered, retry later on a durable tier (`dispatcher.delivery.schedule`), or
dead letter with the reason."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from dispatcher.channels.base import Channel, Delivery, SendFailed, SendOk, SendResult
from dispatcher.delivery.isolation import Admission, Isolation, IsolationSettings
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome, RetryLater
from dispatcher.delivery.ratelimit import LocalRateLimiter, RateLimiter
from dispatcher.delivery.retry import RetryPolicy
from dispatcher.delivery.schedule import DEFAULT_MAX_AGE, DEFAULT_RETRY_DELAYS, Schedule
from dispatcher.observe import DeliveryObserver, NullObserver
from dispatcher.rates import Rate
from dispatcher.subscriptions.models import Subscription

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)  # what structlog's level filter asks, for a cheap check


def about(delivery: Delivery) -> dict[str, str]:
    """What names a delivery in a log line."""
    return {
        "event_id": delivery.event.id,
        "subscription": delivery.subscription.name,
        "delivery_id": delivery.id,
    }


class Deliverer:
    """Delivers to the channel registered for each target type, each send in its target's turn
    (`RateLimiter`, keyed by `Channel.target_key`, at the channel's `default_rate`).

    A fresh delivery gets `policy.attempts` quick tries in process; one back from a retry tier
    gets one. A retryable failure past those (or a timeout, at once) waits on the next tier of
    its subscription's schedule, unless that is used up or would pass its max age.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        schedule: Schedule | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        max_hold_s: float = 30.0,
        max_rate_wait_s: float = 30.0,
        isolation: Isolation | None = None,
        metrics: DeliveryObserver | None = None,
    ) -> None:
        self._channels = channels
        self._isolation = Isolation(IsolationSettings()) if isolation is None else isolation
        self._max_rate_wait_s = max_rate_wait_s  # a longer wait for a target's turn: parked
        breaker = self._isolation.breaker_settings
        self._park_s = {
            Admission.PARK_OPEN: breaker.open_s,
            Admission.PARK_BUSY: 0.0,
            Admission.DISABLED: 0.0,  # not parked: dead-lettered
        }
        self._limiter = LocalRateLimiter() if limiter is None else limiter
        self._max_hold_s = max_hold_s  # the longest Retry-After a target's key is held back
        self._policy = policy
        self._once = dataclasses.replace(policy, attempts=1)
        self._schedule = schedule or Schedule.of(DEFAULT_RETRY_DELAYS, DEFAULT_MAX_AGE)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._metrics = metrics = NullObserver() if metrics is None else metrics
        self._dead_letters = metrics.dead_letters
        self._retried = metrics.retries["inprocess"]
        self.in_flight = 0  # deliveries started and not ended (read by metrics and STATUS=)

    async def deliver(self, delivery: Delivery) -> Outcome:
        counters = self._metrics.target(delivery.subscription.target.type)
        self.in_flight += 1
        try:
            outcome = await self._deliver(delivery)
        finally:
            self.in_flight -= 1
        if isinstance(outcome, Delivered):
            counters.delivered.inc()
        elif isinstance(outcome, RetryLater):
            counters.retry_later.inc()
        else:
            counters.dead_letter.inc()
        return outcome

    async def _deliver(self, delivery: Delivery) -> Outcome:
        target_type = delivery.subscription.target.type
        channel = self._channels.get(target_type)
        if channel is None:
            self._dead_letters["no_channel"].inc()
            reason = f"no channel for target type {target_type!r}"
            return DeadLetter(reason, delivery.attempts, "permanent_failure")
        # The first try runs bare: most deliveries succeed, and tenacity's bookkeeping or binding
        # the log context (about 6 µs) would cost more than the rest of the path. Its log lines
        # name the delivery themselves; from a failure on, the context is bound for every line.
        key = channel.target_key(delivery)
        admission = self._isolation.admit(key)
        if admission is not Admission.TRY:
            return self._held_back(delivery, admission.value, self._park_s[admission])
        try:
            return await self._try(
                channel, delivery, _Target(key, self._rate_of(channel, delivery))
            )
        finally:
            self._isolation.leave(key)

    async def _try(self, channel: Channel, delivery: Delivery, target: _Target) -> Outcome:
        started_at = delivery.first_attempt_at or self._clock()
        first = await self._send_once(channel, delivery, delivery.attempts + 1, target, first=True)
        if first is None:  # the target's rate limit has a backlog longer than we hold
            return self._held_back(delivery, "rate_limited", self._max_rate_wait_s)
        if isinstance(first, SendOk):
            return self._delivered(first, delivery.attempts + 1, delivery)
        with structlog.contextvars.bound_contextvars(**about(delivery)):
            policy = self._policy if delivery.retries == 0 else self._once
            result: SendResult = first
            tries = 1
            if policy.next_delay(1, first, 0.0) is not None:
                result, tries = await self._retry(channel, delivery, first, policy, target)
            if isinstance(result, SendOk):
                return self._delivered(result, delivery.attempts + tries, delivery)
            return self._failed(result, delivery.attempts + tries, delivery, started_at)

    async def _retry(
        self,
        channel: Channel,
        delivery: Delivery,
        first: SendFailed,
        policy: RetryPolicy,
        target: _Target,
    ) -> tuple[SendResult, int]:
        """Tries 2..n, waiting as the policy says between them (tenacity counts from try 2),
        while the target's circuit stays closed: once it opens (this delivery was its probe, or
        others failed meanwhile) the delivery goes to the tiers without another try."""
        tries = 1
        last: SendResult = first
        halted = False

        async def attempt() -> SendResult:
            nonlocal tries, last, halted
            if not self._isolation.may_retry(target.key):
                halted = True
                return last
            tries += 1
            self._retried.inc()
            result = await self._send_once(channel, delivery, delivery.attempts + tries, target)
            assert result is not None  # only a first try is ever parked
            last = result
            return result

        def delay(state: RetryCallState) -> float | None:
            result = _result(state)
            if not isinstance(result, SendFailed):
                return None
            return policy.next_delay(state.attempt_number + 1, result, self._jitter())

        await self._sleep(policy.next_delay(1, first, self._jitter()) or 0.0)
        retrying = AsyncRetrying(
            stop=lambda state: halted or delay(state) is None,
            wait=lambda state: delay(state) or 0.0,
            retry=retry_if_result(lambda result: isinstance(result, SendFailed)),
            retry_error_callback=_result,
            sleep=self._sleep,
        )
        result: SendResult = await retrying(attempt)
        return result, tries

    async def _send_once(
        self,
        channel: Channel,
        delivery: Delivery,
        attempt: int,
        target: _Target,
        *,
        first: bool = False,
    ) -> SendResult | None:
        """One attempt in the target's turn; None (no attempt) when a first try would wait
        longer for its turn than a delivery is held in process."""
        rate = target.rate
        if rate is not None:  # the target's turn first: a limit, not a failure
            max_wait_s = self._max_rate_wait_s if first else math.inf
            wait_s = await self._limiter.reserve(target.key, rate, max_wait_s)
            if wait_s is None:
                return None
            if wait_s:
                self._metrics.target(delivery.subscription.target.type).rate_limit_waits.inc()
                await self._sleep(wait_s)
        started = time.perf_counter()
        try:
            result = await channel.send(delivery)
        except Exception as exc:  # a channel bug must not take the daemon down
            target_type = delivery.subscription.target.type
            log.exception("channel raised", target_type=target_type, **about(delivery))
            result = SendFailed(f"internal error in channel: {type(exc).__name__}", retryable=True)
        elapsed_s = time.perf_counter() - started
        self._metrics.target(delivery.subscription.target.type).attempt_seconds.observe(elapsed_s)
        if isinstance(result, SendOk):
            self._isolation.record(target.key, elapsed_s, failed=False)
        else:
            # Down, overloaded or hanging counts against the target; an answer refusing this
            # message, or asking for a pause (Retry-After), shows it is there.
            failed = result.retryable and result.retry_after_s is None
            self._isolation.record(target.key, elapsed_s, failed=failed)
            if rate is not None and result.retry_after_s is not None:  # the target said: quiet
                hold_s = min(result.retry_after_s, self._max_hold_s)
                await self._limiter.defer(target.key, rate, hold_s)
            elapsed_ms = round(elapsed_s * 1000, 1)
            log.warning(
                "delivery attempt failed",
                attempt=attempt,
                reason=result.reason,
                retryable=result.retryable,
                retry_after_s=result.retry_after_s,
                elapsed_ms=elapsed_ms,
                **about(delivery),
            )
        return result

    def _delivered(self, result: SendOk, attempts: int, delivery: Delivery) -> Delivered:
        if _stdlib_log.isEnabledFor(logging.DEBUG):  # skip building a line nobody reads
            log.debug("delivered", attempts=attempts, detail=result.detail, **about(delivery))
        return Delivered(attempts=attempts, detail=result.detail)

    def _rate_of(self, channel: Channel, delivery: Delivery) -> Rate | None:
        """The subscription's own `rate_limit`, else the channel's default for the target."""
        own = delivery.subscription.rate
        return own if own is not None else channel.default_rate(delivery)

    def _held_back(self, delivery: Delivery, why: str, wait_s: float) -> Outcome:
        """No try now: wait on a retry tier about `wait_s` long (not counted as a retry), unless
        that passes the delivery's max age; a disabled target's deliveries are given up."""
        now = self._clock()
        first_at = delivery.first_attempt_at or now
        target_type = delivery.subscription.target.type
        if why == Admission.DISABLED.value:
            self._dead_letters["target_disabled"].inc()
            reason = "the target is disabled: it has failed for too long"
            return DeadLetter(reason, delivery.attempts, "target_disabled", first_at, now)
        schedule = self.schedule_of(delivery.subscription)
        tier = schedule.park(wait_s, delivery.retries)
        if now - first_at + tier.delay_s > schedule.max_age_s:
            self._dead_letters["expired"].inc()
            reason = delivery.last_error or f"held back ({why}) past its max age"
            return DeadLetter(reason, delivery.attempts, "expired", first_at, now)
        self._metrics.parked(target_type, why)
        reason = delivery.last_error or f"held back: {why}"
        return RetryLater(tier.delay_s, reason, delivery.attempts, tier.retries, first_at)

    def _failed(
        self, result: SendFailed, attempts: int, delivery: Delivery, first_at: float
    ) -> Outcome:
        """Past the tries in process: the next retry tier, or a dead letter saying why."""
        now = self._clock()
        if not result.retryable:
            self._dead_letters["permanent_failure"].inc()
            log.error("delivery dead-lettered", attempts=attempts, reason=result.reason)
            return DeadLetter(result.reason, attempts, "permanent_failure", first_at, now)
        plan = self.schedule_of(delivery.subscription).next(
            delivery.retries, now - first_at, result.retry_after_s
        )
        if isinstance(plan, str):
            self._dead_letters[plan].inc()
            log.error("delivery dead-lettered", why=plan, attempts=attempts, reason=result.reason)
            return DeadLetter(result.reason, attempts, plan, first_at, now)
        self._metrics.retry_scheduled(plan.name)
        log.warning("delivery retry scheduled", tier=plan.name, attempts=attempts)
        return RetryLater(plan.delay_s, result.reason, attempts, plan.retries, first_at, now)

    def schedule_of(self, subscription: Subscription) -> Schedule:
        """The subscription's retry schedule: the default with its own `retry:` applied."""
        if subscription.retry is None:
            return self._schedule
        # Worked out on failures only (a few duration parses): not worth a cache.
        return self._schedule.override(subscription.retry.delays, subscription.retry.max_age)


@dataclass(frozen=True, slots=True)
class _Target:
    """The delivery's target as limits see it: its key and its rate (None: no limit)."""

    key: str
    rate: Rate | None


def _result(state: RetryCallState) -> SendResult | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    result: SendResult = outcome.result()
    return result
