"""Per-target rate limits: the arithmetic (pure), the `RateLimiter` role, and an in-process one.

Why GCRA (the generic cell rate algorithm): it is a token bucket kept as one number per key, the
"theoretical arrival time" (tat) of the next cell. One timestamp is all a shared store needs to
hold and compare-and-set atomically (see `redis_limiter`), it needs no refill timer, and an old
tat is the same as no tat at all, so a key can be forgotten as soon as its tat has passed.

With interval T = 1/rate and tolerance tau = (burst - 1) * T, a request at `now` is granted at
max(tat, now) - tau (now if that is past), and moves tat on by T. After a quiet period `burst`
requests go at once; after that they are spaced T apart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from dispatcher.rates import Rate

__all__ = ["MAX_KEYS", "LocalRateLimiter", "Rate", "RateLimiter", "deferred_tat", "gcra"]

#: keys the in-process limiter remembers by default
MAX_KEYS = 4096


def gcra(
    tat: float | None, now: float, rate: Rate, max_wait_s: float
) -> tuple[float, float] | None:
    """GCRA (generic cell rate algorithm, the token bucket as one timestamp). `tat` is the stored
    theoretical arrival time (None: never used). Returns (wait_s, new_tat) when the next slot
    comes within max_wait_s, None when it would come later (nothing is taken then)."""
    if max_wait_s < 0 or math.isnan(max_wait_s):
        raise ValueError(f"max_wait_s must be zero or more, not {max_wait_s!r}")
    start = now if tat is None else max(tat, now)
    wait_s = max(0.0, start - rate.tolerance_s - now)
    if wait_s > max_wait_s:
        return None
    return wait_s, start + rate.interval_s


def deferred_tat(tat: float | None, now: float, rate: Rate, delay_s: float) -> float:
    """The new tat after the target asked for `delay_s` of quiet (Retry-After).

    The first slot after the pause is at now + delay_s, and the ones after it are spaced one
    interval apart: no burst right after a pause, as the target just said it was overloaded.
    Slots already taken are kept: a tat later than that is left as it is."""
    if not (math.isfinite(delay_s) and delay_s >= 0):
        raise ValueError(f"delay_s must be a finite number of seconds, not {delay_s!r}")
    paused = now + delay_s + rate.tolerance_s
    return paused if tat is None else max(tat, paused)


class RateLimiter(Protocol):
    """Slots per key (a hashed target), asked for before each send."""

    async def reserve(self, key: str, rate: Rate, max_wait_s: float) -> float | None:
        """Take the key's next slot if it comes within max_wait_s: the seconds to wait for it
        (0.0: go now); None when it would come later (nothing taken)."""
        ...

    async def defer(self, key: str, rate: Rate, delay_s: float) -> None:
        """The target asked for delay_s of quiet on this key: no slot before now + delay_s."""
        ...

    async def close(self) -> None:
        """Release what the limiter holds (connections); a no-op for in-process ones."""
        ...


class LocalRateLimiter:
    """Rate limits held in this process: right for one replica, and the fallback of shared ones.

    At most `max_keys` keys are remembered. Forgetting a key whose tat has passed loses nothing
    (it reads the same as a new key), so those go first; only when every key is still busy is
    the least recently used one forgotten (which lets that key burst again)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys!r}")
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[str, float] = {}  # in least recently used first order
        # no tat is earlier than this, so a sweep before then would free nothing; tats only
        # ever grow, so it stays a lower bound as keys are used
        self._earliest_tat = math.inf

    def __len__(self) -> int:
        return len(self._tats)

    async def reserve(self, key: str, rate: Rate, max_wait_s: float) -> float | None:
        now = self._clock()
        granted = gcra(self._tats.get(key), now, rate, max_wait_s)
        if granted is None:
            return None
        wait_s, tat = granted
        self._remember(key, tat, now)
        return wait_s

    async def defer(self, key: str, rate: Rate, delay_s: float) -> None:
        now = self._clock()
        self._remember(key, deferred_tat(self._tats.get(key), now, rate, delay_s), now)

    async def close(self) -> None:
        self._tats.clear()

    def _remember(self, key: str, tat: float, now: float) -> None:
        if self._tats.pop(key, None) is None and len(self._tats) >= self._max_keys:
            self._make_room(now)
        self._tats[key] = tat
        self._earliest_tat = min(self._earliest_tat, tat)

    def _make_room(self, now: float) -> None:
        if now >= self._earliest_tat:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
            self._earliest_tat = min(self._tats.values(), default=math.inf)
        while len(self._tats) >= self._max_keys:
            del self._tats[next(iter(self._tats))]
