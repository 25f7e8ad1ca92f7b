"""The daemon end to end, in process: real RabbitMQ in, real HTTP receivers out."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiormq
import orjson
import pytest
from standardwebhooks import Webhook

from dispatcher.events import encode, new_event
from tests.support import (
    BrokerNames,
    Sink,
    close_broker_connections,
    drain_queue,
    header,
    publish_events,
    publish_raw,
    queue_depth,
    running,
    settled,
    start_sink,
    wait_for_depth,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def webhook(sink: Sink, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": sink.url(path), **extra}


def catch_all(tmp_path: Path, names: BrokerNames, sink: Sink) -> Path:
    """A config with one subscription taking every event to the sink's /all."""
    subscriptions = [{"name": "all", "events": ["*"], "target": webhook(sink, "/all")}]
    return write_config(tmp_path / "c.yaml", names, subscriptions)


async def test_events_reach_exactly_the_matching_webhooks_signed(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    subscriptions: list[dict[str, Any]] = [
        {
            "name": "ops-deploys",
            "events": ["DEPLOYMENT_FAILURE", "deployment.succeeded"],
            "filter": {"projects": ["product*", "analytics"], "environment_types": ["PRODUCTION"]},
            "target": webhook(sink, "/ops", secret=SECRET, headers={"X-Team": "ops"}),
        },
        {
            "name": "params",
            "events": ["parameter_created"],
            "target": webhook(sink, "/params"),
        },
        {
            "name": "off",
            "enabled": False,
            "events": ["*"],
            "target": webhook(sink, "/off"),
        },
    ]
    config = write_config(tmp_path / "c.yaml", names, subscriptions)
    ev = [
        new_event("deployment.failed", "test", project="Product-API", envtype="PRODUCTION"),
        new_event("deployment.failed", "test", project="analytics", envtype="STAGING"),
        new_event("deployment.succeeded", "test", project="ANALYTICS", envtype="production"),
        new_event("deployment.started", "test", project="product", envtype="PRODUCTION"),
        new_event("parameter.created", "test", subject="DB_URL", data={"v": 1}),
        new_event("parameter.updated", "test", subject="DB_URL"),
    ]
    async with running(config) as app:
        await publish_events(amqp, names, ev)
        await settled(app, len(ev))
    assert sorted(r.json["id"] for r in sink.at("/ops")) == sorted([ev[0]["id"], ev[2]["id"]])
    assert [r.json["id"] for r in sink.at("/params")] == [ev[4]["id"]]
    assert sink.at("/off") == []
    assert len(sink.received) == 3
    verifier = Webhook(SECRET)
    for request in sink.at("/ops"):
        assert request.headers["Content-Type"] == "application/cloudevents+json"
        assert request.headers["X-Team"] == "ops"
        verifier.verify(request.body, request.headers)  # raises on a bad signature
    params = sink.at("/params")[0]
    assert "webhook-signature" not in {k.lower() for k in params.headers}
    assert params.json["data"] == {"v": 1}
    assert app.pipeline.stats.unmatched == 3
    assert await queue_depth(amqp, names.queue) == 0
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


INVALID: list[tuple[bytes, dict[str, Any] | None, str]] = [
    (b"{not json", None, "not valid JSON"),
    (b"\xff\xfe garbage", None, "not valid UTF-8"),
    (
        b'{"specversion": "1.0", "id": "x", "source": "s"}',
        None,
        "missing required attribute 'type'",
    ),
    (b'{"specversion": "1.0", "id": 5, "source": "s", "type": "a.b"}', None, "'id'"),
    (b"[1, 2]", None, "JSON array"),
    (b"x" * (300 * 1024), None, "exceeds the limit"),
    (b"{}", {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s"}, "'type'"),
]


async def test_invalid_messages_are_dead_lettered_with_reasons_and_valid_ones_flow(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = catch_all(tmp_path, names, sink)
    valid = [new_event("file.uploaded", "test", repository="maven-releases") for _ in range(5)]
    async with running(config) as app:
        for i, (body, headers, _) in enumerate(INVALID):
            binary = {"content_type": "application/json"} if headers else {}
            await publish_raw(amqp, names.exchange, "garbage", body, headers=headers, **binary)
            await publish_raw(amqp, names.exchange, "file.uploaded", encode(valid[i % 5]))
        await settled(app, 2 * len(INVALID))
    assert {r.json["id"] for r in sink.received} == {e["id"] for e in valid}
    dead = await drain_queue(amqp, names.dead_letter_queue)
    assert len(dead) == len(INVALID)
    reason_by_body = {m.body: header(m, "x-dispatcher-last-error") for m in dead}
    for body, _, expected in INVALID:
        assert expected in reason_by_body[body]  # the original bytes are kept, for replay
    assert {header(m, "x-dispatcher-kind") for m in dead} == {"invalid-event"}
    assert {header(m, "x-dispatcher-reason") for m in dead} == {"invalid_event"}
    assert await queue_depth(amqp, names.queue) == 0


async def test_failing_target_is_retried_then_dead_lettered_others_delivered(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/broken"] = 500
    sink.status["/gone"] = 410
    subscriptions = [
        {"name": "ok", "events": ["*"], "target": webhook(sink, "/ok")},
        {"name": "broken", "events": ["*"], "target": webhook(sink, "/broken")},
        {"name": "gone", "events": ["*"], "target": webhook(sink, "/gone")},
    ]
    delivery = {"attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    config = write_config(
        tmp_path / "c.yaml",
        names,
        subscriptions,
        delivery={**delivery, "retry_delays": ["200ms", "300ms"]},
    )
    event = new_event("environment.deleted", "test", environment="prod-eu")
    async with running(config) as app:
        await publish_events(amqp, names, [event])
        await wait_for_depth(amqp, names.dead_letter_queue, 2)
        assert app.pipeline.stats.retried == 2  # one wait on each tier
    assert len(sink.at("/ok")) == 1
    assert len(sink.at("/broken")) == 3 + 1 + 1  # in process, then one try after each tier
    assert len(sink.at("/gone")) == 1  # permanent: not retried
    ids = {r.headers["webhook-id"] for r in sink.at("/broken")}
    assert len(ids) == 1  # stable across retries
    dead = {
        header(m, "x-dispatcher-subscription"): m
        for m in await drain_queue(amqp, names.dead_letter_queue)
    }
    assert set(dead) == {"broken", "gone"}
    broken, gone = dead["broken"], dead["gone"]
    assert header(broken, "x-dispatcher-reason") == "retries_exhausted"
    assert "HTTP 500" in header(broken, "x-dispatcher-last-error")
    assert header(broken, "x-dispatcher-attempts") == "5"
    assert header(gone, "x-dispatcher-reason") == "permanent_failure"
    assert "HTTP 410" in header(gone, "x-dispatcher-last-error")
    assert header(gone, "x-dispatcher-attempts") == "1"
    assert header(broken, "x-dispatcher-delivery-id") == ids.pop()
    assert header(broken, "x-dispatcher-first-attempt-at") < header(
        broken, "x-dispatcher-last-attempt-at"
    )
    assert orjson.loads(broken.body)["id"] == event["id"]
    assert header(broken, "x-dispatcher-target-type") == "webhook"


async def test_broker_side_close_mid_stream_loses_nothing(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = catch_all(tmp_path, names, sink)
    events = [new_event("value.updated", "test", project="p") for _ in range(400)]
    async with running(config) as app:
        await publish_events(amqp, names, events[:200])
        await sink.wait_for(20)
        assert await asyncio.to_thread(close_broker_connections, names.connection_name) == 1
        await publish_events(amqp, names, events[200:])
        await wait_until(lambda: app.consumer.reconnects >= 1, what="a reconnect")
        await wait_until(
            lambda: {r.json["id"] for r in sink.received} >= {e["id"] for e in events},
            timeout_s=30,
            what="every event delivered",
        )
        await wait_until(lambda: not app.consumer._inflight, what="nothing in flight")
    assert await queue_depth(amqp, names.queue) == 0
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


async def test_consumer_cancelled_by_broker_is_restored(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = catch_all(tmp_path, names, sink)
    async with running(config) as app:
        await amqp.queue_delete(names.queue)  # the broker cancels our consumer
        await wait_until(lambda: app.consumer.reconnects >= 1, what="the consumer to notice")
        await wait_until(lambda: app.consumer.ready, what="consuming again")
        event = new_event("project.created", "test")
        await publish_events(amqp, names, [event])
        await sink.wait_for(1)
    assert sink.received[0].json["id"] == event["id"]


async def test_deleted_dead_letter_queue_is_declared_again_and_nothing_is_lost(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = catch_all(tmp_path, names, sink)
    async with running(config) as app:
        await amqp.queue_delete(names.dead_letter_queue)
        await publish_raw(amqp, names.exchange, "garbage", b"not an event")
        await wait_until(lambda: app.consumer.reconnects >= 1, what="a reconnect")
        await wait_until(lambda: app.pipeline.stats.invalid >= 2, what="the redelivery")
        await wait_until(lambda: not app.consumer._inflight, what="nothing in flight")
    [dead] = await drain_queue(amqp, names.dead_letter_queue)
    assert dead.body == b"not an event"
    assert await queue_depth(amqp, names.queue) == 0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=120, check=True)


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, names: BrokerNames, sink: Sink, rabbitmq: str
) -> None:
    config = catch_all(tmp_path, names, sink)
    events = [new_event("parameter.updated", "test", project="p") for _ in range(400)]
    async with running(config) as app:
        connection = await aiormq.connect(rabbitmq)
        await publish_events(await connection.channel(), names, events[:200])
        await sink.wait_for(20)
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        await wait_until(lambda: app.consumer.ready, timeout_s=60, what="consuming again")
        connection = await aiormq.connect(rabbitmq)
        channel = await connection.channel()
        await publish_events(channel, names, events[200:])
        await wait_until(
            lambda: {r.json["id"] for r in sink.received} >= {e["id"] for e in events},
            timeout_s=60,
            what="every event delivered",
        )
        await wait_until(lambda: not app.consumer._inflight, what="nothing in flight")
    assert app.consumer.reconnects >= 1
    assert await queue_depth(channel, names.queue) == 0
    assert await queue_depth(channel, names.dead_letter_queue) == 0
    await connection.close()


async def test_a_slow_delivery_does_not_stop_the_others(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    """One event stuck on a slow target must not hold back the acks of the events after it:
    with a prefetch of 8, forty more events still flow past it."""
    slow, stop_slow = await start_sink()
    slow.hold = asyncio.Event()
    try:
        subscriptions = [
            {"name": "slow", "events": ["deployment.*"], "target": webhook(slow, "/slow")},
            {"name": "fast", "events": ["parameter.*"], "target": webhook(sink, "/fast")},
        ]
        config = write_config(
            tmp_path / "c.yaml", names, subscriptions, broker=names.broker_config(prefetch=8)
        )
        events = [new_event("deployment.failed", "/ci")]
        events += [new_event("parameter.created", "/config", subject=f"P{i}") for i in range(40)]
        async with running(config) as app:
            await publish_events(amqp, names, events)
            await slow.wait_for(1)
            await sink.wait_for(40)  # before: stuck after 7, unacked behind the slow one
            await wait_until(lambda: app.pipeline.stats.delivered == 40, what="40 delivered")
            assert app.pipeline.stats.dead_lettered == 0
            slow.hold.set()
            await settled(app, len(events))
        assert await queue_depth(amqp, names.queue) == 0
    finally:
        slow.hold.set()
        await stop_slow()
