"""Isolation: one bad target never holds up the others. Before a delivery's first try the
deliverer asks `Isolation.admit(key)`, which says whether to try now or hand the delivery to the
durable retry tiers without a try (or, for a target failing for days, give it up):

- the circuit breaker of the key is open (most recent attempts failed): park it until a probe
  has shown the target is back, instead of spending a try (and a worker) on it;
- the target is slow (its recent attempts take `slow_s` or more) and already has
  `max_in_flight` deliveries running: park it, so a slow target cannot hold every prefetch slot.
  A fast target is never capped this way, however many deliveries it has in flight;
- the key's breaker has seen nothing but failures for `disable_after_s`: the target is disabled
  (logged once); its deliveries are dead-lettered as `target_disabled` until a probe succeeds
  (which the breaker lets through once per open period), an operator enables it
  (`dispatcher targets enable`, or a successful `dispatcher test-target`), or the daemon
  restarts.

Timeouts go to the tiers from the deliverer too (no second try in process), so a hanging target
costs at most one timeout per delivery, and once its breaker opens, none.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from dispatcher.delivery.breaker import BreakerSettings, BreakerState, Bulkhead, CircuitBreaker

log = structlog.get_logger(__name__)

#: latencies remembered per key at the most (the least recently used goes first)
MAX_KEYS = 4096
_ALPHA = 0.3  # weight of the newest attempt in a key's latency average


class Admission(enum.Enum):
    TRY = "try"
    PARK_OPEN = "circuit_open"  # the breaker is open
    PARK_BUSY = "target_busy"  # a slow target at its in-flight cap
    DISABLED = "target_disabled"


@dataclass(frozen=True, slots=True)
class IsolationSettings:
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    max_in_flight: int = 10  # deliveries running at once to one slow target
    slow_s: float = 1.0  # a target whose attempts take this long on average is slow
    disable_after_s: float = 5 * 86400.0  # failing this long (Svix: 5 days): disabled


class Isolation:
    """Breaker, bulkhead and slowness per target key (pure bookkeeping, an injected clock).

    `on_breaker(key, old, new)` hears each breaker state change once (for a log line)."""

    def __init__(
        self,
        settings: IsolationSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_breaker: Callable[[str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self.breaker = CircuitBreaker(settings.breaker, clock=clock, on_change=on_breaker)
        self._bulkhead = Bulkhead(1_000_000)  # counts only; the cap applies to slow keys
        self._latency_s: dict[str, float] = {}
        self._disabled: set[str] = set()

    def admit(self, key: str) -> Admission:
        """Whether the delivery to `key` may try now; when it may, `leave(key)` must follow."""
        if self._too_slow(key):
            return Admission.PARK_BUSY
        if not self.breaker.allow(key):
            return Admission.DISABLED if self._failing_for_days(key) else Admission.PARK_OPEN
        self._bulkhead.try_enter(key)
        return Admission.TRY

    def may_retry(self, key: str) -> bool:
        """Whether a delivery that just failed may try again in process: not once the key's
        circuit has opened (one probe per open period, and no tries into an outage)."""
        return self.breaker.state(key) is BreakerState.CLOSED

    def leave(self, key: str) -> None:
        self._bulkhead.leave(key)

    def record(self, key: str, elapsed_s: float, *, failed: bool) -> None:
        """One attempt ended: `failed` when the target failed to take it (a retryable failure:
        it is down, overloaded or hanging); an answer that refuses the message is no failure
        of the target."""
        average = self._latency_s.pop(key, elapsed_s)
        self._latency_s[key] = average + _ALPHA * (elapsed_s - average)
        if len(self._latency_s) > MAX_KEYS:
            del self._latency_s[next(iter(self._latency_s))]
        self.breaker.record(key, not failed)
        if not failed and key in self._disabled:
            self._disabled.discard(key)
            log.warning("target enabled again: a delivery to it succeeded", target=key)

    def enable(self, key: str) -> bool:
        """An operator says the target is back (`dispatcher targets enable`, or a successful
        `test-target`): close its circuit and enable it. Whether it was disabled or open."""
        tripped = self.breaker.reset(key)
        if key in self._disabled:
            self._disabled.discard(key)
            return True
        return tripped

    def states(self) -> dict[str, int]:
        """Targets by breaker state, and how many are disabled: for a metrics gauge."""
        counts: dict[str, int] = {str(state): n for state, n in self.breaker.counts().items()}
        counts["disabled"] = len(self._disabled)
        return counts

    @property
    def breaker_settings(self) -> BreakerSettings:
        return self._settings.breaker

    @property
    def disabled(self) -> int:
        return len(self._disabled)

    def _too_slow(self, key: str) -> bool:
        return (
            self._latency_s.get(key, 0.0) >= self._settings.slow_s
            and self._bulkhead.in_flight(key) >= self._settings.max_in_flight
        )

    def _failing_for_days(self, key: str) -> bool:
        since = self.breaker.failing_since(key)
        if since is None or self._clock() - since < self._settings.disable_after_s:
            return False
        if key not in self._disabled:
            self._disabled.add(key)
            days = self._settings.disable_after_s / 86400
            log.error("target disabled: it has failed for too long", target=key, days=days)
        return True
