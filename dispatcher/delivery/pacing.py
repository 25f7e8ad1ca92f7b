"""Pacing: sends to one key (a Slack channel, an incoming webhook) spaced at least `interval_s`
apart, in the order they asked, and held back further when the server said Retry-After.

Slack accepts about one message a second per channel and answers a burst beyond that with 429.
Without pacing, a burst of N notifications to one channel would each get a 429, retry together
after the Retry-After, collide again, and most would use up their tries and be dead-lettered.
With it they go out one a second, and arrive.

Each caller reserves the next free slot of its key synchronously, then sleeps until it, so no
lock is needed and order is kept. Slots are also counted from when the previous send ended
(`sent`), as the server counts from when it got the message, not from when we started sending.
The waits are held in process: a long burst to one key keeps its events in flight (bounded by the
broker's prefetch) until they are sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

#: keys remembered at most; the least recently used is forgotten first (its slot is long past)
MAX_KEYS = 4096


class Pacer:
    def __init__(
        self,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[float], None] | None = None,
        max_hold_s: float = 300.0,
    ) -> None:
        self._interval_s = interval_s
        self._max_hold_s = max_hold_s  # the longest Retry-After honoured: a server can't stall us
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._next: dict[str, float] = {}  # key -> the next slot free to reserve
        self._held: dict[str, float] = {}  # key -> no send before this (last end, Retry-After)

    def reserve(self, key: str) -> float:
        """Take the key's next slot; returns how long to wait for it (0: go now)."""
        now = self._clock()
        start = max(now, self._next.get(key, now))
        _remember(self._next, key, start + self._interval_s)
        return start - now

    async def wait(self, key: str) -> None:
        """Wait for the key's next slot, and for the interval after its previous send ended."""
        delay_s, waited_s = self.reserve(key), 0.0
        while True:
            delay_s = max(delay_s, self._held.get(key, 0.0) - self._clock())
            if delay_s <= 0:
                break
            waited_s += delay_s
            await self._sleep(delay_s)
            delay_s = 0.0
        if waited_s and self._on_wait is not None:
            self._on_wait(waited_s)

    def sent(self, key: str) -> None:
        """A send to this key ended now: the next may start one interval later."""
        self._hold(key, self._clock() + self._interval_s)

    def defer(self, key: str, delay_s: float) -> None:
        """The server asked for `delay_s` of quiet on this key (Retry-After): no send starts
        before then, not even one already waiting for its slot."""
        until = self._clock() + min(delay_s, self._max_hold_s)
        self._hold(key, until)
        _remember(self._next, key, max(self._next.get(key, until), until))

    def _hold(self, key: str, until: float) -> None:
        _remember(self._held, key, max(self._held.get(key, until), until))


def _remember(times: dict[str, float], key: str, at: float) -> None:
    """Set `key` as the most recent entry, forgetting the oldest beyond MAX_KEYS."""
    times.pop(key, None)
    times[key] = at
    if len(times) > MAX_KEYS:
        del times[next(iter(times))]
