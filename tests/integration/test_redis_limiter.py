"""The Redis rate limiter against a real Redis on loopback: one limit across several clients
(as across replicas), expiry, and the per-process fallback when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from dispatcher.delivery.ratelimit import Rate
from dispatcher.delivery.redis_limiter import RedisRateLimiter

pytestmark = pytest.mark.integration

SLACK = Rate(1.0, burst=3)  # one Slack channel: 1 msg/s, 3 at once
TOLERANCE_S = 0.2  # scheduling slack on a shared machine; far below the 1 s between slots
WARNING = "rate limits are held per process until Redis answers"

Limiters = Callable[..., Awaitable[RedisRateLimiter]]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(redis: Redis) -> AsyncIterator[str]:
    """A namespace of this test's own; its keys are deleted afterwards."""
    namespace = f"test-{uuid.uuid4().hex}"
    yield namespace
    keys = [key async for key in redis.scan_iter(match=f"dispatcher:rl:{namespace}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def limiters(redis_url: str, namespace: str) -> AsyncIterator[Limiters]:
    """Makes limiters, each with its own client (like separate processes); closes them all."""
    async with AsyncExitStack() as stack:

        async def make(
            url: str = redis_url, *, retry_after_s: float = 5.0, timeout_s: float = 0.5
        ) -> RedisRateLimiter:
            limiter = RedisRateLimiter(
                url, namespace=namespace, retry_after_s=retry_after_s, timeout_s=timeout_s
            )
            stack.push_async_callback(limiter.close)
            return limiter

        yield make


async def test_three_clients_share_one_gcra_schedule(limiters: Limiters) -> None:
    replicas = [await limiters() for _ in range(3)]
    for replica in replicas:  # connected beforehand, so the reserves below run close together
        assert await replica.ping()
    waits = await asyncio.gather(
        *(replicas[i % 3].reserve("slack:C123", SLACK, max_wait_s=60) for i in range(10))
    )
    granted = [wait_s for wait_s in waits if wait_s is not None]
    assert len(granted) == 10
    # burst 3, then one a second: no two requests share a slot
    assert sorted(granted) == pytest.approx([0, 0, 0, 1, 2, 3, 4, 5, 6, 7], abs=TOLERANCE_S)


async def test_a_refusal_takes_nothing(limiters: Limiters, redis: Redis, namespace: str) -> None:
    first, second = await limiters(), await limiters()
    for _ in range(5):
        assert await first.reserve("k", SLACK, max_wait_s=60) is not None
    stored = await redis.get(f"dispatcher:rl:{namespace}:k")
    assert await second.reserve("k", SLACK, max_wait_s=1.5) is None  # the next is 3 s away
    assert await redis.get(f"dispatcher:rl:{namespace}:k") == stored
    assert await second.reserve("k", SLACK, max_wait_s=60) == pytest.approx(3, abs=TOLERANCE_S)


async def test_a_pause_is_seen_by_every_client(limiters: Limiters) -> None:
    one, two, three = await limiters(), await limiters(), await limiters()
    await one.defer("k", SLACK, 5.0)
    # the first slot at the end of the pause, then one a second: no burst after a 429
    assert await two.reserve("k", SLACK, max_wait_s=60) == pytest.approx(5, abs=TOLERANCE_S)
    assert await three.reserve("k", SLACK, max_wait_s=60) == pytest.approx(6, abs=TOLERANCE_S)
    assert await one.reserve("k", SLACK, max_wait_s=60) == pytest.approx(7, abs=TOLERANCE_S)


async def test_every_key_expires_a_little_after_its_tat(
    limiters: Limiters, redis: Redis, namespace: str
) -> None:
    limiter = await limiters()
    await limiter.reserve("reserved", Rate(1.0), max_wait_s=60)  # tat +1 s
    await limiter.defer("deferred", SLACK, 5.0)  # tat +7 s (5 s, then the tolerance of 2)
    reserved_ms = await redis.pttl(f"dispatcher:rl:{namespace}:reserved")
    deferred_ms = await redis.pttl(f"dispatcher:rl:{namespace}:deferred")
    assert 1500 < reserved_ms <= 2000
    assert 7500 < deferred_ms <= 8000


async def test_namespaces_keep_deployments_apart(
    limiters: Limiters, redis: Redis, redis_url: str
) -> None:
    ours = await limiters()
    other = f"other-{uuid.uuid4().hex}"
    theirs = RedisRateLimiter(redis_url, namespace=other)
    try:
        assert await ours.reserve("k", Rate(1.0), max_wait_s=60) == 0
        assert await theirs.reserve("k", Rate(1.0), max_wait_s=60) == 0
    finally:
        await theirs.close()
        await redis.delete(f"dispatcher:rl:{other}:k")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("password_in", ["userinfo", "query"])
async def test_unreachable_redis_falls_back_with_one_warning(
    limiters: Limiters, password_in: str
) -> None:
    where = f"127.0.0.1:{_closed_port()}"
    url = {
        "userinfo": f"redis://:s3cret-pw@{where}/0",
        "query": f"redis://{where}/0?password=s3cret-pw",  # redis-py reads it from there too
    }[password_in]
    with capture_logs() as logs:
        limiter = await limiters(url, retry_after_s=0.05)
        assert not await limiter.ping()
        waits = [await limiter.reserve("k", SLACK, max_wait_s=60) for _ in range(4)]
        await asyncio.sleep(0.1)  # past retry_after_s: Redis is tried again, still refused
        await limiter.defer("k", SLACK, 5.0)
        later = await limiter.reserve("k", SLACK, max_wait_s=60)
    assert waits == pytest.approx([0, 0, 0, 1], abs=TOLERANCE_S)  # the local fallback's GCRA
    assert later == pytest.approx(5, abs=TOLERANCE_S)
    assert [log["event"] for log in logs] == [WARNING]
    assert logs[0]["log_level"] == "warning"
    assert "***" in logs[0]["redis"]
    assert "s3cret-pw" not in repr(logs) + repr(limiter)


async def test_a_silent_redis_times_out_into_the_fallback(limiters: Limiters) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with capture_logs() as logs:
            limiter = await limiters(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
            started = time.monotonic()
            assert await limiter.reserve("k", SLACK, max_wait_s=60) == 0
            assert time.monotonic() - started < 2.0
            await limiter.close()
    finally:
        server.close()
        await server.wait_closed()
    assert [log["event"] for log in logs] == [WARNING]
    assert "TimeoutError" in logs[0]["error"]


class Gate:
    """A TCP forwarder to Redis that can be shut: while shut it hangs up on every client."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.open = False
        self._upstream = upstream
        self._writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close_all(self) -> None:
        for writer in self._writers:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:  # the other side hung up
        pass
    finally:
        writer.close()


async def test_logs_once_when_redis_answers_again(
    limiters: Limiters, redis: Redis, redis_url: str, namespace: str
) -> None:
    parts = urlsplit(redis_url)
    gate = Gate((parts.hostname or "127.0.0.1", parts.port or 6379))
    server = await asyncio.start_server(gate.handle, "127.0.0.1", 0)
    gate_port = server.sockets[0].getsockname()[1]
    try:
        with capture_logs() as logs:
            limiter = await limiters(f"redis://127.0.0.1:{gate_port}/0", retry_after_s=0.05)
            assert await limiter.reserve("k", Rate(1.0), max_wait_s=60) == 0  # the fallback
            gate.open = True
            # too soon to try Redis again: the fallback, whose slot for "k" is 1 s away
            assert await limiter.reserve("k", Rate(1.0), max_wait_s=60) == pytest.approx(
                1, abs=TOLERANCE_S
            )
            assert await redis.exists(f"dispatcher:rl:{namespace}:k") == 0
            await asyncio.sleep(0.1)
            assert await limiter.reserve("k", Rate(1.0), max_wait_s=60) == 0  # Redis: a new key
            assert await redis.exists(f"dispatcher:rl:{namespace}:k") == 1
            assert await limiter.reserve("k", Rate(1.0), max_wait_s=60) == pytest.approx(
                1, abs=TOLERANCE_S
            )
            await limiter.close()
    finally:
        gate.close_all()
        server.close()
        await server.wait_closed()
    assert [(log["event"], log["log_level"]) for log in logs] == [
        (WARNING, "warning"),
        ("Redis answers again: rate limits are shared", "info"),
    ]
