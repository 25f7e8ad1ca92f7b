"""One delivery, start to end: send through the target's channel, retry in process, and decide
the outcome (delivered, or dead letter with the reason)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from dispatcher.channels.base import Channel, Delivery, SendFailed, SendOk, SendResult
from dispatcher.delivery.outcome import DeadLetter, Delivered, Outcome
from dispatcher.delivery.retry import RetryPolicy

log = structlog.get_logger(__name__)


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
    ) -> None:
        self._channels = channels
        self._policy = policy
        self._sleep = sleep
        self._jitter = jitter

    async def deliver(self, delivery: Delivery) -> Outcome:
        target_type = delivery.subscription.target.type
        channel = self._channels.get(target_type)
        if channel is None:
            return DeadLetter(f"no channel for target type {target_type!r}", attempts=0)
        with structlog.contextvars.bound_contextvars(
            event_id=delivery.event.id,
            subscription=delivery.subscription.name,
            delivery_id=delivery.id,
        ):
            # The first try runs bare: most deliveries succeed, and tenacity's bookkeeping
            # would cost more than the rest of the path.
            first = await self._send_once(channel, delivery, 1)
            if isinstance(first, SendOk) or self._policy.next_delay(1, first, 0.0) is None:
                return self._outcome(first, 1)
            return await self._retry(channel, delivery, first)

    async def _retry(self, channel: Channel, delivery: Delivery, first: SendFailed) -> Outcome:
        """Tries 2..n, waiting as the policy says between them (tenacity counts from try 2)."""
        attempts = 1

        async def attempt() -> SendResult:
            nonlocal attempts
            attempts += 1
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
        return self._outcome(result, attempts)

    async def _send_once(self, channel: Channel, delivery: Delivery, attempt: int) -> SendResult:
        started = time.perf_counter()
        try:
            result = await channel.send(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a channel bug must not take the daemon down
            log.exception("channel raised", target_type=delivery.subscription.target.type)
            result = SendFailed(f"internal error in channel: {type(exc).__name__}", retryable=True)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if isinstance(result, SendFailed):
            log.warning(
                "delivery attempt failed",
                attempt=attempt,
                reason=result.reason,
                retryable=result.retryable,
                retry_after_s=result.retry_after_s,
                elapsed_ms=elapsed_ms,
            )
        return result

    def _delay(self, state: RetryCallState) -> float | None:
        result = _result(state)
        if not isinstance(result, SendFailed):
            return None
        return self._policy.next_delay(state.attempt_number + 1, result, self._jitter())

    def _outcome(self, result: SendResult, attempts: int) -> Outcome:
        if isinstance(result, SendOk):
            log.debug("delivered", attempts=attempts, detail=result.detail)
            return Delivered(attempts=attempts, detail=result.detail)
        why = "permanent failure" if not result.retryable else f"gave up after {attempts} tries"
        log.error("delivery dead-lettered", attempts=attempts, reason=result.reason)
        return DeadLetter(f"{why}: {result.reason}", attempts=attempts)


def _result(state: RetryCallState) -> SendResult | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    result: SendResult = outcome.result()
    return result
