"""What the core (the pipeline and the deliverer) reports, as protocols: the core depends on
these, not on the admin server. `dispatcher.admin.metrics.Metrics` is the Prometheus
implementation the App passes in; `NullObserver` counts nothing (tests, embedding).

The shapes keep the hot path cheap: counters are bound once per target type and incremented
in place, never looked up by label per event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Observation(Protocol):
    def observe(self, amount: float) -> None: ...


class TargetObserver(Protocol):
    """The counters of one target type."""

    @property
    def delivered(self) -> Count: ...

    @property
    def retry_later(self) -> Count: ...

    @property
    def dead_letter(self) -> Count: ...

    @property
    def attempt_seconds(self) -> Observation: ...

    @property
    def rate_limit_waits(self) -> Count: ...


class DeliveryObserver(Protocol):
    """What the deliverer reports."""

    @property
    def dead_letters(self) -> Mapping[str, Count]: ...

    @property
    def retries(self) -> Mapping[str, Count]: ...

    def target(self, target_type: str) -> TargetObserver: ...

    def parked(self, target_type: str, why: str) -> None: ...

    def retry_scheduled(self, tier: str) -> None: ...


class EventObserver(Protocol):
    """What the pipeline reports."""

    def event_consumed(self, event_type: str) -> None: ...

    def event_invalid(self) -> None: ...

    def event_unmatched(self) -> None: ...

    def fanout_exceeded(self, dead_letters: int) -> None:
        """An event matched more than `delivery.max_fanout` subscriptions; `dead_letters`
        deliveries were dead-lettered instead of made."""
        ...


class _Nothing:
    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


class _AnyKey(dict[str, Count]):
    def __missing__(self, key: str) -> Count:
        return _NOTHING


_NOTHING = _Nothing()


class _NullTarget:
    delivered = retry_later = dead_letter = rate_limit_waits = _NOTHING
    attempt_seconds = _NOTHING


class NullObserver:
    """Reports to no one: both protocols, every count dropped."""

    dead_letters: Mapping[str, Count] = _AnyKey()
    retries: Mapping[str, Count] = _AnyKey()
    _target = _NullTarget()

    def target(self, target_type: str) -> TargetObserver:
        return self._target

    def parked(self, target_type: str, why: str) -> None:
        return None

    def retry_scheduled(self, tier: str) -> None:
        return None

    def event_consumed(self, event_type: str) -> None:
        return None

    def event_invalid(self) -> None:
        return None

    def event_unmatched(self) -> None:
        return None

    def fanout_exceeded(self, dead_letters: int) -> None:
        return None
