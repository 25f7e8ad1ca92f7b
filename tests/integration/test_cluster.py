"""The three-node cluster fixture: a quorum queue outlives its leader; the node rejoins."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from dispatcher.events import encode, new_event
from tests.integration.cluster import (  # the fixture is used by name: rabbit_cluster
    RabbitCluster,
    amqp_answers,
    rabbit_cluster_fixture,  # noqa: F401
)
from tests.support import Sink, running, unique_names, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

QUEUE = "dsp-cluster-quorum"
MESSAGES = 100
MACHINE_BROKER_PORT = 5672


@pytest.fixture(scope="module", autouse=True)
def machine_broker_survives() -> Iterator[None]:
    """Set up before rabbit_cluster, so this check runs after the cluster's teardown."""
    was_up = amqp_answers(MACHINE_BROKER_PORT)
    yield
    if was_up:
        assert amqp_answers(MACHINE_BROKER_PORT), "rabbit@localhost stopped answering on 5672"


async def publish_confirmed(url: str, count: int) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()  # publisher confirms are on by default
        await channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        async with asyncio.timeout(30):
            confirms = await asyncio.gather(
                *(
                    channel.basic_publish(
                        str(n).encode(),
                        routing_key=QUEUE,
                        properties=Basic.Properties(delivery_mode=2),
                    )
                    for n in range(count)
                )
            )
        assert all(isinstance(confirm, Basic.Ack) for confirm in confirms)
    finally:
        await connection.close()


async def consume_all(url: str, count: int, timeout_s: float = 60.0) -> set[bytes]:
    """Consume until `count` distinct bodies arrived; reconnect while the queue elects a leader."""
    received: set[bytes] = set()
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                connection = await aiormq.connect(url)
            except (aiormq.exceptions.AMQPError, OSError):
                await asyncio.sleep(1)
                continue
            try:
                channel = await connection.channel()
                await channel.basic_qos(prefetch_count=count)
                done = asyncio.Event()

                async def on_message(
                    message: DeliveredMessage,
                    channel: AbstractChannel = channel,
                    done: asyncio.Event = done,
                ) -> None:
                    received.add(message.body)
                    await channel.basic_ack(message.delivery_tag or 0)
                    if len(received) >= count:
                        done.set()

                await channel.basic_consume(QUEUE, on_message)
                await done.wait()
                return received
            except aiormq.exceptions.AMQPError:
                await asyncio.sleep(1)  # e.g. the queue has no leader yet: retry on a new channel
            finally:
                await connection.close()


async def test_quorum_queue_survives_losing_its_leader(rabbit_cluster: RabbitCluster) -> None:
    cluster = rabbit_cluster
    print(f"cluster startup took {cluster.startup_s:.1f}s")  # shown with -s / on failure
    await publish_confirmed(cluster.urls[0], MESSAGES)
    leader = await asyncio.to_thread(cluster.leader_of, QUEUE)
    assert leader in cluster.node_names
    stopped = cluster.node_names.index(leader)

    started = time.monotonic()
    await asyncio.to_thread(cluster.stop_node, stopped)
    print(f"stopping {leader} took {time.monotonic() - started:.1f}s")
    assert not amqp_answers(cluster.nodes[stopped].amqp_port)

    other = (stopped + 1) % len(cluster.nodes)
    received = await consume_all(cluster.urls[other], MESSAGES)
    assert received == {str(n).encode() for n in range(MESSAGES)}
    new_leader = await asyncio.to_thread(cluster.leader_of, QUEUE)
    assert new_leader in cluster.node_names
    assert new_leader != leader


async def test_stopped_node_rejoins(rabbit_cluster: RabbitCluster) -> None:
    cluster = rabbit_cluster
    started = time.monotonic()
    for i, node in enumerate(cluster.nodes):
        if not node.alive():
            await asyncio.to_thread(cluster.start_node, i)
    running = await asyncio.to_thread(cluster.wait_running, 3, 120)
    print(f"restart and rejoin took {time.monotonic() - started:.1f}s")
    assert running == sorted(cluster.node_names)
    for url in cluster.urls:
        connection = await aiormq.connect(url)
        await connection.close()
    assert amqp_answers(MACHINE_BROKER_PORT)


async def publish_events_to(url: str, exchange: str, events: list[dict[str, Any]]) -> None:
    """Publish with confirms through one node, trying each event again (bounded) while the
    cluster elects a new leader for the queue behind the exchange."""
    async with asyncio.timeout(60):
        pending = list(events)
        while pending:
            try:
                connection = await aiormq.connect(url)
            except (aiormq.exceptions.AMQPError, OSError):
                await asyncio.sleep(0.5)
                continue
            try:
                channel = await connection.channel()
                while pending:
                    confirm = await channel.basic_publish(
                        encode(pending[0]),
                        exchange=exchange,
                        routing_key=pending[0]["type"],
                        properties=Basic.Properties(
                            delivery_mode=2, content_type="application/cloudevents+json"
                        ),
                    )
                    if isinstance(confirm, Basic.Ack):
                        pending.pop(0)
            except aiormq.exceptions.AMQPError:
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
                    await connection.close()


async def test_the_daemon_moves_to_a_surviving_node_and_loses_nothing(
    rabbit_cluster: RabbitCluster, tmp_path: Path, sink: Sink
) -> None:
    cluster = rabbit_cluster
    names = unique_names()
    broker = {**names.broker_config(), "url": list(cluster.urls)}
    subscriptions = [
        {"name": "all", "events": ["*"], "target": {"type": "webhook", "url": sink.url("/c")}}
    ]
    config = write_config(tmp_path / "c.yaml", names, subscriptions, broker=broker)
    before = [new_event("deployment.started", "test", app=f"b{n}") for n in range(50)]
    after = [new_event("deployment.started", "test", app=f"a{n}") for n in range(50)]
    first_port = str(cluster.nodes[0].amqp_port)
    async with running(config) as app:
        assert first_port in app.consumer.node  # the first node of the list
        await publish_events_to(cluster.urls[1], names.exchange, before)
        await sink.wait_for(50, timeout_s=30)
        await asyncio.to_thread(cluster.stop_node, 0)  # the node the daemon is connected to
        await publish_events_to(cluster.urls[1], names.exchange, after)
        await wait_until(
            lambda: {r.json["id"] for r in sink.received} >= {e["id"] for e in before + after},
            timeout_s=90,
            what="every event delivered after the node stopped",
        )
        assert app.consumer.ready
        assert first_port not in app.consumer.node  # consuming from a survivor
    await asyncio.to_thread(cluster.start_node, 0)
    await asyncio.to_thread(cluster.wait_running, 3, 120)
