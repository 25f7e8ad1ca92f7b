"""The durable retry schedule: after the quick tries in process, which delay tier a failed
delivery waits on next, or why it is given up. Pure: ages and delays are numbers of seconds.

Each delay is a broker queue with a fixed TTL (`<queue>.retry.<delay>`, e.g. `.retry.10m`)
that hands its messages back to the deliveries queue when they expire. A delivery's `retries`
counts the tiers it has waited on, so the next one is `delays[retries]`. Tiers are named after
their delay, not their place in the list, so changing the list strands nothing: a message
waiting on a tier that left the list still expires into the deliveries queue and carries on
with the current list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.durations import duration_name, parse_duration

#: in the spirit of Svix and Convoy: quick at first, then hours apart, over about a day
DEFAULT_RETRY_DELAYS = ("10s", "1m", "10m", "1h", "6h", "12h")
DEFAULT_MAX_AGE = "24h"

#: why a delivery is given up instead of waiting on a tier
RETRIES_EXHAUSTED = "retries_exhausted"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Tier:
    """Wait `delay_s` on the tier queue named `name`; the delivery has then waited `retries`."""

    delay_s: float
    retries: int

    @property
    def name(self) -> str:
        return duration_name(self.delay_s)


@dataclass(frozen=True, slots=True)
class Schedule:
    delays_s: tuple[float, ...]
    max_age_s: float

    @classmethod
    def of(cls, delays: Sequence[str], max_age: str) -> Schedule:
        return cls(tuple(parse_duration(d) for d in delays), parse_duration(max_age))

    def override(self, delays: Sequence[str] | None, max_age: str | None) -> Schedule:
        """This schedule with a subscription's own delays and/or max age."""
        return Schedule(
            tuple(parse_duration(d) for d in delays) if delays else self.delays_s,
            parse_duration(max_age) if max_age else self.max_age_s,
        )

    def next(self, retries: int, age_s: float, retry_after_s: float | None = None) -> Tier | str:
        """The tier to wait on after `retries` waits, `age_s` after the first try; or
        RETRIES_EXHAUSTED / EXPIRED. A Retry-After longer than the next tier moves on to the
        first tier at least that long (or the last one)."""
        if retries >= len(self.delays_s):
            return RETRIES_EXHAUSTED
        index = retries
        if retry_after_s is not None:
            while index < len(self.delays_s) - 1 and self.delays_s[index] < retry_after_s:
                index += 1
        delay_s = self.delays_s[index]
        if age_s + delay_s > self.max_age_s:
            return EXPIRED
        return Tier(delay_s, index + 1)

    def park(self, wait_s: float, retries: int) -> Tier:
        """A tier to wait on for about `wait_s` (a rate limit's backlog, an open circuit),
        counting no retry: the shortest delay at least that long, or the longest."""
        for delay_s in sorted(self.delays_s):
            if delay_s >= wait_s:
                return Tier(delay_s, retries)
        return Tier(max(self.delays_s), retries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(duration_name(d) for d in self.delays_s)
