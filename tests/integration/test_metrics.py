"""/metrics after a known run: each counter moved by exactly what the run did, and no label
carries an unbounded value. Also `dispatcher status` against the real broker."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiormq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.events import new_event
from tests.integration.observe import get
from tests.support import (
    BrokerNames,
    Sink,
    publish_events,
    publish_raw,
    running,
    settled,
    wait_for_depth,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_counters_move_by_what_a_known_run_did(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/broken"] = 503  # retried twice in process, then dead-lettered
    sink.status["/gone"] = 404  # dead-lettered at once

    def sub(name: str, events: str, path: str | None) -> dict[str, Any]:
        target = {"type": "webhook", "url": sink.url(path)} if path else {"type": "log"}
        return {"name": name, "events": [events], "target": target}

    subscriptions = [
        sub("ok", "deployment.*", "/ok"),
        sub("broken", "deployment.failed", "/broken"),
        sub("gone", "file.deleted", "/gone"),
        sub("logged", "file.*", None),
    ]
    config = write_config(tmp_path / "c.yaml", names, subscriptions)
    events = [
        new_event("deployment.started", "test"),
        new_event("deployment.started", "test"),
        new_event("deployment.failed", "test"),
        new_event("file.deleted", "test"),
        new_event("custom.thing-happened", "test"),  # unmatched, and not a contract type
    ]
    async with running(config) as app:
        await publish_events(amqp, names, events)
        await publish_raw(amqp, names.exchange, "x", b"{not json")
        await settled(app, 6)
        status, text = await get(f"{app.servers[0].url}/metrics")
    assert status == 200
    samples = parse(text)
    consumed = "dispatcher_events_consumed_total"
    assert value(samples, consumed, type="deployment.started") == 2
    assert value(samples, consumed, type="deployment.failed") == 1
    assert value(samples, consumed, type="file.deleted") == 1
    assert value(samples, consumed, type="other") == 1
    assert value(samples, consumed, type="invalid") == 1
    assert value(samples, "dispatcher_events_invalid_total") == 1
    assert value(samples, "dispatcher_events_unmatched_total") == 1
    deliveries = "dispatcher_deliveries_total"
    assert value(samples, deliveries, target_type="webhook", outcome="delivered") == 3
    assert value(samples, deliveries, target_type="webhook", outcome="dead_letter") == 1
    assert value(samples, deliveries, target_type="webhook", outcome="retry_later") == 1
    assert value(samples, deliveries, target_type="log", outcome="delivered") == 1
    assert value(samples, deliveries, target_type="log", outcome="dead_letter") == 0
    attempts = "dispatcher_delivery_attempt_seconds_count"
    assert value(samples, attempts, target_type="webhook") == 3 + 3 + 1
    assert value(samples, attempts, target_type="log") == 1
    assert value(samples, "dispatcher_retries_scheduled_total", tier="inprocess") == 2
    assert value(samples, "dispatcher_retries_scheduled_total", tier="10s") == 1
    dead = "dispatcher_dead_letters_total"
    assert value(samples, dead, reason="invalid_event") == 1
    assert value(samples, dead, reason="retries_exhausted") == 0  # it waits on a tier
    assert value(samples, dead, reason="permanent_failure") == 1
    assert value(samples, dead, reason="no_channel") == 0
    assert value(samples, "dispatcher_rate_limit_waits_total", target_type="webhook") == 0
    assert value(samples, "dispatcher_deliveries_in_flight") == 0
    assert value(samples, "dispatcher_subscriptions_loaded") == 4
    assert value(samples, "dispatcher_ready") == 1
    assert value(samples, "dispatcher_broker_reconnects_total") == 0
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    for event in events:
        assert event["id"] not in text
    assert "127.0.0.1" not in text  # no target URL in any label
    assert "guest" not in text


def run_status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_depth_of_every_declared_queue_is_a_gauge(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/down"] = 503  # each event waits on the 1m tier
    subscriptions = [
        {"name": "down", "events": ["*"], "target": {"type": "webhook", "url": sink.url("/down")}}
    ]
    delivery = {"attempts": 1, "retry_delays": ["1m", "1h"]}
    config = write_config(
        tmp_path / "c.yaml",
        names,
        subscriptions,
        delivery=delivery,
        metrics={"queue_depth_every": "0.1s"},
    )
    gauge = "dispatcher_queue_messages"
    async with running(config) as app:
        url = f"{app.servers[0].url}/metrics"
        await publish_events(amqp, names, [new_event("deployment.failed", "t") for _ in range(3)])
        await wait_for_depth(amqp, f"{names.queue}.retry.1m", 3)
        tier = {"queue": f"{names.queue}.retry.1m", "role": "retry"}
        await wait_until(
            lambda: app.metrics.registry.get_sample_value(gauge, tier) == 3, what="3 on the tier"
        )
        status, text = await get(url)
    assert status == 200
    samples = parse(text)
    assert value(samples, gauge, **tier) == 3
    assert value(samples, gauge, queue=f"{names.queue}.retry.1h", role="retry") == 0
    assert value(samples, gauge, queue=names.queue, role="work") == 0
    assert value(samples, gauge, queue=f"{names.queue}.deliveries", role="deliveries") == 0
    assert value(samples, gauge, queue=names.dead_letter_queue, role="dead_letters") == 0
    assert len([key for key in samples if key[0] == gauge]) == 5


async def test_status_shows_queue_depths_and_consumers_from_the_broker(
    tmp_path: Path, names: BrokerNames, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    before = await asyncio.to_thread(run_status, config)
    assert before.returncode == 0, before.stderr
    assert re.search(rf"^{re.escape(names.queue)} +work ", before.stdout, re.MULTILINE)
    assert re.search(rf"^{re.escape(names.queue)}.deliveries +deliveries ", before.stdout, re.M)
    assert re.search(rf"^{re.escape(names.queue)}.retry.10s +retry tier 10s ", before.stdout, re.M)
    assert "absent" in before.stdout
    async with running(config) as app:
        for _ in range(2):
            await publish_raw(amqp, names.exchange, "x", b"{not json")
        await settled(app, 2)
        during = await asyncio.to_thread(run_status, config)
    assert during.returncode == 0, during.stderr
    rows = {line.split()[0]: line.split() for line in during.stdout.splitlines() if line}
    assert rows[names.queue][-2:] == ["0", "1"]  # nothing waiting, one consumer: us
    assert rows[names.dead_letter_queue][-2:] == ["2", "0"]
    assert f"! 2 message(s) in the dead-letter queue {names.dead_letter_queue}" in during.stdout


def test_status_says_when_the_broker_cannot_be_reached(tmp_path: Path, names: BrokerNames) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    config.write_text(
        config.read_text().replace("guest:guest@127.0.0.1:5672", "guest:s3cret@127.0.0.1:1")
    )
    done = run_status(config)
    assert done.returncode == 1
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1/" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
