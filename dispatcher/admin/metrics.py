"""Prometheus metrics: one private registry per `App`, label children bound ahead of time.

The hot path pays a dict lookup and a `.inc()` / `.observe()` per event and per attempt: label
children are created once and cached, never looked up by `labels()` per event, and nothing is
formatted per event. Live values (in-flight deliveries, subscriptions, readiness, reconnects)
are read from their owners at scrape time instead of being kept up to date by them.

Labels never carry unbounded values: no event ids, subscription names, URLs or reasons' text.
- `type` on events: event types are chosen by producers and unbounded, so only the types of the
  event contract (`<resource>.<action>` of the known resources and actions, see `KNOWN_TYPES`)
  get their own series; any other well-formed type counts as `other`, an undecodable message
  as `invalid`. That caps the label at a few dozen values whatever producers send.
- `target_type` is bounded by the config schema; `outcome`, `tier` and `reason` by this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

#: the resources and actions of the event contract (README, "What a producer publishes")
_ACTIONS = {
    **dict.fromkeys(
        ("parameter", "project", "environment", "value", "template", "secret"),
        ("created", "updated", "deleted"),
    ),
    "deployment": ("started", "succeeded", "failed", "cancelled"),
    "file": ("uploaded", "downloaded", "deleted"),
}
KNOWN_TYPES = frozenset(f"{r}.{a}" for r, actions in _ACTIONS.items() for a in actions)
#: `inprocess` counts quick tries in this process; the durable tiers are named by their delay
#: (`10s`, `1h`): the config bounds them
RETRY_TIERS = ("inprocess",)
DEAD_LETTER_REASONS = (
    "invalid_event",
    "permanent_failure",
    "retries_exhausted",
    "expired",
    "target_disabled",
    "subscription_gone",
    "no_channel",
    "fanout_exceeded",
)
#: attempt latency: a local webhook answers in milliseconds, a target may time out at 10-30 s
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


@dataclass(frozen=True, slots=True)
class TargetMetrics:
    """The children of one target type, bound once."""

    delivered: Counter
    retry_later: Counter
    dead_letter: Counter
    attempt_seconds: Histogram
    rate_limit_waits: Counter


class _Live(Collector):
    """Counters whose value lives elsewhere (an int its owner increments), read at scrape time."""

    def __init__(self) -> None:
        self.reconnects: Callable[[], float] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "dispatcher_broker_reconnects",
            "Reconnections to the broker after a lost or refused connection.",
            value=self.reconnects(),
        )


class Metrics:
    """Every dispatcher metric, in a registry of its own (several Apps in a process, or tests,
    never collide in the global one). `process=False` leaves out the process_* collectors."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        consumed = Counter(
            "dispatcher_events_consumed",
            "Messages taken from the work queue, by event type (known types, other, invalid).",
            ["type"],
            registry=registry,
        )
        self._consumed_family = consumed
        self._consumed: dict[str, Counter] = {}
        self._consumed_other = consumed.labels("other")
        self._consumed_invalid = consumed.labels("invalid")
        self._invalid = Counter(
            "dispatcher_events_invalid", "Messages that were not valid events.", registry=registry
        )
        self._unmatched = Counter(
            "dispatcher_events_unmatched",
            "Events no enabled subscription matched.",
            registry=registry,
        )
        self._deliveries = Counter(
            "dispatcher_deliveries",
            "Deliveries ended, by target type and outcome.",
            ["target_type", "outcome"],
            registry=registry,
        )
        self._latency = Histogram(
            "dispatcher_delivery_attempt_seconds",
            "Duration of one delivery attempt (one send to the target), by target type.",
            ["target_type"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._waits = Counter(
            "dispatcher_rate_limit_waits",
            "Deliveries that waited for a target's rate limit, by target type.",
            ["target_type"],
            registry=registry,
        )
        self._targets: dict[str, TargetMetrics] = {}
        retries = Counter(
            "dispatcher_retries_scheduled",
            "Retries decided, by tier (inprocess: another try in this process).",
            ["tier"],
            registry=registry,
        )
        self._retries_family = retries
        self.retries = {tier: retries.labels(tier) for tier in RETRY_TIERS}
        self._parked = Counter(
            "dispatcher_deliveries_parked",
            "Deliveries handed to a retry tier without a try, by target type and why "
            "(circuit_open, target_busy, rate_limited).",
            ["target_type", "why"],
            registry=registry,
        )
        self.breakers = Gauge(
            "dispatcher_circuit_breakers",
            "Targets by the state of their circuit breaker (closed, open, half_open), and "
            "targets disabled after failing too long (disabled).",
            ["state"],
            registry=registry,
        )
        self.queues = Gauge(
            "dispatcher_queue_messages",
            "Messages ready in each queue dispatcher declared (the work queue, the deliveries "
            "queue, each retry tier, the dead letters), read from the broker periodically.",
            ["queue", "role"],
            registry=registry,
        )
        dead = Counter(
            "dispatcher_dead_letters",
            "Messages sent to the dead-letter queue, by reason.",
            ["reason"],
            registry=registry,
        )
        self.dead_letters = {reason: dead.labels(reason) for reason in DEAD_LETTER_REASONS}
        self.in_flight = Gauge(
            "dispatcher_deliveries_in_flight",
            "Deliveries started and not ended (sending or waiting between tries).",
            registry=registry,
        )
        self.subscriptions = Gauge(
            "dispatcher_subscriptions_loaded",
            "Enabled subscriptions loaded (the ones events are matched against).",
            registry=registry,
        )
        self.ready = Gauge(
            "dispatcher_ready",
            "1 when consuming from the broker with subscriptions loaded, else 0.",
            registry=registry,
        )
        self._live = _Live()
        registry.register(self._live)

    def event_consumed(self, event_type: str) -> None:
        child = self._consumed.get(event_type)
        if child is None:
            if event_type not in KNOWN_TYPES:
                self._consumed_other.inc()
                return
            child = self._consumed[event_type] = self._consumed_family.labels(event_type)
        child.inc()

    def event_invalid(self) -> None:
        self._consumed_invalid.inc()
        self._invalid.inc()
        self.dead_letters["invalid_event"].inc()

    def fanout_exceeded(self, dead_letters: int) -> None:
        self.dead_letters["fanout_exceeded"].inc(dead_letters)

    def parked(self, target_type: str, why: str) -> None:
        """A delivery went to a retry tier without a try (the config bounds both labels)."""
        self._parked.labels(target_type, why).inc()

    def watch_breakers(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Read the breakers' states at scrape time (wired by the App)."""

        def reader(state: str) -> Callable[[], float]:
            return lambda: counts().get(state, 0)

        for state in ("closed", "open", "half_open", "disabled"):
            self.breakers.labels(state).set_function(reader(state))

    def watch_queues(self, roles: Mapping[str, str], depths: Mapping[str, int]) -> None:
        """Read each queue's depth at scrape time from `depths` (kept by the consumer), NaN
        until it was first read. `roles` maps each declared queue to its role (work,
        deliveries, dead_letters, retry): the config bounds both labels."""

        def reader(queue: str) -> Callable[[], float]:
            return lambda: depths.get(queue, math.nan)

        for queue, role in roles.items():
            self.queues.labels(queue, role).set_function(reader(queue))

    def retry_scheduled(self, tier: str) -> None:
        """A delivery was handed to the durable tier of this delay (e.g. `10m`)."""
        child = self.retries.get(tier)
        if child is None:
            child = self.retries[tier] = self._retries_family.labels(tier)
        child.inc()

    def event_unmatched(self) -> None:
        self._unmatched.inc()

    def target(self, target_type: str) -> TargetMetrics:
        """The children of a target type, bound on first use (the App binds the configured
        types up front, so their series show 0 before the first delivery). The config schema
        bounds the types."""
        found = self._targets.get(target_type)
        if found is None:
            found = self._targets[target_type] = self._bind(target_type)
        return found

    def _bind(self, kind: str) -> TargetMetrics:
        outcome = self._deliveries.labels
        return TargetMetrics(
            delivered=outcome(kind, "delivered"),
            retry_later=outcome(kind, "retry_later"),
            dead_letter=outcome(kind, "dead_letter"),
            attempt_seconds=self._latency.labels(kind),
            rate_limit_waits=self._waits.labels(kind),
        )

    def watch(
        self,
        *,
        in_flight: Callable[[], float],
        subscriptions: Callable[[], float],
        ready: Callable[[], float],
        reconnects: Callable[[], float],
    ) -> None:
        """Read these live values from their owners at scrape time (wired by the App)."""
        self.in_flight.set_function(in_flight)
        self.subscriptions.set_function(subscriptions)
        self.ready.set_function(ready)
        self._live.reconnects = reconnects
