"""Throughput: the machine's ceiling (bare consume+ack, bare POST, combined), the daemon draining
pre-published events to one webhook target and fanned out to ten, and the kombu baseline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.broker import Broker, Names, event_body
from benchmarks.processes import Daemon, Receiver, run_bare
from benchmarks.report import Figure

FANOUT = 10
PREFILL_TIMEOUT_S = 600.0  # queueing 100,000 events takes well under a minute here


@dataclass(frozen=True, slots=True)
class Context:
    broker: Broker
    receiver: Receiver
    workdir: Path
    timeout_s: float


def rate_of(stats: dict[str, Any]) -> float:
    """Arrivals per second at the receiver, from the first to the last."""
    elapsed_s = (stats["last_ns"] - stats["first_ns"]) / 1e9
    return (stats["count"] - 1) / elapsed_s if stats["count"] > 1 and elapsed_s > 0 else 0.0


def _arrived(count: int, expected: int) -> str:
    return f"{count:,}/{expected:,} arrived"


async def prefill(broker: Broker, names: Names, events: int) -> None:
    """Declare the daemon's topology under these names and queue `events` events in it."""
    async with asyncio.timeout(PREFILL_TIMEOUT_S):  # a broker blocking publishers must not hang us
        await broker.declare(names)
        await broker.publish(names.exchange, (event_body(n) for n in range(events)))


async def ceiling(ctx: Context, events: int) -> list[Figure]:
    names = Names.fresh("ceiling")
    try:
        await prefill(ctx.broker, names, events)
        consumed = await run_bare("consume", names.queue, str(events), timeout_s=ctx.timeout_s)
    finally:
        await ctx.broker.delete(names)
    await ctx.receiver.reset()
    url = ctx.receiver.url("/bare")
    posted = await run_bare("post", url, str(events), timeout_s=ctx.timeout_s)
    arrived = (await ctx.receiver.stats())["count"]
    consume, post = consumed["rate"], posted["rate"]
    combined = 1 / (1 / consume + 1 / post) if consume and post else 0.0
    return [
        Figure(
            "ceiling.consume",
            "ceiling: bare aiormq consume + ack, no work",
            consume,
            "msg/s",
            _arrived(consumed["count"], events).replace("arrived", "acked"),
            consumed["count"] == events,
        ),
        Figure(
            "ceiling.post",
            "ceiling: bare aiohttp POST to the receiver",
            post,
            "req/s",
            _arrived(arrived, events),
            arrived == events,
        ),
        Figure(
            "ceiling.combined",
            "ceiling: both on the same cores, 1/(1/consume + 1/post)",
            combined,
            "/s",
        ),
    ]


async def drain(ctx: Context, phase: str, events: int, targets: int) -> tuple[float, str, bool]:
    """Queue `events`, start the daemon with `targets` subscriptions matching every event, each
    on its own receiver port, and time the deliveries as they arrive."""
    names = Names.fresh(phase)
    subscriptions = [
        {
            "name": f"target-{i}",
            "events": ["deployment.*"],
            "filter": {"projects": ["web"], "environment_types": ["PRODUCTION"]},
            "target": {"type": "webhook", "url": ctx.receiver.url(f"/hook/{i}", i)},
        }
        for i in range(targets)
    ]
    daemon = Daemon(ctx.workdir, names, subscriptions)
    expected = events * targets
    try:
        await prefill(ctx.broker, names, events)
        await ctx.receiver.reset()
        await daemon.start(ctx.broker)
        stats = await ctx.receiver.wait_for(expected, ctx.timeout_s)
    finally:
        code = await daemon.stop()
        left, _ = await ctx.broker.depth(names.queue)
        await ctx.broker.delete(names)
    complete = stats["count"] >= expected and code == 0 and left == 0
    note = _arrived(stats["count"], expected) + (f", exit {code}" if code else "")
    return rate_of(stats), note, complete


async def daemon_throughput(ctx: Context, events: int, fanout_events: int) -> list[Figure]:
    rate, note, complete = await drain(ctx, "one", events, 1)
    fan_rate, fan_note, fan_complete = await drain(ctx, "fanout", fanout_events, FANOUT)
    return [
        Figure(
            "daemon.one",
            f"dispatcher: {events:,} queued events to one webhook target",
            rate,
            "deliveries/s",
            note,
            complete,
        ),
        Figure(
            "daemon.fanout",
            f"dispatcher: fan-out, {fanout_events:,} events x {FANOUT} targets",
            fan_rate,
            "deliveries/s",
            fan_note,
            fan_complete,
        ),
    ]


def ratio(ceiling_figures: list[Figure], daemon_figures: list[Figure]) -> Figure:
    combined = next(f.value for f in ceiling_figures if f.key == "ceiling.combined")
    one = next(f.value for f in daemon_figures if f.key == "daemon.one")
    return Figure(
        "daemon.ratio",
        "dispatcher: one target / combined ceiling (target >= 0.8)",
        one / combined if combined else 0.0,
        "x",
    )


async def kombu_baseline(ctx: Context, events: int) -> Figure:
    names = Names.fresh("kombu")
    try:
        await prefill(ctx.broker, names, events)
        await ctx.receiver.reset()
        url = ctx.receiver.url("/kombu")
        report = await run_bare("kombu", names.queue, str(events), url, timeout_s=ctx.timeout_s)
    finally:
        await ctx.broker.delete(names)
    return Figure(
        "baseline.kombu",
        "for comparison: kombu consumer + requests.post, one at a time",
        report["rate"],
        "deliveries/s",
        _arrived(report["count"], events),
        report["count"] == events,
    )
