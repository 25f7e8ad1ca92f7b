"""Per-target circuit breaker and bulkhead: pure bookkeeping, time read from an injected clock.

One failing or hanging target must not hold up deliveries to healthy ones. Before an attempt the
deliverer asks `CircuitBreaker.allow(key)` (False: skip the attempt, send the delivery straight to
the durable retry tier) and reports the attempt with `record(key, ok)`. A `Bulkhead` caps the
deliveries in flight per key, so a hanging target cannot hold every worker.

The states of one key (a hashed target)::

    CLOSED    --(a failure; >= failure_ratio of >= min_attempts failed in window_s)--> OPEN
    OPEN      --(its open period is over: allow() lets one probe through)--> HALF_OPEN
    HALF_OPEN --(probe ok: fresh window, open period back to open_s)--> CLOSED
    HALF_OPEN --(probe failed: open period doubled, at most max_open_s)--> OPEN

The defaults follow Convoy's breaker: open when at least 70% of at least 10 attempts in the last
5 minutes failed. The minimum keeps a quiet target's two bad requests from cutting it off; the
ratio tolerates a flaky target that mostly works; the window forgives an old outage. 30 s open,
doubled per failed probe up to 10 min, means a dead target costs one request per period, not one
per event, while a recovered one is back within seconds to minutes.

Not thread-safe and never awaits: meant for one event loop, where each call runs to completion.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: time buckets of the sliding window: an attempt counts for 0.9 to 1.0 window_s
BUCKETS = 10
#: keys the breaker remembers by default
MAX_KEYS = 4096


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    window_s: float = 300.0  # failures are counted over this sliding window
    min_attempts: int = 10  # no opening before this many attempts in the window
    failure_ratio: float = 0.7  # open when failures/attempts >= this (and >= min_attempts)
    open_s: float = 30.0  # how long it stays open before one probe is let through
    max_open_s: float = 600.0  # a failed probe doubles the open period, up to this

    def __post_init__(self) -> None:
        for name in ("window_s", "open_s", "max_open_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number above zero, not {value!r}")
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s ({self.max_open_s}) is below open_s ({self.open_s})")
        if isinstance(self.min_attempts, bool) or self.min_attempts < 1:
            raise ValueError(f"min_attempts must be at least 1, not {self.min_attempts!r}")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError(f"failure_ratio must be in (0, 1], not {self.failure_ratio!r}")


class _Window:
    """Counts of the last window_s in BUCKETS time buckets: fixed memory however busy the key."""

    __slots__ = ("_bucket_s", "_epochs", "_failed", "_ok")

    def __init__(self, window_s: float) -> None:
        self._bucket_s = window_s / BUCKETS
        # a bucket whose epoch is not the current one is stale; empty ones count nothing anyway
        self._epochs = [0] * BUCKETS
        self._ok = [0] * BUCKETS
        self._failed = [0] * BUCKETS

    def add(self, now: float, ok: bool) -> None:
        epoch = math.floor(now / self._bucket_s)
        slot = epoch % BUCKETS
        if self._epochs[slot] != epoch:
            self._epochs[slot], self._ok[slot], self._failed[slot] = epoch, 0, 0
        if ok:
            self._ok[slot] += 1
        else:
            self._failed[slot] += 1

    def totals(self, now: float) -> tuple[int, int]:
        """(attempts, failures) in the buckets the window still covers."""
        epoch = math.floor(now / self._bucket_s)
        attempts = failed = 0
        for slot in range(BUCKETS):
            if epoch - BUCKETS < self._epochs[slot] <= epoch:
                attempts += self._ok[slot] + self._failed[slot]
                failed += self._failed[slot]
        return attempts, failed

    def clear(self) -> None:
        self._ok = [0] * BUCKETS
        self._failed = [0] * BUCKETS


@dataclass(slots=True, eq=False)
class _Key:
    window: _Window
    open_s: float  # the current open period: open_s, doubled by each failed probe
    state: BreakerState = BreakerState.CLOSED
    # OPEN: when the open period ends; HALF_OPEN: when the probe out is given up as lost
    until: float = 0.0
    failing_since: float | None = None


class CircuitBreaker:
    """A circuit breaker per key (see the module docstring for the states).

    - `allow()` in HALF_OPEN: a probe that never reports back (its task was cancelled) is given
      up after the key's current open period; the next allow() then lets another probe go.
    - `record()` in HALF_OPEN is taken as the probe's result: with only a bool from allow(), a
      late result of an attempt started before the circuit opened cannot be told apart from it.
    - `record()` in OPEN (a late result of an attempt started before it opened) is ignored:
      the window that opened the circuit already judged that period, and only a probe may close
      it. It changes neither the state, the window nor `failing_since`.
    - In CLOSED the ratio is checked on each failure only: a success never opens a circuit.
    - `on_change(key, old, new)` is called once per state change, after the change is made,
      never per delivery.
    - At most `max_keys` keys are remembered. A new key first forgets the least recently used
      CLOSED key (it loses only its window and `failing_since`). Only when every key is OPEN or
      HALF_OPEN is the least recently used of those forgotten: it starts again as CLOSED, lets
      traffic through, and opens again after min_attempts failures (no on_change for that).
      Unknown keys are CLOSED; allow() alone does not remember a key, record() does.
    """

    def __init__(
        self,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys!r}")
        self._settings = settings
        self._clock = clock
        self._on_change = on_change
        self._max_keys = max_keys
        # two dicts, each least recently used first, so eviction finds a CLOSED key in O(1)
        self._closed: dict[str, _Key] = {}
        self._tripped: dict[str, _Key] = {}  # OPEN or HALF_OPEN

    def __len__(self) -> int:
        """Keys remembered."""
        return len(self._closed) + len(self._tripped)

    def allow(self, key: str) -> bool:
        """May an attempt go to `key` now? In HALF_OPEN only the one probe gets True."""
        entry = self._touch(key)
        if entry is None or entry.state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if now < entry.until:
            return False
        # OPEN with its period over, or HALF_OPEN whose probe is lost: one (more) probe goes
        entry.until = now + entry.open_s
        if entry.state is BreakerState.OPEN:
            self._change(key, entry, BreakerState.HALF_OPEN)
        return True

    def record(self, key: str, ok: bool) -> None:
        """The result of an attempt that allow() let through."""
        entry = self._touch(key) or self._add(key)
        if entry.state is BreakerState.OPEN:
            return  # a late result: see the class docstring
        now = self._clock()
        if ok:
            entry.failing_since = None
        elif entry.failing_since is None:
            entry.failing_since = now
        settings = self._settings
        if entry.state is BreakerState.HALF_OPEN:
            if ok:
                entry.window.clear()
                entry.open_s = settings.open_s
                self._change(key, entry, BreakerState.CLOSED)
            else:
                entry.open_s = min(entry.open_s * 2, settings.max_open_s)
                entry.until = now + entry.open_s
                self._change(key, entry, BreakerState.OPEN)
            return
        entry.window.add(now, ok)
        if ok:
            return
        attempts, failed = entry.window.totals(now)
        if attempts >= settings.min_attempts and failed / attempts >= settings.failure_ratio:
            entry.until = now + entry.open_s
            self._change(key, entry, BreakerState.OPEN)

    def reset(self, key: str) -> bool:
        """Forget the key's failures and close its circuit (an operator says the target is
        back); whether the circuit was open or half-open."""
        entry = self._get(key)
        if entry is None:
            return False
        entry.window.clear()
        entry.failing_since = None
        entry.open_s = self._settings.open_s
        if entry.state is BreakerState.CLOSED:
            return False
        self._change(key, entry, BreakerState.CLOSED)
        return True

    def state(self, key: str) -> BreakerState:
        """The key's state as of the last allow()/record(); CLOSED for an unknown key. An OPEN
        key whose period is over reads OPEN until allow() hands out the probe."""
        entry = self._get(key)
        return BreakerState.CLOSED if entry is None else entry.state

    def counts(self) -> dict[BreakerState, int]:
        """Keys remembered in each state (all three present), for a metrics gauge."""
        half_open = sum(e.state is BreakerState.HALF_OPEN for e in self._tripped.values())
        return {
            BreakerState.CLOSED: len(self._closed),
            BreakerState.OPEN: len(self._tripped) - half_open,
            BreakerState.HALF_OPEN: half_open,
        }

    def failing_since(self, key: str) -> float | None:
        """Clock time of the first failure of the key's current unbroken run of failures; None
        if its last attempt succeeded, or none was seen (or the key was forgotten)."""
        entry = self._get(key)
        return None if entry is None else entry.failing_since

    def _get(self, key: str) -> _Key | None:
        return self._closed.get(key) or self._tripped.get(key)

    def _touch(self, key: str) -> _Key | None:
        """The key's entry, moved to most recently used."""
        for keys in (self._closed, self._tripped):
            entry = keys.pop(key, None)
            if entry is not None:
                keys[key] = entry
                return entry
        return None

    def _add(self, key: str) -> _Key:
        if len(self) >= self._max_keys:
            victims = self._closed or self._tripped
            del victims[next(iter(victims))]
        entry = _Key(_Window(self._settings.window_s), self._settings.open_s)
        self._closed[key] = entry
        return entry

    def _change(self, key: str, entry: _Key, new: BreakerState) -> None:
        old, entry.state = entry.state, new
        if old is BreakerState.CLOSED:
            del self._closed[key]
            self._tripped[key] = entry
        elif new is BreakerState.CLOSED:
            del self._tripped[key]
            self._closed[key] = entry
        if self._on_change is not None:
            self._on_change(key, old, new)


class Bulkhead:
    """At most `limit` deliveries in flight per key."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or limit < 1:
            raise ValueError(f"a bulkhead limit must be at least 1, not {limit!r}")
        self._limit = limit
        self._in_flight: dict[str, int] = {}  # only keys with something in flight

    def try_enter(self, key: str) -> bool:
        """Take a place for one delivery to `key`; False when it already has `limit` in flight."""
        count = self._in_flight.get(key, 0)
        if count >= self._limit:
            return False
        self._in_flight[key] = count + 1
        return True

    def leave(self, key: str) -> None:
        """Give back the place a successful try_enter() took; ValueError if none was taken."""
        count = self._in_flight.get(key, 0)
        if count <= 0:
            raise ValueError("leave() without a matching try_enter()")
        if count == 1:
            del self._in_flight[key]
        else:
            self._in_flight[key] = count - 1

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    @property
    def keys(self) -> int:
        """Keys with anything in flight."""
        return len(self._in_flight)
