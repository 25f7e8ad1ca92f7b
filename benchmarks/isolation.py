"""Isolation under failure: a healthy webhook target beside a second one that is fine (the
baseline), hangs (timeout 1 s) or answers 503 at once. How fast the healthy target gets a queued
backlog, then its p99 publish-to-receipt latency at a steady rate, and that p99 over the baseline's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.broker import Broker, Names
from benchmarks.latency import percentile, publish_steadily
from benchmarks.processes import Daemon
from benchmarks.report import Figure
from benchmarks.throughput import Context, prefill
from dispatcher.amqp.topology import topology

RETRY_DELAY = "30s"  # one short tier: a failed delivery waits there instead of for hours
RETRY_TIERS_S = (30.0,)
SECOND_TIMEOUT_S = 1.0
DRAIN_GOAL_S = 5.0
DRAIN_WAIT_S = 60.0  # today's daemon may take far longer than the goal: report, never hang
LATENCY_WAIT_S = 60.0
RATIO_GOAL = 2.0

#: the second target's receiver path (answered by benchmarks.receiver, counted apart) and words
SECONDS = {
    "fine": ("/fine", "fine", "a fine one"),
    "hang": ("/hang", "hanging", f"a hanging one (timeout {SECOND_TIMEOUT_S:g} s)"),
    "fail503": ("/fail503", "answering 503", "one answering 503"),
}


@dataclass(frozen=True, slots=True)
class Load:
    events: int  # queued before the daemon starts
    rate_per_s: float  # then published steadily for `seconds`
    seconds: float


class IsolationDaemon(Daemon):
    """The benchmark daemon with one short retry tier, so failed deliveries leave quickly."""

    def __init__(self, workdir: Path, names: Names, subscriptions: list[dict[str, Any]]) -> None:
        super().__init__(workdir, names, subscriptions)
        document = yaml.safe_load(self.config.read_text())
        document["delivery"] = {**document["delivery"], "retry_delays": [RETRY_DELAY]}
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))


def subscriptions(ctx: Context, second: str) -> list[dict[str, Any]]:
    """Both match every event; the second target on a port of its own, as another host would be."""
    path = SECONDS[second][0]
    return [
        {
            "name": "healthy",
            "events": ["deployment.*"],
            "target": {"type": "webhook", "url": ctx.receiver.url("/healthy")},
        },
        {
            "name": second,
            "events": ["deployment.*"],
            "target": {
                "type": "webhook",
                "url": ctx.receiver.url(path, 1),
                "timeout_s": SECOND_TIMEOUT_S,
            },
        },
    ]


async def delete(broker: Broker, names: Names) -> None:
    """Every queue the daemon declared (its retry tier too), then what `Broker.delete` knows."""
    await broker.reconnect()  # a failed passive declare may have closed the channel
    for queue in topology(names.settings(), RETRY_TIERS_S).queues:
        await broker.channel.queue_delete(queue.name)
    await broker.delete(names)


def _drain_note(stats: dict[str, Any], events: int, elapsed_s: float) -> str:
    arrived = f"{stats['count']:,}/{events:,} arrived"
    if stats["count"] < events:
        return f"{arrived} within the {DRAIN_WAIT_S:g} s wait (goal: all within {DRAIN_GOAL_S:g} s)"
    return f"{arrived} in {elapsed_s:.1f} s (goal: within {DRAIN_GOAL_S:g} s)"


@dataclass(frozen=True, slots=True)
class Measured:
    drain: Figure
    p99: Figure


async def measure(ctx: Context, second: str, load: Load) -> Measured:
    """Queue `load.events`, start the daemon, time the healthy target's share; purge the retry
    tier, publish steadily and take the healthy target's latencies."""
    names = Names.fresh(f"iso-{second}")
    daemon = IsolationDaemon(ctx.workdir, names, subscriptions(ctx, second))
    settings = names.settings()
    try:
        await prefill(ctx.broker, names, load.events)
        await ctx.receiver.reset()
        await daemon.start(ctx.broker)
        consuming_ns = time.time_ns()
        drained = await ctx.receiver.wait_for(load.events, DRAIN_WAIT_S)
        waiting, _ = await ctx.broker.depth(settings.retry_queue(RETRY_DELAY))
        # Deliveries waiting on the tier come back 30 s later and would load the latency run
        # by how long the drain took: start it from the same state every time.
        await ctx.broker.channel.queue_purge(settings.retry_queue(RETRY_DELAY))
        await ctx.receiver.reset()
        begun = time.perf_counter()
        published = await publish_steadily(ctx, names.exchange, load.rate_per_s, load.seconds)
        achieved = published / (time.perf_counter() - begun)
        timed = await ctx.receiver.wait_for(published, LATENCY_WAIT_S)
    finally:
        code = await daemon.stop()
        await delete(ctx.broker, names)
    # From the daemon consuming (or, as its start is polled, the first arrival, if earlier)
    # to the last arrival; the whole wait when some never came.
    start_ns = min(consuming_ns, drained["first_ns"] or consuming_ns)
    elapsed_s = DRAIN_WAIT_S
    if drained["count"] >= load.events:
        elapsed_s = (drained["last_ns"] - start_ns) / 1e9
    bad = drained["apart"].get(SECONDS[second][0].strip("/"), 0)
    exit_note = f", exit {code}" if code else ""
    drain_note = (
        f"{_drain_note(drained, load.events, elapsed_s)}; the second target got {bad:,} "
        f"requests, {waiting:,} deliveries waited on the {RETRY_DELAY} tier{exit_note}"
    )
    words = SECONDS[second]
    drain = Figure(
        f"isolation.{second}.drain",
        f"isolation: healthy target beside {words[2]}, {load.events:,} events",
        drained["count"] / elapsed_s if elapsed_s > 0 else 0.0,
        "deliveries/s",
        drain_note,
        drained["count"] >= load.events and code == 0,
    )
    samples = sorted(timed["latencies_us"])
    p99 = Figure(
        f"isolation.{second}.p99",
        f"isolation: healthy target p99 at {load.rate_per_s:,.0f} events/s for "
        f"{load.seconds:g} s, second target {words[1]}",
        percentile(samples, 0.99) / 1000,
        "ms",
        f"{len(samples):,}/{published:,} arrived, published at {achieved:,.0f}/s{exit_note}",
        len(samples) >= published and code == 0,
    )
    return Measured(drain, p99)


class Baseline:
    """Both targets fine: measured once per run, by the first isolation phase that needs it."""

    def __init__(self, ctx: Context, load: Load) -> None:
        self._ctx = ctx
        self._load = load
        self.measured: Measured | None = None

    async def figures(self) -> list[Figure]:
        """The baseline's figures when this call measured it; none when it was measured before."""
        if self.measured is not None:
            return []
        self.measured = await measure(self._ctx, "fine", self._load)
        return [self.measured.drain, self.measured.p99]


async def beside(ctx: Context, second: str, load: Load, baseline: Baseline) -> list[Figure]:
    """The phase `isolation.<second>`: its figures and its p99 over the baseline's."""
    first = await baseline.figures()
    assert baseline.measured is not None
    fine = baseline.measured.p99
    measured = await measure(ctx, second, load)
    ratio = Figure(
        f"isolation.{second}.ratio",
        f"isolation: healthy target p99, {SECONDS[second][1]} / fine (goal <= {RATIO_GOAL:g}x)",
        measured.p99.value / fine.value if fine.value else 0.0,
        "x",
        complete=fine.complete and measured.p99.complete,
    )
    return [*first, measured.drain, measured.p99, ratio]
