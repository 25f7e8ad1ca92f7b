"""The webhook HTTP client against real servers on loopback: chunked answers, connections the
server closed while kept alive, the per-origin bound, TLS, headers that would inject others, and
answers with ambiguous framing, after which no request may share their connection."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiohttp import web

from dispatcher.channels.base import Delivery, SendFailed, SendOk
from dispatcher.channels.http1 import ProtocolError
from dispatcher.channels.httpclient import HttpClient, Origin
from dispatcher.channels.webhook import WebhookChannel
from dispatcher.events import new_event
from dispatcher.subscriptions.models import Subscription
from tests.framing import OVERLONG, REFUSED
from tests.support import LOOPBACK, as_event

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"


def delivery(url: str, **target: Any) -> Delivery:
    decoded = as_event(new_event("deployment.failed", "test"))
    sub = Subscription.model_validate(
        {"name": "s", "events": ["*"], "target": {"type": "webhook", "url": url, **target}}
    )
    return Delivery.of(decoded, sub)


async def serve(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> tuple[int, Callable[[], Awaitable[None]]]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return runner.addresses[0][1], runner.cleanup


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient(limit_per_origin=2, guard=LOOPBACK)
    yield http
    await http.close()


async def test_a_chunked_answer_is_read_and_the_connection_kept(client: HttpClient) -> None:
    peers: list[Any] = []

    async def chunked(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        response = web.StreamResponse(status=503)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"busy ", b"come ", b"back"):
            await response.write(part)
        await response.write_eof()
        return response

    port, stop = await serve(chunked)
    try:
        origin = Origin("http", "127.0.0.1", port)
        async with asyncio.timeout(10):
            answers = [await client.request(origin, POST, 1024) for _ in range(2)]
    finally:
        await stop()
    assert [(a.status, a.body, a.reusable) for a in answers] == [(503, b"busy come back", True)] * 2
    assert peers[0] == peers[1]


async def test_a_kept_connection_the_server_dropped_is_replaced(client: HttpClient) -> None:
    """The server reads the second request on a kept-alive connection and closes without an
    answer (an idle timeout racing our write): the client sends it again on a new one."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len(served)
        served.append(connection)
        try:
            for request in range(2):
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                if connection == 0 and request == 1:
                    break  # the first connection's second request: dropped unanswered
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed its kept connection
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        origin = Origin("http", "127.0.0.1", port)
        async with asyncio.timeout(10):
            first = await client.request(origin, POST, 1024)
            second = await client.request(origin, POST, 1024)
        await client.close()  # its kept connection ends the second handler
    finally:
        server.close()
        await server.wait_closed()
    assert (first.status, second.status) == (204, 204)
    assert len(served) == 2


