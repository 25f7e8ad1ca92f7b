"""Latency: events published at a steady rate to a running daemon; publish-to-receipt time at
the receiver (each event's data carries `sent_ns`, its publish time)."""

from __future__ import annotations

import asyncio
import time

from benchmarks.broker import Names, event_body
from benchmarks.processes import Daemon
from benchmarks.report import Figure
from benchmarks.throughput import Context


def percentile(values: list[int], fraction: float) -> float:
    """The nearest-rank percentile of sorted `values` (0 when there are none)."""
    if not values:
        return 0.0
    rank = max(0, min(len(values) - 1, round(fraction * len(values)) - 1))
    return float(values[rank])


async def publish_steadily(ctx: Context, exchange: str, rate_per_s: float, seconds: float) -> int:
    """Publish at `rate_per_s` for `seconds` (catching up when late, never bursting ahead)."""
    async with asyncio.timeout(seconds + ctx.timeout_s):  # a broker blocking us must not hang us
        return await _publish_steadily(ctx, exchange, rate_per_s, seconds)


async def _publish_steadily(ctx: Context, exchange: str, rate_per_s: float, seconds: float) -> int:
    total = round(rate_per_s * seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    confirms: list[asyncio.Task[None]] = []  # awaited at the end: a publish waits for no confirm
    for n in range(total):
        delay = started + n / rate_per_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body = event_body(n, sent=True)
        confirms.append(asyncio.create_task(ctx.broker.publish_one(exchange, body)))
    await asyncio.gather(*confirms)
    return total


async def latency(ctx: Context, rate_per_s: float, seconds: float) -> list[Figure]:
    names = Names.fresh("latency")
    subscription = {
        "name": "latency",
        "events": ["deployment.*"],
        "target": {"type": "webhook", "url": ctx.receiver.url("/latency")},
    }
    daemon = Daemon(ctx.workdir, names, [subscription])
    try:
        await ctx.broker.declare(names)
        await daemon.start(ctx.broker)
        await ctx.receiver.reset()
        begun = time.perf_counter()
        published = await publish_steadily(ctx, names.exchange, rate_per_s, seconds)
        achieved = published / (time.perf_counter() - begun)
        stats = await ctx.receiver.wait_for(published, ctx.timeout_s)
    finally:
        code = await daemon.stop()
        await ctx.broker.delete(names)
    samples = sorted(stats["latencies_us"])
    complete = len(samples) >= published and code == 0
    note = f"{len(samples):,}/{published:,} arrived, published at {achieved:,.0f}/s"
    label = f"latency at {rate_per_s:,.0f} events/s for {seconds:g} s, publish to receipt"
    return [
        Figure(
            "latency.p50", f"{label}: p50", percentile(samples, 0.5) / 1000, "ms", note, complete
        ),
        Figure(
            "latency.p99", f"{label}: p99 (target <= 25)", percentile(samples, 0.99) / 1000, "ms"
        ),
        Figure("latency.max", f"{label}: max", (samples[-1] if samples else 0) / 1000, "ms"),
    ]
