"""Test helpers: real HTTP sinks on loopback, unique broker names, bounded waits."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiormq
import yaml
from aiohttp import web

from dispatcher.app import App
from dispatcher.config import load_settings
from dispatcher.delivery.schedule import DEFAULT_RETRY_DELAYS
from dispatcher.durations import duration_name, parse_duration
from dispatcher.events import Event, decode, encode
from dispatcher.netguard import NetworkGuard
from dispatcher.subscriptions.store import SubscriptionStore

#: the retry delays tests configure (their tier queues are deleted after each test)
TEST_TIERS = ("100ms", "200ms", "300ms", "500ms", "1s", "2s", "3s", "5s")

AMQP_URL = os.environ.get("DISPATCHER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: what tests' targets live on: allowed explicitly, as the network guard refuses it by default
LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]
LOOPBACK = NetworkGuard.of(LOOPBACK_NETWORKS)


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"
) -> None:
    """Poll a cheap in-memory predicate until true; fail after a bounded time."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sink:
    """An HTTP server on 127.0.0.1 that records every request; `status` per path is settable."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    hold: asyncio.Event | None = None  # when set, requests wait for it before answering
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.arrived:
            self.received.append(Received(request.path, dict(request.headers), body))
            self.arrived.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status.get(request.path, 204))

    async def wait_for(self, count: int, timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)


@dataclass
class BrokerNames:
    exchange: str
    queue: str
    dead_letter_queue: str
    connection_name: str

    def queues(self) -> list[str]:
        """Every queue a test may have made dispatcher declare: work, deliveries, dead letters
        and the retry tiers the tests use."""
        tiers = [*DEFAULT_RETRY_DELAYS, *TEST_TIERS]
        return [
            self.queue,
            f"{self.queue}.deliveries",
            self.dead_letter_queue,
            *(f"{self.queue}.retry.{duration_name(parse_duration(t))}" for t in tiers),
        ]

    def broker_config(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": AMQP_URL,
            "exchange": self.exchange,
            "queue": self.queue,
            "dead_letter_queue": self.dead_letter_queue,
            "connection_name": self.connection_name,
            "reconnect_initial_delay_s": 0.1,
            "reconnect_max_delay_s": 1.0,
            **extra,
        }


def unique_names() -> BrokerNames:
    tag = uuid.uuid4().hex[:10]
    return BrokerNames(
        exchange=f"test.events.{tag}",
        queue=f"test.dispatcher.{tag}",
        dead_letter_queue=f"test.dead.{tag}",
        connection_name=f"dispatcher-test-{tag}",
    )


def write_config(
    path: Path, names: BrokerNames, subscriptions: list[dict[str, Any]], **top: Any
) -> Path:
    config = {
        "broker": names.broker_config(),
        "delivery": {"attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05},
        "logging": {"level": "info", "format": "json"},
        "admin": {"listen": "127.0.0.1:0"},  # any free port: daemons in parallel never clash
        "subscriptions": subscriptions,
        **top,
    }
    # the sinks and stand-ins are on loopback; a test's own `delivery` keeps this unless it says
    config["delivery"] = {"allowed_networks": LOOPBACK_NETWORKS, **config["delivery"]}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def publish_raw(
    channel: aiormq.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    headers: dict[str, Any] | None = None,
    content_type: str | None = "application/cloudevents+json",
) -> None:
    confirmation = await channel.basic_publish(
        body,
        exchange=exchange,
        routing_key=routing_key,
        properties=aiormq.spec.Basic.Properties(
            content_type=content_type, delivery_mode=2, headers=headers
        ),
    )
    assert isinstance(confirmation, aiormq.spec.Basic.Ack)


async def drain_queue(
    channel: aiormq.abc.AbstractChannel, queue: str
) -> list[aiormq.abc.DeliveredMessage]:
    """Every message now in `queue`, acked (basic_get until empty; bounded by what is there)."""
    messages = []
    for _ in range(100_000):
        message = await channel.basic_get(queue, no_ack=True)
        if message.delivery_tag is None or isinstance(message.delivery, aiormq.spec.Basic.GetEmpty):
            break
        messages.append(message)
    return messages


def header(message: aiormq.abc.DeliveredMessage, name: str) -> str:
    """A header of a message read back from the broker (a dead letter's reason, say), as text."""
    value = (message.header.properties.headers or {})[name]
    return value.decode() if isinstance(value, bytes) else str(value)


async def queue_depth(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)


async def wait_for_depth(
    channel: aiormq.abc.AbstractChannel, queue: str, count: int, timeout_s: float = 15.0
) -> None:
    """Wait until `queue` holds exactly `count` ready messages (polled: the broker pushes no
    notice of a depth); fail after a bounded time, saying what it held."""
    deadline = time.monotonic() + timeout_s
    while (depth := await queue_depth(channel, queue)) != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} holds {depth} messages, not {count}, after {timeout_s}s")
        await asyncio.sleep(0.05)


def close_broker_connections(connection_name: str) -> int:
    """Close, from the broker side, every connection with this client-provided name.

    Reads the tab-separated listing: its pids (`<...>`) are what `close_connection` accepts;
    the JSON formatter's `#PID<...>` are not.
    """
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pids = [
        line.split("\t", 1)[0]
        for line in listing.stdout.splitlines()
        if f'{{"connection_name","{connection_name}"}}' in line
    ]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "test: broker-side close"],
            capture_output=True,
            timeout=30,
            check=True,
        )
    return len(pids)


async def start_sink(host: str = "127.0.0.1") -> tuple[Sink, Callable[[], Awaitable[None]]]:
    sink = Sink()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    sink.base_url = f"http://{host}:{port}"
    return sink, runner.cleanup


@asynccontextmanager
async def running(config: Path, store: SubscriptionStore | None = None) -> AsyncIterator[App]:
    """The daemon in this process, consuming, for the body of the `async with`; stopped after,
    and it must exit 0. Its subscriptions come from `store` (default: the config file's)."""
    app = App(load_settings(config), config_path=config, store=store)
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(15):
            await app.consumer.connected.wait()
        yield app
    finally:
        app.stop()
        assert await asyncio.wait_for(task, 30) == 0


def as_event(body: dict[str, Any]) -> Event:
    """The Event the daemon decodes from this structured-mode body (say, from `new_event`)."""
    decoded = decode(encode(body))
    assert isinstance(decoded, Event), decoded
    return decoded


def json_depth(value: Any) -> int:
    """How deep a JSON value nests: 0 for a scalar, 1 for `[]` or `{"a": 1}` (recursive: for
    the shallow values tests make)."""
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    return 0


async def settled(app: App, count: int) -> None:
    """Wait until `count` events went through the pipeline and none is in flight."""
    await wait_until(
        lambda: app.pipeline.stats.consumed >= count and not app.consumer._inflight,
        what=f"{count} events consumed",
    )


async def publish_events(
    amqp: aiormq.abc.AbstractChannel, names: BrokerNames, events: list[dict[str, Any]]
) -> None:
    for event in events:
        await publish_raw(amqp, names.exchange, event["type"], encode(event))


async def run_cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run `dispatcher ARGS` as a process, without blocking the loop that serves the test's
    peers: (exit code, stdout, stderr). Killed after 60 s."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dispatcher", *args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate(stdin)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
