"""Fixtures shared by the test suite: real RabbitMQ, real HTTP sinks on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import aiormq
import pytest

from tests.support import AMQP_URL, BrokerNames, Sink, start_sink, unique_names

REDIS_URL = os.environ.get("DISPATCHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL; skips locally when no Redis runs, fails under scripts/test and CI."""
    if REDIS_URL == "redis://127.0.0.1:6379/0" and not _redis_up():
        if os.environ.get("DISPATCHER_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail("Redis is not answering on 127.0.0.1:6379")
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    return REDIS_URL


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The broker URL; skips locally when no broker runs, fails under scripts/test and CI."""
    if not _rabbitmq_up():
        if os.environ.get("DISPATCHER_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail("RabbitMQ is not answering on 127.0.0.1:5672")
        pytest.skip("RabbitMQ is not answering on 127.0.0.1:5672")
    return AMQP_URL


@pytest.fixture
async def amqp(rabbitmq: str) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    connection = await aiormq.connect(rabbitmq)
    channel = await connection.channel()
    yield channel
    await connection.close()


@pytest.fixture
async def names(rabbitmq: str) -> AsyncIterator[BrokerNames]:
    """Unique exchange and queue names for one test, deleted afterwards."""
    names = unique_names()
    yield names
    connection = await aiormq.connect(rabbitmq)
    channel = await connection.channel()
    for queue in names.queues():
        await channel.queue_delete(queue)
    for exchange in (names.exchange, names.dead_letter_queue, f"{names.queue}.control"):
        await channel.exchange_delete(exchange)
    await connection.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink, stop = await start_sink()
    yield sink
    if sink.hold is not None:
        sink.hold.set()
    await stop()