async def test_a_connection_handed_to_a_waiting_request_is_replaced_when_dropped() -> None:
    """One connection allowed, four requests at once, a server that answers only the first
    request of each connection: every request handed a kept connection is sent again afresh."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request: dropped unanswered
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = HttpClient(limit_per_origin=1, guard=LOOPBACK)
    try:
        origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
        async with asyncio.timeout(10):
            answers = await asyncio.gather(*(client.request(origin, POST, 64) for _ in range(4)))
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert [a.status for a in answers] == [204] * 4
    assert connections >= 4


async def test_requests_beyond_the_origin_limit_wait_for_a_connection(client: HttpClient) -> None:
    active = 0
    most = 0

    async def slow(_request: web.Request) -> web.StreamResponse:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.Response(status=204)

    port, stop = await serve(slow)
    try:
        origin = Origin("http", "127.0.0.1", port)
        async with asyncio.timeout(10):
            answers = await asyncio.gather(*(client.request(origin, POST, 64) for _ in range(7)))
    finally:
        await stop()
    assert [a.status for a in answers] == [204] * 7
    assert most == 2


async def test_tls_is_verified(tmp_path: Any) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)

    async def ok(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    port, stop = await serve(ok, server_tls)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    trusted, untrusted = (
        WebhookChannel(HttpClient(ssl_context=trusting, guard=LOOPBACK)),
        WebhookChannel(guard=LOOPBACK),
    )
    try:
        url = f"https://127.0.0.1:{port}/hook"
        assert await trusted.send(delivery(url)) == SendOk("HTTP 204")
        refused = await untrusted.send(delivery(url))
    finally:
        await trusted.close()
        await untrusted.close()
        await stop()
    assert isinstance(refused, SendFailed)
    assert refused.retryable
    assert refused.reason.startswith(f"TLS error with https://127.0.0.1:{port}: ")
    assert "certificate" in refused.reason


async def test_a_header_that_would_inject_another_is_never_sent() -> None:
    received: list[web.Request] = []

    async def record(request: web.Request) -> web.StreamResponse:
        received.append(request)
        return web.Response(status=204)

    port, stop = await serve(record)
    webhooks = WebhookChannel(guard=LOOPBACK)
    try:
        url = f"http://127.0.0.1:{port}/hook"
        result = await webhooks.send(delivery(url, headers={"X-Team": "ops\r\nX-Admin: yes"}))
    finally:
        await webhooks.close()
        await stop()
    assert isinstance(result, SendFailed)
    assert not result.retryable
    assert "invalid request" in result.reason
    assert received == []


class FirstAnswerServer:
    """A raw TCP server on loopback: its first request gets `first` (any bytes at all), every
    other one an answer that echoes the request's body. It counts connections and requests."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.requests: list[tuple[int, bytes]] = []  # (connection number, body)
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FirstAnswerServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append((connection, body))
                if len(self.requests) == 1:
                    writer.write(self.first)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()


def post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("wire", [*REFUSED.values(), *OVERLONG.values()], ids=[*REFUSED, *OVERLONG])
async def test_after_an_ambiguously_framed_answer_the_next_request_gets_its_own(
    wire: bytes,
) -> None:
    """Refused, or read and not reused when bytes follow it: either way the next request goes
    out on a new connection, and what it reads is its own answer."""
    client = HttpClient(limit_per_origin=1, guard=LOOPBACK)
    first = None
    try:
        async with FirstAnswerServer(wire) as server, asyncio.timeout(10):
            origin = Origin("http", "127.0.0.1", server.port)
            with contextlib.suppress(ProtocolError):
                first = await client.request(origin, post(b"first"), 1024)
            second = await client.request(origin, post(b"second"), 1024)
    finally:
        await client.close()
    if wire in OVERLONG.values():
        assert first is not None
        assert (first.status, first.body, first.reusable) == (200, b"ok", False)
    else:
        assert first is None  # refused
    assert (second.status, second.body) == (200, b"second")
    assert server.requests == [(1, b"first"), (2, b"second")]


async def test_the_connection_is_kept_after_a_well_framed_answer() -> None:
    """The counterpart of the two above: the same server, a plain first answer, one connection."""
    client = HttpClient(limit_per_origin=1, guard=LOOPBACK)
    try:
        async with FirstAnswerServer(b"HTTP/1.1 204 No Content\r\n\r\n") as server:
            origin = Origin("http", "127.0.0.1", server.port)
            async with asyncio.timeout(10):
                first = await client.request(origin, post(b"first"), 1024)
                second = await client.request(origin, post(b"second"), 1024)
    finally:
        await client.close()
    assert (first.status, first.reusable, second.body) == (204, True, b"second")
    assert server.requests == [(1, b"first"), (1, b"second")]


async def test_a_webhook_answered_ambiguously_fails_retryably_and_the_next_one_is_read() -> None:
    wire = REFUSED["Content-Length and Transfer-Encoding"]
    webhooks = WebhookChannel(guard=LOOPBACK)
    try:
        async with FirstAnswerServer(wire) as server, asyncio.timeout(10):
            url = f"http://127.0.0.1:{server.port}/hook"
            first = await webhooks.send(delivery(url))
            second = await webhooks.send(delivery(url))
    finally:
        await webhooks.close()
    assert first == SendFailed(
        f"posting to http://127.0.0.1:{server.port} failed: invalid HTTP answer: "
        "Transfer-Encoding can't be present with Content-Length",
        True,
    )
    assert isinstance(second, SendOk)
    assert [connection for connection, _ in server.requests] == [1, 2]
