"""The benchmark's webhook receiver: aiohttp in a process of its own, listening on several
loopback ports (one per fan-out target), answering every POST with 204 at once (but three paths,
below).

It counts what arrives and, for events whose data carries `sent_ns` (their publish time), how
long they took from publish to receipt. The same receiver serves the ceiling's bare POSTs and
the daemon's deliveries, so both pay the same price on the receiving side.

    python -m benchmarks.receiver --ports 10    # prints {"ports": [...]} once listening

Three paths serve a second target beside the one measured, counted apart (`apart` in the stats,
by path), never in `count`: POST /fine answers 204 at once; POST /hang never answers (until the
client closes the connection, the receiver stops, or `HANG_MAX_S` passes); POST /fail503 answers
503 at once.

Control, on any port: GET /_stats (counts, first/last arrival, latencies), POST /_reset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

import orjson
from aiohttp import web

from dispatcher.cli import run_async

_MARK = b'"sent_ns"'
HANG_MAX_S = 600.0  # a hanging request is answered (504) after this at the latest


class Tally:
    def __init__(self) -> None:
        self.released = asyncio.Event()  # set on the way out: hanging requests end then
        self.clear()

    def clear(self) -> None:
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies_us: list[int] = []
        self.apart = dict.fromkeys(("fine", "hang", "fail503"), 0)

    async def post(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time_ns()
        if not self.count:
            self.first_ns = now
        self.count += 1
        self.last_ns = now
        if _MARK in body:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                sent_ns = orjson.loads(body)["data"]["sent_ns"]
                self.latencies_us.append((now - int(sent_ns)) // 1000)
        return web.Response(status=204)

    async def fine(self, request: web.Request) -> web.Response:
        await request.read()
        self.apart["fine"] += 1
        return web.Response(status=204)

    async def hang(self, request: web.Request) -> web.Response:
        await request.read()
        self.apart["hang"] += 1
        # The server cancels this handler when the client closes the connection (a timeout).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.released.wait(), HANG_MAX_S)
        return web.Response(status=504)

    async def fail503(self, request: web.Request) -> web.Response:
        await request.read()
        self.apart["fail503"] += 1
        return web.Response(status=503)

    async def stats(self, _request: web.Request) -> web.Response:
        document = {
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "latencies_us": self.latencies_us,
            "apart": self.apart,
        }
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    async def reset(self, _request: web.Request) -> web.Response:
        self.clear()
        return web.Response(status=204)


async def serve(ports: int) -> None:
    tally = Tally()
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/_stats", tally.stats)
    app.router.add_post("/_reset", tally.reset)
    app.router.add_post("/fine", tally.fine)
    app.router.add_post("/hang", tally.hang)
    app.router.add_post("/fail503", tally.fail503)
    app.router.add_post("/{tail:.*}", tally.post)
    # handler_cancellation: a /hang request ends when its client gives up. Every other path
    # answers as soon as it has read the request, so for them nothing changes.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    for _ in range(ports):
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    bound = [address[1] for address in runner.addresses]
    sys.stdout.write(orjson.dumps({"ports": bound}).decode() + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bounded: the parent stops us; if it dies without doing so, stdin closes and we leave.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait([eof, waiter], return_when=asyncio.FIRST_COMPLETED)
    eof.cancel()
    waiter.cancel()
    tally.released.set()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=10, help="how many ports to listen on")
    run_async(serve(parser.parse_args().ports))


if __name__ == "__main__":
    main()
