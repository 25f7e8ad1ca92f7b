"""A small HTTP/1.1 client for webhook POSTs: keep-alive connections pooled per origin, one
request at a time on each, answers bounded in size (and, by the caller, in time).

Why not aiohttp's client, which the rest of dispatcher's HTTP uses: profiling the daemon showed
its per-request machinery at about half of the daemon's CPU (about 90 µs a request on our 2-core
machines, against about 25 µs here). A webhook POST needs none of what that buys: no redirects,
cookies, proxies, compression, multipart or streaming. TLS, DNS and sockets are asyncio's.

Every new connection goes through a `NetworkGuard`: the host is resolved, every address it
resolves to is checked, and the socket connects to one of those very addresses (TLS still names
the host), so a name cannot resolve to a public address for the check and to a private one for
the connect. A refused host raises `AddressRefused`.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

from dispatcher.channels.http1 import Answer, ProtocolError, ResponseParser
from dispatcher.netguard import NetworkGuard, Resolved

#: connections at once to one origin; more requests wait for one to come free
LIMIT_PER_ORIGIN = 64
#: kept-alive connections tried for one request, each dropped before it answered anything
_REUSE_TRIES = 3
KEEPALIVE_S = 30.0  # an idle connection older than this is closed rather than reused


class Disconnected(Exception):
    """The server closed the connection before answering."""

    def __init__(self, *, answered_nothing: bool) -> None:
        super().__init__("server disconnected")
        self.answered_nothing = answered_nothing


class ClientClosed(Exception):
    """The client was closed: no more requests."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # http | https
    host: str  # to connect to, and the TLS server name
    port: int


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self._parser = ResponseParser(max_body)
        self._waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    async def exchange(self, data: bytes) -> Answer:
        assert self.transport is not None
        self._parser.reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._waiter

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        try:
            answer = self._parser.feed(data)
        except ProtocolError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if answer is not None:
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                waiter.set_result(self._parser.eof())
            except ProtocolError:
                started = self._parser.started
                waiter.set_exception(Disconnected(answered_nothing=not started))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            started = self._parser.started
            waiter.set_exception(Disconnected(answered_nothing=not started))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections to one origin: idle ones to reuse, and a bound on how many are open."""

    def __init__(self, limit: int) -> None:
        self.idle: list[_Connection] = []
        self.open = 0
        self._limit = limit
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    def take_idle(self, now: float, keepalive_s: float) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < keepalive_s:
                return connection
            self.discard(connection)
        return None

    async def turn(self) -> _Connection | None:
        """Wait while the origin is at its limit: a connection handed over, or None: open one."""
        if self.open < self._limit:
            self.open += 1
            return None
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a turn we cannot take
                self.give_back(waiter.result(), reusable=True)
            raise

    def give_back(self, connection: _Connection | None, *, reusable: bool) -> None:
        """A request ended with this connection (None: it could not even be opened)."""
        if connection is not None and reusable and not connection.closed:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
            return
        if connection is not None:
            connection.close()
        while self._waiters:  # the slot goes to the next in line, who opens a connection
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    def discard(self, connection: _Connection) -> None:
        connection.close()
        self.open -= 1


class HttpClient:
    """POSTs over pooled keep-alive connections. Bound each call's time with asyncio.timeout;
    a call cancelled midway closes its connection. `guard` says which addresses it may connect
    to (default: public ones only)."""

    def __init__(
        self,
        *,
        limit_per_origin: int = LIMIT_PER_ORIGIN,
        keepalive_s: float = KEEPALIVE_S,
        ssl_context: ssl.SSLContext | None = None,
        guard: NetworkGuard | None = None,
    ) -> None:
        self._guard = guard or NetworkGuard()
        self._limit = limit_per_origin
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._pools: dict[Origin, _Pool] = {}
        self.closed = False

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    async def request(self, origin: Origin, data: bytes, max_body: int) -> Answer:
        """Send `data` (a whole request) and read the answer. Raises OSError (connect, DNS,
        TLS; AddressRefused from the guard), Disconnected, ProtocolError, ClientClosed."""
        if self.closed:
            raise ClientClosed
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._limit)
        for _ in range(_REUSE_TRIES):
            connection = pool.take_idle(time.monotonic(), self._keepalive_s)
            if connection is None:
                connection = await pool.turn()  # a free slot (None), or a kept one handed over
            if connection is None:
                break
            try:  # a kept-alive connection: the server may have closed it meanwhile
                return await self._exchange(pool, connection, data)
            except Disconnected as exc:
                if not exc.answered_nothing:
                    raise  # the request may have arrived: not sent again
        else:
            connection = await pool.turn()
        if connection is None:
            try:
                connection = await self._connect(origin, max_body)
            except BaseException:
                pool.give_back(None, reusable=False)
                raise
        return await self._exchange(pool, connection, data)

    async def _exchange(self, pool: _Pool, connection: _Connection, data: bytes) -> Answer:
        reusable = False
        try:
            answer = await connection.exchange(data)
            reusable = answer.reusable and not self.closed
            return answer
        finally:
            pool.give_back(connection, reusable=reusable)

    async def _connect(self, origin: Origin, max_body: int) -> _Connection:
        """A connection to the first of the host's checked addresses that takes one."""
        loop = asyncio.get_running_loop()
        tls = self._tls() if origin.scheme == "https" else None
        addresses = await self._guard.resolve(origin.host, origin.port)
        sock = await _open_socket(loop, addresses)
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(max_body),
                sock=sock,
                ssl=tls,
                server_hostname=origin.host if tls is not None else None,
            )
        except BaseException:
            sock.close()
            raise
        return connection

    async def close(self) -> None:
        self.closed = True
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()
        self._pools.clear()


async def _open_socket(loop: asyncio.AbstractEventLoop, addresses: list[Resolved]) -> socket.socket:
    """A TCP socket connected to the first of `addresses` that answers; the last OSError when
    none does."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        # IPPROTO_TCP, as getaddrinfo gives it: asyncio sets TCP_NODELAY only on such a socket
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert error is not None  # resolve() gives at least one address
    raise error
