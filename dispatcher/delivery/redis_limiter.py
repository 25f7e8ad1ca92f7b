"""Rate limits shared by every replica through Redis, so a target's limit holds across processes.

Each operation is one Lua script doing the arithmetic of `ratelimit.gcra` / `deferred_tat`, so
reading and moving a key's tat is atomic: two replicas never take the same slot. The clock is
Redis' own (`TIME`), not the caller's: replicas on different hosts have clocks that disagree, and
a tat written by one and compared with another's `now` would grant slots early (a burst of 429s)
or late by the skew. The script answers with a duration (the wait), which the caller measures on
its own clock, so no wall clock is ever compared across hosts. Times travel as integer
microseconds: Redis turns a Lua number into an integer on return, and `tostring` would round a
16-digit timestamp (so numbers are written with `%d`).

Every key gets a PX a little past its tat: a tat in the past reads the same as no key, so nothing
is lost when it expires, and no key lives forever.

When Redis cannot be reached, deliveries go on under the fallback (per-process) limiter: one
warning when that starts, another try after `retry_after_s`, one info line when Redis is back.
"""

from __future__ import annotations

import math
import time

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dispatcher.delivery.ratelimit import LocalRateLimiter, Rate, RateLimiter
from dispatcher.redaction import Redactor, redact_url, url_secrets

log = structlog.get_logger(__name__)

#: ms a key outlives its tat, so an expiry never races a script reading it
_GRACE_MS = 1000
#: the longest wait or pause sent to Redis: keeps microsecond timestamps exact in Lua's doubles
_MAX_S = 10 * 365 * 86400.0

_PREAMBLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
"""

# KEYS[1]: the bucket. ARGV: interval_us, tolerance_us, max_wait_us, grace_ms.
# Returns the wait in microseconds, or -1 (nothing taken) when it would be over max_wait_us.
_RESERVE = (
    _PREAMBLE
    + """
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return -1 end
local new_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', new_tat),
           'PX', string.format('%d', math.floor((new_tat - now) / 1000) + tonumber(ARGV[4])))
return wait
"""
)

# KEYS[1]: the bucket. ARGV: delay_us, tolerance_us, grace_ms.
_DEFER = (
    _PREAMBLE
    + """
local paused = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
if paused > tat then tat = paused end
redis.call('SET', KEYS[1], string.format('%d', tat),
           'PX', string.format('%d', math.floor((tat - now) / 1000) + tonumber(ARGV[3])))
return 0
"""
)


class RedisRateLimiter:
    """A `RateLimiter` whose buckets live in Redis under "dispatcher:rl:{namespace}:{key}"."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        fallback: RateLimiter | None = None,
        retry_after_s: float = 5.0,
        timeout_s: float = 0.5,
    ) -> None:
        if not namespace:
            raise ValueError("a Redis rate limiter needs a namespace (the deployment's queue)")
        self._display_url = redact_url(url)
        # any length: an error text mangled is better than a short password shown
        self._redactor = Redactor(url_secrets(url), min_length=1)
        try:
            # No retries inside redis-py: its default backs off for seconds, and an unreachable
            # Redis must fall back within timeout_s, not hold a delivery.
            self._redis = Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError:
            raise ValueError(f"not a Redis URL: {self._display_url}") from None
        self._prefix = f"dispatcher:rl:{namespace}:"
        self._fallback = fallback if fallback is not None else LocalRateLimiter()
        self._retry_after_s = retry_after_s
        self._retry_at: float | None = None  # set while Redis is unreachable
        self._failures = 0  # calls that failed so far
        self._reserve = self._redis.register_script(_RESERVE)
        self._defer = self._redis.register_script(_DEFER)

    async def reserve(self, key: str, rate: Rate, max_wait_s: float) -> float | None:
        if max_wait_s < 0 or math.isnan(max_wait_s):
            raise ValueError(f"max_wait_s must be zero or more, not {max_wait_s!r}")
        if self._try_redis():
            failures = self._failures
            interval_us = _interval_us(rate)
            args = (interval_us, (rate.burst - 1) * interval_us, _us(max_wait_s), _GRACE_MS)
            try:
                wait_us = int(await self._reserve(keys=[self._prefix + key], args=args))
            except (RedisError, OSError) as exc:
                self._lost(exc)
            else:
                self._answered(failures)
                return None if wait_us < 0 else wait_us / 1e6
        return await self._fallback.reserve(key, rate, max_wait_s)

    async def defer(self, key: str, rate: Rate, delay_s: float) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"delay_s must be a finite number of seconds, not {delay_s!r}")
        # the fallback hears of every pause, so it holds should Redis go away meanwhile
        await self._fallback.defer(key, rate, delay_s)
        if self._try_redis():
            failures = self._failures
            args = (_us(delay_s), (rate.burst - 1) * _interval_us(rate), _GRACE_MS)
            try:
                await self._defer(keys=[self._prefix + key], args=args)
            except (RedisError, OSError) as exc:
                self._lost(exc)
            else:
                self._answered(failures)

    async def ping(self) -> bool:
        """Whether Redis answers now (for a start-up or health check); never raises."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
        await self._fallback.close()

    def _try_redis(self) -> bool:
        if self._retry_at is None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        # this caller probes; the others keep to the fallback until it has an answer
        self._retry_at = now + self._retry_after_s
        return True

    def _lost(self, exc: BaseException) -> None:
        if self._retry_at is None:
            log.warning(
                "rate limits are held per process until Redis answers",
                redis=self._display_url,
                error=self._describe(exc),
                retry_after_s=self._retry_after_s,
            )
        self._retry_at = time.monotonic() + self._retry_after_s
        self._failures += 1

    def _answered(self, failures: int) -> None:
        """A call that started when `failures` calls had failed succeeded: Redis is back, unless
        one failed meanwhile (a slow Redis answers some calls and times out others)."""
        if self._retry_at is not None and failures == self._failures:
            self._retry_at = None
            log.info("Redis answers again: rate limits are shared", redis=self._display_url)

    def _describe(self, exc: BaseException) -> str:
        return self._redactor.scrub(f"{type(exc).__name__}: {exc}")


def _interval_us(rate: Rate) -> int:
    return max(1, math.ceil(rate.interval_s * 1e6))  # rounded up: never faster than the rate


def _us(seconds: float) -> int:
    return round(min(seconds, _MAX_S) * 1e6)
