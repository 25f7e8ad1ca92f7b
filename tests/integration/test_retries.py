"""Durable retries through the real daemon and broker: deliveries that fail wait on the retry
tiers (broker queues), survive a kill -9 of the daemon and a change of the tier list, and go
only to their own subscription when they come back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiormq
import orjson
import yaml

from dispatcher.events import new_event
from tests.integration.observe import DaemonProcess
from tests.support import (
    BrokerNames,
    Sink,
    drain_queue,
    publish_events,
    queue_depth,
    running,
    wait_for_depth,
    wait_until,
    write_config,
)

FAST = {"attempts": 1, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}


def hook(sink: Sink, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": sink.url(path), **extra}


def two_subscriptions(sink: Sink) -> list[dict[str, Any]]:
    return [
        {"name": "healthy", "events": ["*"], "target": hook(sink, "/healthy")},
        {"name": "flaky", "events": ["*"], "target": hook(sink, "/flaky")},
    ]


def ids_at(sink: Sink, path: str, since: int = 0) -> list[str]:
    return [r.json["id"] for r in sink.at(path)[since:]]


def unacked(queue: str) -> int:
    """Messages of `queue` delivered to a consumer and not acked yet (only the broker knows)."""
    listing = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for line in listing.stdout.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0


async def wait_all_acked(queue: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while await asyncio.to_thread(unacked, queue):
        assert time.monotonic() < deadline, f"{queue} still has unacked messages"
        await asyncio.sleep(0.2)


async def test_a_receiver_down_then_back_gets_everything_across_a_kill_9(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/flaky"] = 503
    config = write_config(
        tmp_path / "c.yaml",
        names,
        two_subscriptions(sink),
        delivery={
            **FAST,
            "retry_delays": ["2s", "2s", "2s", "2s", "2s", "2s"],
            "circuit_breaker": {"open_for": "1s"},  # a probe soon after the receiver is back
        },
    )
    events = [new_event("deployment.failed", "test", environment=f"e{n}") for n in range(20)]
    first = DaemonProcess.run(config)
    await first.start()
    try:
        await first.logged("consuming")
        await publish_events(amqp, names, events)
        await wait_until(lambda: len(sink.at("/healthy")) == 20, what="the healthy receiver")
        await first.logged("circuit opened: deliveries to the target wait on the retry tiers")
        await wait_for_depth(amqp, names.queue, 0)
        await wait_all_acked(names.queue)  # every event handed over: nothing comes back twice
    finally:
        await first.kill()  # SIGKILL: no drain, no goodbye
    # The schedule lives in the broker, not in the dead process.
    waiting = await queue_depth(amqp, f"{names.queue}.retry.2s")
    waiting += await queue_depth(amqp, f"{names.queue}.deliveries")
    assert waiting >= 20
    sink.status["/flaky"] = 204
    before = len(sink.at("/flaky"))
    second = DaemonProcess.run(config)
    await second.start()
    try:
        await wait_until(
            lambda: set(ids_at(sink, "/flaky", before)) == {e["id"] for e in events},
            timeout_s=30,
            what="every delivery to the receiver that came back",
        )
    finally:
        assert await second.stop() == 0
    healthy = Counter(ids_at(sink, "/healthy"))
    assert set(healthy) == {e["id"] for e in events}
    assert set(healthy.values()) == {1}  # a retry re-sends to its own subscription only
    assert await queue_depth(amqp, names.dead_letter_queue) == 0
    webhook_ids = {
        r.headers["webhook-id"] for r in sink.at("/flaky") if r.json["id"] == events[0]["id"]
    }
    assert len(webhook_ids) == 1  # the same delivery id on every try, across processes


async def test_changing_the_tier_list_strands_nothing(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/flaky"] = 503
    subscriptions = [{"name": "flaky", "events": ["*"], "target": hook(sink, "/flaky")}]
    old = write_config(
        tmp_path / "old.yaml", names, subscriptions, delivery={**FAST, "retry_delays": ["3s"]}
    )
    events = [new_event("value.updated", "test") for _ in range(5)]
    async with running(old):
        await publish_events(amqp, names, events)
        await wait_for_depth(amqp, f"{names.queue}.retry.3s", 5)
    sink.status["/flaky"] = 204
    new = write_config(
        tmp_path / "new.yaml", names, subscriptions, delivery={**FAST, "retry_delays": ["1s"]}
    )
    async with running(new) as app:
        # The 3s tier is no longer in the list; its messages still expire into the deliveries
        # queue, and the new schedule carries them on.
        await wait_until(lambda: app.pipeline.stats.delivered == 5, timeout_s=20, what="5 sent")
    assert {r.json["id"] for r in sink.at("/flaky")[5:]} == {e["id"] for e in events}
    assert await queue_depth(amqp, f"{names.queue}.retry.3s") == 0
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


async def test_a_timeout_goes_to_the_first_tier_without_another_try_in_process(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.hold = asyncio.Event()  # the receiver hangs
    subscriptions = [
        {"name": "hangs", "events": ["*"], "target": hook(sink, "/hang", timeout_s=0.3)}
    ]
    delivery = {"attempts": 3, "backoff_initial_s": 0.01, "retry_delays": ["5s"]}
    config = write_config(tmp_path / "c.yaml", names, subscriptions, delivery=delivery)
    async with running(config):
        await publish_events(amqp, names, [new_event("deployment.started", "test")])
        await wait_for_depth(amqp, f"{names.queue}.retry.5s", 1)
    assert len(sink.received) == 1
    (waiting,) = await drain_queue(amqp, f"{names.queue}.retry.5s")
    headers = waiting.header.properties.headers or {}
    assert headers["x-dispatcher-attempts"] == 1
    assert headers["x-dispatcher-retries"] == 1
    assert headers["x-dispatcher-tier"] == "5s"
    assert headers["x-dispatcher-subscription"] == "hangs"
    assert "timed out after 0.3s" in str(headers["x-dispatcher-last-error"])


async def test_expired_and_removed_subscriptions_are_dead_lettered_with_their_reason(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/flaky"] = 503
    sink.status["/old"] = 503
    subscriptions = [
        {
            "name": "flaky",
            "events": ["*"],
            "target": hook(sink, "/flaky"),
            "retry": {"delays": ["1s"], "max_age": "500ms"},  # the next try would be too late
        },
        {"name": "old", "events": ["*"], "target": hook(sink, "/old")},
    ]
    config = write_config(
        tmp_path / "c.yaml", names, subscriptions, delivery={**FAST, "retry_delays": ["1s"]}
    )
    async with running(config) as app:
        await publish_events(amqp, names, [new_event("file.deleted", "test")])
        await wait_for_depth(amqp, names.dead_letter_queue, 1)  # flaky: expired
        # `old` waits on its tier; remove it from the config before it comes back.
        data = yaml.safe_load(config.read_text())
        data["subscriptions"] = data["subscriptions"][:1]
        config.write_text(yaml.safe_dump(data))
        app.reload()
        await wait_for_depth(amqp, names.dead_letter_queue, 2)
    dead = await drain_queue(amqp, names.dead_letter_queue)
    reasons = {
        (m.header.properties.headers or {})["x-dispatcher-subscription"]: (
            m.header.properties.headers or {}
        )["x-dispatcher-reason"]
        for m in dead
    }
    assert reasons == {"flaky": "expired", "old": "subscription_gone"}
    assert all(orjson.loads(m.body)["type"] == "file.deleted" for m in dead)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


async def test_a_gone_receiver_is_dead_lettered_listed_and_replayed_once_it_is_back(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/moved"] = 410
    subscriptions = [
        {"name": "moved", "events": ["*"], "target": hook(sink, "/moved")},
        {"name": "healthy", "events": ["*"], "target": hook(sink, "/healthy")},
    ]
    config = write_config(tmp_path / "c.yaml", names, subscriptions, delivery=FAST)
    events = [new_event("parameter.updated", "test", subject=f"p{n}") for n in range(3)]
    async with running(config) as app:
        await publish_events(amqp, names, events)
        await wait_for_depth(amqp, names.dead_letter_queue, 3)
        listed = await asyncio.to_thread(cli, config, "dead-letters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert {row["subscription"] for row in rows} == {"moved"}
        assert {row["reason"] for row in rows} == {"permanent_failure"}
        assert all("HTTP 410" in row["last_error"] for row in rows)
        assert await queue_depth(amqp, names.dead_letter_queue) == 3  # listing took nothing
        sink.status["/moved"] = 200  # the receiver is back
        replay = await asyncio.to_thread(
            cli, config, "dead-letters", "replay", "--subscription", "moved", "--yes"
        )
        assert replay.returncode == 0, replay.stderr
        await wait_until(lambda: app.pipeline.stats.delivered == 6, what="replayed")
        await wait_until(lambda: len(sink.at("/moved")) == 6, what="3 replayed deliveries")
    assert await queue_depth(amqp, names.dead_letter_queue) == 0
    assert sorted(ids_at(sink, "/moved", 3)) == sorted(e["id"] for e in events)
    assert Counter(ids_at(sink, "/healthy")) == Counter(e["id"] for e in events)  # once each
