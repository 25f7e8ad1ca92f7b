"""Real SMTP servers on 127.0.0.1 for tests: aiosmtpd (plain, or STARTTLS + AUTH with a trustme
CA) recording every message and giving scripted refusals, and a raw TCP server that says fixed
lines late, or nothing at all.

Fixtures (import them into a test module; they register under these names): `smtp_server`,
`smtp_tls_server`, `smtp_ca` (the trustme CA), `smtp_client_tls` (an SSLContext trusting that CA
and nothing else), `silent_server` (a RawServer).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
SMTP_USER = "dispatcher"
SMTP_PASSWORD = "s3cret-Pa55word"


@dataclass(frozen=True)
class Received:
    """One message as the server took it: the envelope, the parsed message, and the connection
    it came over (`peer`, the client's address: the same peer means the same connection)."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: object  # the client's (host, port)
    tls: bool
    login: str | None


class _Handler:
    """aiosmtpd hooks; they run on the server's own loop, in its thread."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if session.peer not in self._owner.peers:
            self._owner.peers.append(session.peer)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self._owner.scripted("MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        self._owner.noops += 1
        return self._owner.scripted("NOOP") or "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self._owner.replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._owner.scripted("DATA")
        if reply is not None:
            return reply
        assert isinstance(envelope.content, bytes)  # decode_data=False, the default
        # CRLF is the wire's line ending; Python's email parser works in LF
        content = envelope.content.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth: Any = session.auth_data  # what _authenticate put there: LoginPassword
        login = auth.login.decode() if session.authenticated else None
        received = Received(
            envelope.mail_from or "",
            list(envelope.rcpt_tos),
            message,
            session.peer,
            session.ssl is not None,
            login,
        )
        self._owner.arrive(received)
        return f"250 OK: queued as Q{len(self._owner.received)}"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _Controller(Controller):
    """A Controller that may bind port 0: it learns the port before probing the server."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # untyped in aiosmtpd


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that records each message (`received`, `wait_for`).

    `replies` maps a recipient address to the reply its RCPT gets instead of 250 (say
    `"550 5.1.1 no such user"`). `next_replies` holds, per command (MAIL, NOOP, DATA), replies
    given once each, in order, before that command is answered normally again. With `tls`, the
    server offers STARTTLS, requires it, and requires AUTH as SMTP_USER / SMTP_PASSWORD.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self.received: list[Received] = []
        self.replies: dict[str, str] = {}
        self.next_replies: dict[str, list[str]] = {}
        self.noops = 0
        self.peers: list[object] = []  # one per connection that said EHLO
        self._tls = tls
        self._controller: _Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()

    @property
    def connections(self) -> int:
        return len(self.peers)

    def scripted(self, command: str) -> str | None:
        """The next scripted reply to `command`, if any (called in the server's thread)."""
        queued = self.next_replies.get(command)
        return queued.pop(0) if queued else None

    def arrive(self, received: Received) -> None:
        """Called in the server's thread: record, then wake `wait_for` on the test's loop."""
        self.received.append(received)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """The first `count` messages, once that many have arrived; fails after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._arrived.clear()  # before the check, so an arrival after it still wakes us
                if len(self.received) >= count:
                    return self.received[:count]
                await self._arrived.wait()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        options: dict[str, Any] = {}
        if self._tls is not None:
            options = {
                "tls_context": self._tls,
                "require_starttls": True,
                "auth_required": True,
                "authenticator": _authenticate,
            }
        controller = _Controller(
            _Handler(self),
            hostname=HOST,
            port=self.port,
            server_hostname="smtp.test",  # not socket.getfqdn(), which may wait on DNS
            ready_timeout=5.0,
            **options,
        )
        await asyncio.to_thread(controller.start)  # it blocks until the server answers
        self._controller, self.port = controller, controller.port

    async def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)

    async def restart(self) -> None:
        """Stop (dropping every connection) and start again on the same port."""
        await self.stop()
        await self.start()


@pytest.fixture(name="smtp_server")
async def smtp_server_fixture() -> AsyncIterator[SmtpServer]:
    server = SmtpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(name="smtp_ca", scope="session")
def smtp_ca_fixture() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(name="smtp_client_tls")
def smtp_client_tls_fixture(smtp_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (and nothing else)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
    smtp_ca.configure_trust(context)
    return context


@pytest.fixture(name="smtp_tls_server")
async def smtp_tls_server_fixture(smtp_ca: trustme.CA) -> AsyncIterator[SmtpServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    smtp_ca.issue_cert(HOST, "localhost").configure_cert(context)
    server = SmtpServer(tls=context)
    await server.start()
    yield server
    await server.stop()


class _Raw(asyncio.Protocol):
    def __init__(self, owner: RawServer) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._owner.transports.append(transport)
        if self._owner.greeting:
            self._say(self._owner.greeting)

    def data_received(self, data: bytes) -> None:
        if self._owner.answer:
            for _ in range(data.count(b"\n")):
                self._say(self._owner.answer)

    def _say(self, line: bytes) -> None:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._owner.timers.append(loop.call_later(self._owner.delay_s, self._transport.write, line))


class RawServer:
    """A TCP server on 127.0.0.1 that says `greeting` to each connection and `answer` to each
    line it receives, each `delay_s` late. By default it says nothing at all: a server that
    accepts and never answers."""

    def __init__(self, greeting: bytes = b"", answer: bytes = b"", delay_s: float = 0.0) -> None:
        self.greeting, self.answer, self.delay_s = greeting, answer, delay_s
        self.port = 0
        self.transports: list[asyncio.Transport] = []
        self.timers: list[asyncio.TimerHandle] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Raw(self), HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for transport in self.transports:  # Server.close() leaves accepted connections open
            transport.close()
        if self._server is not None:
            self._server.close()
            async with asyncio.timeout(5):
                await self._server.wait_closed()


@pytest.fixture(name="silent_server")
async def silent_server_fixture() -> AsyncIterator[RawServer]:
    """Set `greeting` (and `answer`, `delay_s`) before the first connection to have it say
    something, e.g. a 421 greeting."""
    server = RawServer()
    await server.start()
    yield server
    await server.stop()
