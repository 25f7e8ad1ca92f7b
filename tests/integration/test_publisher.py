"""The publishing helpers against a real RabbitMQ: what arrives, unroutable events, secrets."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiormq
import orjson
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage

from dispatcher.errors import BrokerError, PublishError
from dispatcher.publisher import CONTENT_TYPE, AsyncPublisher, Publisher
from tests.support import BrokerNames, close_broker_connections

pytestmark = pytest.mark.integration

PASSWORD = "s3cr3t-Pa55word"
#: one event publisher call, the same for both implementations: (url, exchange, type, **kw) -> id
PublishFn = Callable[..., Awaitable[str]]
QUICK_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


async def publish_sync(url: str, exchange: str, type: str, **kwargs: Any) -> str:
    options = {k: kwargs.pop(k) for k in ("mandatory", "source") if k in kwargs}
    with Publisher(url, exchange, retry_policy=QUICK_RETRY, timeout_s=5, **options) as publisher:
        return await asyncio.to_thread(publisher.publish, type, **kwargs)


async def publish_async(url: str, exchange: str, type: str, **kwargs: Any) -> str:
    options = {k: kwargs.pop(k) for k in ("mandatory", "source") if k in kwargs}
    async with AsyncPublisher(url, exchange, timeout_s=5, **options) as publisher:
        return await publisher.publish(type, **kwargs)


PUBLISHERS = [pytest.param(publish_sync, id="kombu"), pytest.param(publish_async, id="aiormq")]


class Inbox:
    """A queue bound with "#" to the test's exchange, consumed into memory."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

    async def on_message(self, message: DeliveredMessage) -> None:
        await self.messages.put(message)

    async def next(self, timeout_s: float = 10.0) -> DeliveredMessage:
        async with asyncio.timeout(timeout_s):
            return await self.messages.get()

    async def next_id(self) -> str:
        return str((await self.next()).header.properties.message_id)


async def bind_inbox(amqp: AbstractChannel, names: BrokerNames) -> Inbox:
    inbox = Inbox()
    await amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    await amqp.queue_declare(names.queue, exclusive=True)  # goes with the test's connection
    await amqp.queue_bind(names.queue, names.exchange, routing_key="#")
    await amqp.basic_consume(names.queue, inbox.on_message, no_ack=True)
    return inbox


@pytest.fixture
async def inbox(names: BrokerNames, amqp: AbstractChannel) -> AsyncIterator[Inbox]:
    inbox = await bind_inbox(amqp, names)
    yield inbox
    await amqp.queue_delete(names.queue)


def assert_event(message: DeliveredMessage, event_id: str, type: str) -> dict[str, Any]:
    properties = message.header.properties
    assert message.routing_key == type
    assert properties.content_type == CONTENT_TYPE
    assert properties.delivery_mode == 2
    assert properties.message_id == event_id
    event: dict[str, Any] = orjson.loads(message.body)
    assert event["specversion"] == "1.0"
    assert event["id"] == event_id
    assert event["type"] == type
    return event


@pytest.mark.parametrize("publish", PUBLISHERS)
async def test_publishes_a_persistent_structured_cloudevent(
    publish: PublishFn, rabbitmq: str, names: BrokerNames, inbox: Inbox
) -> None:
    event_id = await publish(
        rabbitmq,
        names.exchange,
        "deployment.failed",
        data={"version": "1.2", "steps": [1, 2]},
        subject="shop-api",
        source="urn:test",
        project="shop",
        envtype="PRODUCTION",
        actor=None,
    )

    event = assert_event(await inbox.next(), event_id, "deployment.failed")
    assert event["source"] == "urn:test"
    assert event["subject"] == "shop-api"
    assert event["data"] == {"version": "1.2", "steps": [1, 2]}
    assert event["datacontenttype"] == "application/json"
    assert (event["project"], event["envtype"]) == ("shop", "PRODUCTION")
    assert "actor" not in event
    assert event["time"].endswith("Z")


@pytest.mark.parametrize("publish", PUBLISHERS)
async def test_a_given_id_and_time_are_kept(
    publish: PublishFn, rabbitmq: str, names: BrokerNames, inbox: Inbox
) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    event_id = await publish(rabbitmq, names.exchange, "project.created", id="evt-42", time=when)

    assert event_id == "evt-42"
    event = assert_event(await inbox.next(), "evt-42", "project.created")
    assert event["time"] == "2024-05-01T12:30:00Z"
    assert event["source"] == "urn:dispatcher:publisher"
    assert "data" not in event


@pytest.mark.parametrize("publish", PUBLISHERS)
async def test_an_event_no_queue_is_bound_for_raises(
    publish: PublishFn, rabbitmq: str, names: BrokerNames, inbox: Inbox
) -> None:
    await publish(rabbitmq, names.exchange, "bound.event")
    await inbox.next()
    unbound = f"{names.exchange}.unbound"
    try:
        with pytest.raises(PublishError, match="no queue is bound") as raised:
            await publish(rabbitmq, unbound, "nobody.listens", id="evt-lost")
        assert "evt-lost" in str(raised.value)
        assert "NO_ROUTE" in str(raised.value)
        # not mandatory: the broker drops it, as asked
        assert await publish(rabbitmq, unbound, "nobody.listens", mandatory=False) != ""
    finally:
        connection = await aiormq.connect(rabbitmq)
        channel = await connection.channel()
        await channel.exchange_delete(unbound)
        await connection.close()


