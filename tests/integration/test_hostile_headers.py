"""Messages whose AMQP headers pamqp decodes but cannot encode again, published by a client
that can (py-amqp, as kombu and the sync Publisher use): the daemon dead-letters them with
their reason, headers and all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiormq
import amqp as py_amqp  # type: ignore[import-untyped]  # py-amqp has no types
import pytest

from tests.support import (
    BrokerNames,
    Sink,
    drain_queue,
    running,
    settled,
    wait_for_depth,
    write_config,
)

pytestmark = pytest.mark.integration


def publish_with_py_amqp(names: BrokerNames, body: bytes, headers: dict[str, Any]) -> None:
    """py-amqp writes bytes as a long string whatever they hold, and floats as doubles."""
    connection = py_amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        channel.confirm_select()
        message = py_amqp.basic_message.Message(body, application_headers=headers, delivery_mode=2)
        channel.basic_publish(message, exchange=names.exchange, routing_key="garbage")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": b"\xff\xfe"},
        {"x-trace": b"\xc3\x28", "x-ratio": 1e300},
    ],
    ids=["non-utf8-attribute", "non-utf8-and-huge-double"],
)
async def test_a_refused_message_with_headers_pamqp_cannot_encode_is_dead_lettered(
    tmp_path: Path,
    names: BrokerNames,
    sink: Sink,
    amqp: aiormq.abc.AbstractChannel,
    headers: dict[str, Any],
) -> None:
    target = {"type": "webhook", "url": sink.url("/all")}
    config = write_config(
        tmp_path / "c.yaml", names, [{"name": "all", "events": ["*"], "target": target}]
    )
    async with running(config) as app:
        await asyncio.to_thread(publish_with_py_amqp, names, b"{not json", headers)
        await wait_for_depth(amqp, names.dead_letter_queue, 1)
        await settled(app, 1)
        assert app.pipeline.stats.consumed == 1  # dead-lettered the first time, not redelivered
    [dead] = await drain_queue(amqp, names.dead_letter_queue)
    got = dead.header.properties.headers or {}
    assert got["x-dispatcher-reason"] == "invalid_event"
    assert "not valid" in str(got["x-dispatcher-last-error"])
    for name, value in headers.items():
        if isinstance(value, bytes):
            assert got[name] == bytearray(value)  # the same bytes, now a byte array
    assert sink.received == []
