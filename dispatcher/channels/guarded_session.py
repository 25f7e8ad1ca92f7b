"""The aiohttp session the Slack channels post through, made for servers people named: it
connects only where a `NetworkGuard` allows, follows no redirect, never decompresses an answer
and reads at most a bounded part of one.

The guard sits in two places. The resolver checks every address a name resolves to (one that is
not allowed refuses the name), and aiohttp connects only to what the resolver gave; the socket
factory checks the very address each socket connects to, which also covers a literal address in
a URL (aiohttp does not resolve those). Either refusal surfaces as an `aiohttp.
ClientConnectorError` whose `os_error` is the `AddressRefused`.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from dispatcher.netguard import NetworkGuard

#: the most of an incoming webhook's answer read (Slack answers "ok", or an error code)
MAX_RESPONSE_BYTES = 64 * 1024
#: the Web API's answer echoes the posted message, blocks and all (50 blocks of up to 3,000
#: characters each): a cap that a successful post can pass would make it fail, and be posted again
MAX_API_RESPONSE_BYTES = 1024 * 1024


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """The server's answer is larger than the session reads; the connection is closed."""


class RedirectRefused(aiohttp.ClientError):
    """The server answered with a redirect, which is not followed: the URL must be the final one."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: redirects are not followed")
        self.status = status


class _GuardedResolver(AbstractResolver):
    """Resolves through the guard: every address checked, all of them or none."""

    def __init__(self, guard: NetworkGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV  # what aiohttp's own resolvers say
        return [
            ResolveResult(
                hostname=host,
                host=sockaddr[0],
                port=port,
                family=af,
                proto=socket.IPPROTO_TCP,
                flags=flags,
            )
            for af, sockaddr in await self._guard.resolve(host, port)
            if family in (socket.AF_UNSPEC, af)
        ]

    async def close(self) -> None:
        """Nothing to release: lookups go through the event loop's resolver."""


class _CappedResponse(aiohttp.ClientResponse):
    """An answer read into memory up to `max_bytes`: a larger one raises AnswerTooLarge (and
    closes the connection) rather than being buffered whole."""

    max_bytes = MAX_RESPONSE_BYTES

    async def read(self) -> bytes:
        if self._body is None:
            try:
                self._body = await self._read_capped()
            except BaseException:
                self.close()
                raise
        return await super().read()

    async def text(self, encoding: str | None = None, errors: str = "replace") -> str:
        """As aiohttp's, but bytes that are not text (compressed by a server that ignored
        `identity`, say) do not raise: the answer is then classified by its status alone."""
        return await super().text(encoding, errors)

    async def _read_capped(self) -> bytes:
        too_large = AnswerTooLarge(f"the answer is larger than {self.max_bytes} bytes")
        if (self.content_length or 0) > self.max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while chunk := await self.content.read(self.max_bytes + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
        return b"".join(chunks)


class _CappedApiResponse(_CappedResponse):
    max_bytes = MAX_API_RESPONSE_BYTES


async def _no_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """A redirect is an answer, not an instruction: a target could otherwise send the request,
    token and all, wherever it liked."""
    response = await handler(request)
    if 300 <= response.status < 400:
        response.release()
        raise RedirectRefused(response.status)
    return response


def guarded_session(guard: NetworkGuard, *, web_api: bool = False) -> aiohttp.ClientSession:
    """A pooled session that connects where `guard` allows. `web_api`: answers are Slack Web
    API ones, read up to MAX_API_RESPONSE_BYTES rather than MAX_RESPONSE_BYTES."""

    def guarded_socket(addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        guard.check(str(sockaddr[0]))
        return socket.socket(family, kind, proto)

    connector = aiohttp.TCPConnector(
        limit=256,
        limit_per_host=64,
        keepalive_timeout=30,
        resolver=_GuardedResolver(guard),
        socket_factory=guarded_socket,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # No cookie jar: a cookie one workspace sets must never travel with another's token.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
        response_class=_CappedApiResponse if web_api else _CappedResponse,
        middlewares=(_no_redirects,),
    )