@pytest.mark.parametrize("publish", PUBLISHERS)
async def test_a_nack_raises(
    publish: PublishFn, rabbitmq: str, names: BrokerNames, amqp: AbstractChannel
) -> None:
    await amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    # a queue that takes nothing: the broker nacks every message routed to it
    full: dict[str, Any] = {"x-max-length": 0, "x-overflow": "reject-publish"}
    await amqp.queue_declare(names.queue, exclusive=True, arguments=full)
    await amqp.queue_bind(names.queue, names.exchange, routing_key="#")
    with pytest.raises(PublishError, match="the broker nacked it"):
        await publish(rabbitmq, names.exchange, "queue.full", id="evt-nacked")
    await amqp.queue_delete(names.queue)


async def test_kombu_publisher_keeps_working_after_a_return(
    rabbitmq: str, names: BrokerNames, amqp: AbstractChannel
) -> None:
    """The return and the ack of an unroutable message are both read, so later confirms match."""
    with Publisher(rabbitmq, names.exchange, pool_limit=1, retry_policy=QUICK_RETRY) as publisher:
        for _ in range(3):
            with pytest.raises(PublishError, match="no queue is bound"):
                await asyncio.to_thread(publisher.publish, "nobody.listens")
        inbox = await bind_inbox(amqp, names)
        ids = [await asyncio.to_thread(publisher.publish, "now.bound") for _ in range(3)]
        assert [await inbox.next_id() for _ in ids] == ids
    await amqp.queue_delete(names.queue)


async def test_async_publisher_keeps_working_after_a_return(
    rabbitmq: str, names: BrokerNames, amqp: AbstractChannel
) -> None:
    async with AsyncPublisher(rabbitmq, names.exchange) as publisher:
        for _ in range(3):
            with pytest.raises(PublishError, match="no queue is bound"):
                await publisher.publish("nobody.listens")
        inbox = await bind_inbox(amqp, names)
        ids = await asyncio.gather(*(publisher.publish("now.bound") for _ in range(3)))
        assert {await inbox.next_id() for _ in ids} == set(ids)
    await amqp.queue_delete(names.queue)


async def test_kombu_publisher_is_shared_by_threads(
    rabbitmq: str, names: BrokerNames, inbox: Inbox
) -> None:
    with Publisher(rabbitmq, names.exchange, pool_limit=3) as publisher:

        def burst() -> list[str]:
            with ThreadPoolExecutor(max_workers=8) as pool:
                futures = [pool.submit(publisher.publish, "load.test", {"n": n}) for n in range(40)]
                return [future.result(timeout=30) for future in futures]

        ids = await asyncio.to_thread(burst)
    received = [await inbox.next_id() for _ in ids]
    assert sorted(received) == sorted(ids)


async def test_async_publisher_reconnects_after_the_broker_closed_it(
    rabbitmq: str, names: BrokerNames, inbox: Inbox
) -> None:
    url = f"{rabbitmq}?name={names.connection_name}"
    async with AsyncPublisher(url, names.exchange) as publisher:
        first = await publisher.publish("before.close")
        assert await asyncio.to_thread(close_broker_connections, names.connection_name) == 1
        second = await publisher.publish("after.close")
    assert [await inbox.next_id() for _ in range(2)] == [first, second]


async def test_async_publisher_reopens_a_channel_the_broker_closed_on_publish(
    rabbitmq: str, names: BrokerNames, amqp: AbstractChannel
) -> None:
    """Publishing to a deleted exchange closes the channel (404); one retry redeclares it."""
    async with AsyncPublisher(rabbitmq, names.exchange, mandatory=False) as publisher:
        await publisher.publish("before.delete")
        await amqp.exchange_delete(names.exchange)
        await publisher.publish("after.delete")
    await amqp.exchange_declare(names.exchange, passive=True)


async def test_closed_publishers_refuse_to_publish(rabbitmq: str, names: BrokerNames) -> None:
    publisher = Publisher(rabbitmq, names.exchange)
    publisher.close()
    with pytest.raises(PublishError, match="closed"):
        publisher.publish("too.late")
    async_publisher = AsyncPublisher(rabbitmq, names.exchange)
    await async_publisher.close()
    with pytest.raises(PublishError, match="closed"):
        await async_publisher.publish("too.late")


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


async def test_the_password_is_never_shown() -> None:
    sync_url = f"amqp://app:{PASSWORD}@127.0.0.1:1//"
    async_url = f"amqp://app:{PASSWORD}@127.0.0.1:1/"
    publisher = Publisher(sync_url, retry_policy=QUICK_RETRY, timeout_s=2)
    async_publisher = AsyncPublisher(async_url, timeout_s=2)
    assert "app:***@127.0.0.1:1" in repr(publisher)
    assert PASSWORD not in repr(publisher) + repr(async_publisher)

    with publisher, pytest.raises(PublishError) as sync_error:
        await asyncio.to_thread(publisher.publish, "any.event")
    with pytest.raises(BrokerError) as connect_error:
        await async_publisher.connect()
    with pytest.raises(PublishError) as async_error:
        await async_publisher.publish("any.event")

    for error in (sync_error.value, connect_error.value, async_error.value):
        assert "app:***@127.0.0.1:1" in str(error)
        assert PASSWORD not in _full_text(error)
        assert PASSWORD not in repr(error)
