"""One delivery, start to end: send through the target's channel, retry in process, and decide
the outcome (delivered, or dead letter with the reason)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from dispatcher.admin.metrics import Metrics
from dispatcher.channels.base import Channel, Delivery, SendFailed, SendOk, SendResult
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome, RetryLater
from dispatcher.delivery.retry import RetryPolicy

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
    """Delivers to the channel registered for each target type.

    The rate limiter and the durable retry tiers slot in here: before `send` (wait for a token
    of the target's bucket) and in `_outcome` (a retryable failure past the in-process tries
    becomes RetryLater on a tier instead of a dead letter).
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
    ) -> None:
        self._channels = channels
        self._policy = policy
        self._sleep = sleep
        self._jitter = jitter
        self._metrics = metrics = metrics or Metrics(process=False)
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
            return DeadLetter(f"no channel for target type {target_type!r}", attempts=0)
        # The first try runs bare: most deliveries succeed, and tenacity's bookkeeping or binding
        # the log context (about 6 µs) would cost more than the rest of the path. Its log lines
        # name the delivery themselves; from a failure on, the context is bound for every line.
        first = await self._send_once(channel, delivery, 1)
        if isinstance(first, SendOk):
            return self._outcome(first, 1, delivery)
        with structlog.contextvars.bound_contextvars(**about(delivery)):
            if self._policy.next_delay(1, first, 0.0) is None:
                return self._outcome(first, 1, delivery)
            return await self._retry(channel, delivery, first)

    async def _retry(self, channel: Channel, delivery: Delivery, first: SendFailed) -> Outcome:
        """Tries 2..n, waiting as the policy says between them (tenacity counts from try 2)."""
        attempts = 1

        async def attempt() -> SendResult:
            nonlocal attempts
            attempts += 1
            self._retried.inc()
            return await self._send_once(channel, delivery, attempts)

        await self._sleep(self._policy.next_delay(1, first, self._jitter()) or 0.0)
        retrying = AsyncRetrying(
            stop=lambda state: self._delay(state) is None,
            wait=lambda state: self._delay(state) or 0.0,
            retry=retry_if_result(lambda result: isinstance(result, SendFailed)),
            retry_error_callback=_result,
            sleep=self._sleep,
        )
        result: SendResult = await retrying(attempt)
        return self._outcome(result, attempts, delivery)

    async def _send_once(self, channel: Channel, delivery: Delivery, attempt: int) -> SendResult:
        started = time.perf_counter()
        try:
            result = await channel.send(delivery)
        except Exception as exc:  # a channel bug must not take the daemon down
            target_type = delivery.subscription.target.type
            log.exception("channel raised", target_type=target_type, **about(delivery))
            result = SendFailed(f"internal error in channel: {type(exc).__name__}", retryable=True)
        elapsed_s = time.perf_counter() - started
        self._metrics.target(delivery.subscription.target.type).attempt_seconds.observe(elapsed_s)
        if isinstance(result, SendFailed):
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

    def _delay(self, state: RetryCallState) -> float | None:
        result = _result(state)
        if not isinstance(result, SendFailed):
            return None
        return self._policy.next_delay(state.attempt_number + 1, result, self._jitter())

    def _outcome(self, result: SendResult, attempts: int, delivery: Delivery) -> Outcome:
        if isinstance(result, SendOk):
            if _stdlib_log.isEnabledFor(logging.DEBUG):  # skip building a line nobody reads
                log.debug("delivered", attempts=attempts, detail=result.detail, **about(delivery))
            return Delivered(attempts=attempts, detail=result.detail)
        why = "permanent failure" if not result.retryable else f"gave up after {attempts} tries"
        self._dead_letters["retries_exhausted" if result.retryable else "permanent_failure"].inc()
        log.error("delivery dead-lettered", attempts=attempts, reason=result.reason)
        return DeadLetter(f"{why}: {result.reason}", attempts=attempts)


def _result(state: RetryCallState) -> SendResult | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    result: SendResult = outcome.result()
    return result
