"""The ceiling and the baselines, each in a process of its own like the daemon:

    python -m benchmarks.bare consume QUEUE COUNT        # bare aiormq: consume + ack, no work
    python -m benchmarks.bare post URL COUNT             # bare aiohttp: POST events, keep-alive
    python -m benchmarks.bare kombu QUEUE COUNT URL      # kombu consumer + requests.post

Each prints one JSON line: {"count": n, "rate": per second from the first to the last item}.
Every loop ends after COUNT items or after `--timeout-s`, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiormq
import orjson
from aiormq.abc import DeliveredMessage

from benchmarks.broker import AMQP_URL, event_body
from dispatcher.cli import run_async

PREFETCH = 200  # the daemon's default, so both consume under the same bound
POSTERS = 64  # concurrent requests: as many as the webhook client opens to one origin


class Clock:
    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0

    def tick(self) -> None:
        self.last = time.perf_counter()
        if not self.count:
            self.first = self.last
        self.count += 1

    def report(self) -> dict[str, Any]:
        elapsed = self.last - self.first
        rate = (self.count - 1) / elapsed if self.count > 1 and elapsed > 0 else 0.0
        return {"count": self.count, "rate": rate}


async def consume(queue: str, count: int, timeout_s: float) -> Clock:
    clock = Clock()
    done = asyncio.Event()
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=PREFETCH)

    async def on_message(message: DeliveredMessage) -> None:
        assert message.delivery_tag is not None
        await message.channel.basic_ack(message.delivery_tag)
        clock.tick()
        if clock.count >= count:
            done.set()

    await channel.basic_consume(queue, on_message, no_ack=False)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout_s)
    await connection.close()
    return clock


async def post(url: str, count: int, timeout_s: float) -> Clock:
    clock = Clock()
    bodies = [event_body(n) for n in range(min(count, 1000))]
    headers = {"Content-Type": "application/cloudevents+json"}
    connector = aiohttp.TCPConnector(limit=POSTERS)
    left = iter(range(count))

    async def poster(session: aiohttp.ClientSession) -> None:
        for n in left:
            async with session.post(url, data=bodies[n % len(bodies)], headers=headers) as answer:
                await answer.read()
                answer.raise_for_status()
            clock.tick()

    async with aiohttp.ClientSession(connector=connector) as session:
        workers = [asyncio.ensure_future(poster(session)) for _ in range(POSTERS)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*workers), timeout_s)
    return clock


def kombu_requests(queue: str, count: int, url: str, timeout_s: float) -> Clock:
    """The classic hand-written consumer: kombu drains, requests posts, one at a time."""
    import kombu.connection
    import kombu.entity
    import kombu.messaging
    import requests

    # kombu ships py.typed but leaves these unannotated; as Any, mypy --strict accepts the calls
    connect: Any = kombu.connection.Connection
    consumer_of: Any = kombu.messaging.Consumer
    queue_of: Any = kombu.entity.Queue

    clock = Clock()
    deadline = time.monotonic() + timeout_s
    http = requests.Session()
    headers = {"Content-Type": "application/cloudevents+json"}

    def on_message(body: Any, message: Any) -> None:
        http.post(url, data=message.body, headers=headers, timeout=10).raise_for_status()
        message.ack()
        clock.tick()

    # kombu reads the vhost from the path without its leading slash: "//" is vhost "/".
    vhost_root = urlsplit(AMQP_URL).path in ("", "/")
    with connect(AMQP_URL.rstrip("/") + "//" if vhost_root else AMQP_URL) as connection:
        consumer = consumer_of(
            connection, [queue_of(queue, no_declare=True)], callbacks=[on_message], accept=None
        )
        consumer.qos(prefetch_count=PREFETCH)
        with consumer:
            while clock.count < count and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    continue
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["consume", "post", "kombu"])
    parser.add_argument("where", help="the queue (consume, kombu) or the URL (post)")
    parser.add_argument("count", type=int)
    parser.add_argument("url", nargs="?", help="where kombu posts")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args()
    if args.what == "consume":
        clock = run_async(consume(args.where, args.count, args.timeout_s))
    elif args.what == "post":
        clock = run_async(post(args.where, args.count, args.timeout_s))
    else:
        clock = kombu_requests(args.where, args.count, args.url, args.timeout_s)
    sys.stdout.write(orjson.dumps(clock.report()).decode() + "\n")


if __name__ == "__main__":
    main()
