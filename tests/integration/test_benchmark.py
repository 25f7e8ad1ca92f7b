"""The benchmark's quick mode, so it cannot rot: every phase runs against the real daemon, broker
and receiver, prints its row, and loses no event. No speed is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROWS = (
    "ceiling: bare aiormq consume + ack, no work",
    "ceiling: bare aiohttp POST to the receiver",
    "ceiling: both on the same cores",
    "dispatcher: 300 queued events to one webhook target",
    "dispatcher: one target / combined ceiling",
    "dispatcher: fan-out, 30 events x 10 targets",
    "publish to receipt: p50",
    "publish to receipt: p99",
    "publish to receipt: max",
    "peak RSS, 300 events queued and drained",
    "peak RSS, one of two targets down",
    "matching: 10 subscriptions",
    "matching: 1,000 subscriptions",
    "matching: 10,000 subscriptions",
    "matching: 10,000 : 10 subscriptions",
    "for comparison: kombu consumer + requests.post",
    "isolation: healthy target beside a fine one, 100 events",
    "isolation: healthy target p99 at 100 events/s for 1 s, second target fine",
    "isolation: healthy target beside a hanging one (timeout 1 s), 100 events",
    "isolation: healthy target p99 at 100 events/s for 1 s, second target hanging",
    "isolation: healthy target p99, hanging / fine",
    "isolation: healthy target beside one answering 503, 100 events",
    "isolation: healthy target p99 at 100 events/s for 1 s, second target answering 503",
    "isolation: healthy target p99, answering 503 / fine",
)


def test_quick_mode_prints_every_row_and_loses_nothing(rabbitmq: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DISPATCHER_BENCH_AMQP_URL": rabbitmq},
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "dispatcher benchmark (quick, 1 run)"
    assert lines[1].startswith("machine: ")
    assert " cores (" in lines[1]
    assert lines[2].startswith("RabbitMQ ")
    assert "daemon loop: " in lines[2]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| figure")]
    for label, row in zip(ROWS, rows, strict=True):
        assert label in row.split(" | ")[0], row
        assert "INCOMPLETE" not in row
    [run] = json.loads(figures.read_text())
    assert all(figure["complete"] for figure in run)
    notes = {figure["key"]: figure["note"] for figure in run}
    assert notes["daemon.one"] == "300/300 arrived"
    assert notes["daemon.fanout"] == "300/300 arrived"
    assert notes["latency.p50"].startswith("500/500 arrived")
    assert notes["memory.backlog"].startswith("300/300 arrived")
    assert notes["baseline.kombu"] == "100/100 arrived"
