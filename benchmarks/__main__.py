"""`python -m benchmarks`: run every phase (or `--only` some), `--repeat` times, print the table.

Needs RabbitMQ on 127.0.0.1:5672 (or DISPATCHER_BENCH_AMQP_URL); all HTTP stays on loopback.
Exits 1 when a phase lost or missed events (the figures are still printed); it asserts no speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import aiormq
import orjson

from benchmarks import isolation, latency, matching, memory, throughput
from benchmarks.broker import Broker
from benchmarks.processes import BenchmarkError, Receiver
from benchmarks.report import Figure, machine, render, write
from dispatcher.cli import run_async

PHASES = (
    "ceiling",
    "throughput",
    "latency",
    "memory",
    "matching",
    "baseline",
    "isolation.hang",
    "isolation.fail503",
)
GROUPS = {"isolation": {"isolation.hang", "isolation.fail503"}}


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int = 20_000
    fanout_events: int = 2_000
    latency_rate_per_s: float = 500
    latency_s: float = 30
    backlog_events: int = 100_000
    down_events: int = 20_000
    down_s: float = 20
    baseline_events: int = 2_000
    matching_events: int = 2_000
    matching_rounds: int = 30
    isolation_events: int = 1_000
    isolation_rate_per_s: float = 200
    isolation_s: float = 10
    timeout_s: float = 180


QUICK = Sizes(
    events=300,
    fanout_events=30,
    latency_s=1,
    backlog_events=300,
    down_events=100,
    down_s=1.5,
    baseline_events=100,
    matching_events=100,
    matching_rounds=2,
    isolation_events=100,
    isolation_rate_per_s=100,
    isolation_s=1,
    timeout_s=60,
)


async def run_once(ctx: throughput.Context, sizes: Sizes, phases: set[str]) -> list[Figure]:
    figures: list[Figure] = []

    async def phase(name: str, measure: Callable[[], Awaitable[list[Figure]]]) -> list[Figure]:
        if name not in phases:
            return []
        try:
            await ctx.broker.reconnect()
            found = await measure()
        except (BenchmarkError, aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            found = [Figure(f"{name}.failed", f"{name}: failed", 0, "", error, complete=False)]
        for figure in found:
            print(
                f"  {figure.label}: {figure.value:,.2f} {figure.unit} {figure.note}",
                file=sys.stderr,
            )
        figures.extend(found)
        return found

    async def memory_phase() -> list[Figure]:
        backlog = await memory.backlog(ctx, sizes.backlog_events)
        return [backlog, await memory.target_down(ctx, sizes.down_events, sizes.down_s)]

    async def baseline() -> list[Figure]:
        return [await throughput.kombu_baseline(ctx, sizes.baseline_events)]

    async def matching_phase() -> list[Figure]:
        return matching.matching(sizes.matching_events, sizes.matching_rounds)

    ceiling = await phase("ceiling", lambda: throughput.ceiling(ctx, sizes.events))
    drained = await phase(
        "throughput",
        lambda: throughput.daemon_throughput(ctx, sizes.events, sizes.fanout_events),
    )
    if ceiling and drained and all(f.complete for f in ceiling + drained):
        figures.insert(len(ceiling) + 1, throughput.ratio(ceiling, drained))
    rate, seconds = sizes.latency_rate_per_s, sizes.latency_s
    await phase("latency", lambda: latency.latency(ctx, rate, seconds))
    await phase("memory", memory_phase)
    await phase("matching", matching_phase)
    await phase("baseline", baseline)
    load = isolation.Load(sizes.isolation_events, sizes.isolation_rate_per_s, sizes.isolation_s)
    fine = isolation.Baseline(ctx, load)  # both targets fine: measured once, for both phases
    await phase("isolation.hang", lambda: isolation.beside(ctx, "hang", load, fine))
    await phase("isolation.fail503", lambda: isolation.beside(ctx, "fail503", load, fine))
    return figures


async def run(sizes: Sizes, repeat: int, phases: set[str]) -> tuple[list[str], list[list[Figure]]]:
    runs: list[list[Figure]] = []
    with tempfile.TemporaryDirectory(prefix="dispatcher-bench-") as workdir:
        async with Broker() as broker, Receiver(throughput.FANOUT) as receiver:
            ctx = throughput.Context(broker, receiver, Path(workdir), sizes.timeout_s)
            header = machine(broker.version)
            for n in range(repeat):
                started = time.monotonic()
                runs.append(await run_once(ctx, sizes, phases))
                print(f"run {n + 1}/{repeat}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return header, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few hundred events per phase")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the table shows the spread")
    parser.add_argument("--events", type=int, help="events for the throughput phases")
    parser.add_argument(
        "--only", help=f"comma-separated phases among {','.join(PHASES)} (isolation: both)"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.events:
        sizes = replace(sizes, events=args.events, fanout_events=max(1, args.events // 10))
    phases = set(args.only.split(",")) if args.only else set(PHASES)
    for group in GROUPS.keys() & phases:
        phases = (phases - {group}) | GROUPS[group]
    if unknown := phases - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    mode = "quick" if args.quick else "full"
    header, runs = run_async(run(sizes, max(1, args.repeat), phases))
    title = f"dispatcher benchmark ({mode}, {len(runs)} run{'s' if len(runs) > 1 else ''})"
    write(render([title, *header], runs))
    if args.json:
        args.json.write_bytes(orjson.dumps([[asdict(f) for f in run] for run in runs]))
    return 0 if all(f.complete for run in runs for f in run) else 1


if __name__ == "__main__":
    sys.exit(main())
