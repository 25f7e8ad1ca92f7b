"""Memory: the daemon's peak RSS while a large backlog waits in its queue and it drains it, and
while one of two targets is down so that every event's delivery there fails and is retried."""

from __future__ import annotations

import asyncio
import socket

from benchmarks.broker import Names, settings_tier_names
from benchmarks.processes import Daemon
from benchmarks.report import Figure
from benchmarks.throughput import Context, prefill, rate_of


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def backlog(ctx: Context, events: int) -> Figure:
    names = Names.fresh("backlog")
    subscription = {
        "name": "backlog",
        "events": ["*"],
        "target": {"type": "webhook", "url": ctx.receiver.url("/backlog")},
    }
    daemon = Daemon(ctx.workdir, names, [subscription])
    try:
        await prefill(ctx.broker, names, events)
        await ctx.receiver.reset()
        await daemon.start(ctx.broker)
        stats = await ctx.receiver.wait_for(events, ctx.timeout_s)
        peak_mb = daemon.peak_rss_mb()
    finally:
        code = await daemon.stop()
        await ctx.broker.delete(names)
    return Figure(
        "memory.backlog",
        f"peak RSS, {events:,} events queued and drained (target <= 150)",
        peak_mb,
        "MB",
        f"{stats['count']:,}/{events:,} arrived at {rate_of(stats):,.0f}/s",
        stats["count"] >= events and code == 0,
    )


async def target_down(ctx: Context, events: int, seconds: float) -> Figure:
    """Two subscriptions per event, one to a port that refuses connections, for `seconds`."""
    names = Names.fresh("down")
    down_url = f"http://127.0.0.1:{closed_port()}/down"
    subscriptions = [
        {
            "name": "up",
            "events": ["*"],
            "target": {"type": "webhook", "url": ctx.receiver.url("/up")},
        },
        {"name": "down", "events": ["*"], "target": {"type": "webhook", "url": down_url}},
    ]
    daemon = Daemon(ctx.workdir, names, subscriptions)
    try:
        await prefill(ctx.broker, names, events)
        await ctx.receiver.reset()
        await daemon.start(ctx.broker)
        await asyncio.sleep(seconds / 2)
        half_mb = daemon.peak_rss_mb()
        await asyncio.sleep(seconds / 2)
        peak_mb = daemon.peak_rss_mb()
    finally:
        code = await daemon.stop()
        dead, _ = await ctx.broker.depth(names.dead_letter_queue)
        left, _ = await ctx.broker.depth(names.queue)
        settings = names.settings()
        waiting = 0
        for tier in settings_tier_names():  # an open circuit parks on a longer tier
            waiting += (await ctx.broker.depth(settings.retry_queue(tier)))[0]
        await ctx.broker.delete(names)
    stats = await ctx.receiver.stats()
    # Every event either waits in the queue still, or went to the healthy target while its
    # delivery to the dead one waits on a retry tier (or, past its tries, the parking lot):
    # nothing is lost, and nothing piles up in memory.
    accounted = left + waiting + dead >= events and stats["count"] >= waiting + dead
    note = (
        f"{seconds:g} s with {events:,} queued: peak {half_mb:.1f} MB at half time; "
        f"{stats['count']:,} delivered, {waiting:,} waiting on a retry tier, "
        f"{dead:,} dead-lettered, {left:,} left"
    )
    return Figure(
        "memory.down",
        "peak RSS, one of two targets down (retries pile up)",
        peak_mb,
        "MB",
        note,
        accounted and code == 0,
    )
