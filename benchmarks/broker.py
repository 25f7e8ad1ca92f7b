"""The benchmark's side of RabbitMQ: unique names per phase, the daemon's own topology declared
ahead of it (so events can wait in its queue before it starts), fast confirmed publishing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiormq
import orjson
from aiormq.abc import AbstractChannel, AbstractConnection

from dispatcher.amqp.topology import declare, topology
from dispatcher.delivery.schedule import DEFAULT_MAX_AGE, DEFAULT_RETRY_DELAYS, Schedule
from dispatcher.events import new_event
from dispatcher.settings import BrokerSettings

AMQP_URL = os.environ.get("DISPATCHER_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EVENT_TYPE = "deployment.failed"


def settings_tiers() -> tuple[float, ...]:
    """The retry tiers of the daemon's default config (the benchmarks configure none)."""
    return Schedule.of(DEFAULT_RETRY_DELAYS, DEFAULT_MAX_AGE).delays_s


def settings_tier_names() -> tuple[str, ...]:
    return Schedule.of(DEFAULT_RETRY_DELAYS, DEFAULT_MAX_AGE).names


_WINDOW = 500  # publishes awaiting their confirm at once


@dataclass(frozen=True, slots=True)
class Names:
    """Broker names of one phase: nothing shared with another phase or a real deployment."""

    exchange: str
    queue: str
    dead_letter_queue: str
    connection_name: str

    @classmethod
    def fresh(cls, phase: str) -> Names:
        tag = f"{phase}.{uuid.uuid4().hex[:8]}"
        return cls(f"bench.events.{tag}", f"bench.q.{tag}", f"bench.dead.{tag}", f"bench-{tag}")

    def broker_config(self) -> dict[str, Any]:
        """The `broker:` section of the daemon's config: these names, every other default."""
        return {
            "url": AMQP_URL,
            "exchange": self.exchange,
            "queue": self.queue,
            "dead_letter_queue": self.dead_letter_queue,
            "connection_name": self.connection_name,
        }

    def settings(self) -> BrokerSettings:
        return BrokerSettings.model_validate(self.broker_config())


def event_body(n: int, *, sent: bool = False) -> bytes:
    """A small, realistic structured-mode event; with `sent`, its data carries the publish time."""
    data: dict[str, Any] = {"git_ref": "0123abc", "pusher": "johndoe", "duration": 40, "n": n}
    if sent:
        data["sent_ns"] = time.time_ns()
    event = new_event(
        EVENT_TYPE,
        "urn:acme:deployer",
        data=data,
        subject="v1.4.2",
        organization="acme",
        project="web",
        environment="prod-eu",
        envtype="PRODUCTION",
    )
    return orjson.dumps(event)


class Broker:
    """One connection with a confirming channel, for the benchmark's own traffic."""

    def __init__(self) -> None:
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> Broker:
        await self.reconnect()
        return self

    async def reconnect(self) -> None:
        """Connect, or connect again when the connection was lost (a broker restart)."""
        if self._channel is not None and not self._channel.is_closed:
            return
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = await aiormq.connect(AMQP_URL)
        self._channel = await self._connection.channel(publisher_confirms=True)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "use Broker as an async context manager"
        return self._channel

    @property
    def version(self) -> str:
        assert self._connection is not None
        props: Any = getattr(self._connection, "server_properties", None) or {}
        value = props.get("version", "?")
        return value.decode() if isinstance(value, bytes) else str(value)

    async def declare(self, names: Names) -> None:
        await declare(self.channel, topology(names.settings()))

    async def publish(self, exchange: str, bodies: Iterable[bytes]) -> int:
        """Publish each body (persistent, confirmed), `_WINDOW` in flight at once."""
        pending: set[asyncio.Future[Any]] = set()
        count = 0
        for body in bodies:
            pending.add(asyncio.ensure_future(self.publish_one(exchange, body)))
            count += 1
            if len(pending) >= _WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    future.result()
        if pending:
            for future in (await asyncio.wait(pending))[0]:
                future.result()
        return count

    async def publish_one(self, exchange: str, body: bytes) -> None:
        confirmation = await self.channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=EVENT_TYPE,
            properties=aiormq.spec.Basic.Properties(
                content_type="application/cloudevents+json", delivery_mode=2
            ),
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise RuntimeError(f"the broker did not confirm a publish: {confirmation!r}")

    async def depth(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of a queue."""
        ok = await self.channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0), int(ok.consumer_count or 0)

    async def delete(self, names: Names) -> None:
        settings = names.settings()
        for queue in topology(settings, settings_tiers()).queues:
            await self.channel.queue_delete(queue.name)
        for exchange in (names.exchange, names.dead_letter_queue):
            await self.channel.exchange_delete(exchange)
