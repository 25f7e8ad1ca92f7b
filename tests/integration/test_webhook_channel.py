"""WebhookChannel against real aiohttp servers on loopback: what arrives, and how every kind of
answer (or no answer) is classified, without a URL path, token or secret in any reason."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from dispatcher import __version__
from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
from dispatcher.channels.httpclient import HttpClient
from dispatcher.channels.webhook import WebhookChannel, origin, sign
from dispatcher.events import Event, new_event
from dispatcher.subscriptions.models import Subscription, signing_key
from tests.support import LOOPBACK, as_event

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"dispatcher-test-key-0123").decode()
NOW = 1_700_000_000.0
TOKEN_PATH = "/hooks/T0KEN-SECRET?token=abc"
LEAKS = ("T0KEN-SECRET", "token=abc", "/hooks", "pa55word", "user:", SECRET, SECRET[6:])

Respond = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    path_qs: str
    headers: dict[str, str]
    body: bytes
    peer: Any  # the client's (host, port): the same port means the same pooled connection


@dataclass
class Hook:
    """A real HTTP server on 127.0.0.1 that records each request and answers with `respond`."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    respond: Respond | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets a hanging handler end

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path_qs: str = TOKEN_PATH, *, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path_qs}"


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    server = Hook()

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        body = await request.read()
        server.requests.append(Received(request.path_qs, dict(request.headers), body, peer))
        assert server.respond is not None
        return await server.respond(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    webhooks = WebhookChannel(guard=LOOPBACK, clock=lambda: NOW)
    yield webhooks
    await webhooks.close()


def answer(status: int, body: str = "", headers: dict[str, str] | None = None) -> Respond:
    async def respond(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, headers=headers)

    return respond


def hang(hook: Hook) -> Respond:
    async def respond(_request: web.Request) -> web.StreamResponse:
        await hook.release.wait()
        return web.Response(status=204)

    return respond


def subscription(
    url: str,
    *,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> Subscription:
    target: dict[str, Any] = {
        "type": "webhook",
        "url": url,
        "headers": headers or {},
        "timeout_s": timeout_s,
    }
    if secret is not None:
        target["secret"] = secret
    return Subscription.model_validate(
        {"name": "shop/deploys", "events": ["deployment.succeeded"], "target": target}
    )


def event() -> Event:
    as_dict = new_event(
        "deployment.succeeded",
        "/seeds/deployments",
        id="evt-1",
        data={"app": "api"},
        project="shop",
    )
    return as_event(as_dict)


async def send(channel: WebhookChannel, sub: Subscription) -> SendResult:
    async with asyncio.timeout(10):
        return await channel.send(Delivery.of(event(), sub))


def assert_no_leak(text: str) -> None:
    for secret in LEAKS:
        assert secret not in text


async def test_delivery_arrives_signed_with_a_stable_id(hook: Hook) -> None:
    hook.respond = answer(204)
    sub = subscription(hook.url(), secret=SECRET, headers={"X-Team": "shop"})
    delivery = Delivery.of(event(), sub)
    webhooks = WebhookChannel(guard=LOOPBACK)  # the real clock: verify() rejects old timestamps
    try:
        async with asyncio.timeout(10):
            results = [await webhooks.send(delivery), await webhooks.send(delivery)]
    finally:
        await webhooks.close()

    assert results == [SendOk("HTTP 204"), SendOk("HTTP 204")]
    first, second = hook.requests
    assert first.path_qs == TOKEN_PATH
    assert first.body == delivery.event.body
    assert first.headers["Content-Type"] == "application/cloudevents+json"
    assert first.headers["X-Team"] == "shop"
    assert first.headers["User-Agent"] == f"dispatcher/{__version__}"
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.id
    verifier = Webhook(SECRET)
    assert verifier.verify(first.body, first.headers) == json.loads(delivery.event.body)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(first.body.replace(b'"api"', b'"evil"'), first.headers)


async def test_signature_and_timestamp_follow_the_clock(
    hook: Hook, channel: WebhookChannel
) -> None:
    hook.respond = answer(200, "ok")
    delivery = Delivery.of(event(), subscription(hook.url(), secret=SECRET))
    assert await channel.send(delivery) == SendOk("HTTP 200")

    (received,) = hook.requests
    assert received.headers["webhook-timestamp"] == str(int(NOW))
    expected = sign(signing_key(SecretStr(SECRET)), delivery.id, int(NOW), received.body)
    assert received.headers["webhook-signature"] == expected
    at = datetime.fromtimestamp(NOW, UTC)
    assert Webhook(SECRET).sign(delivery.id, at, received.body.decode()) == expected


async def test_no_signature_without_a_secret(hook: Hook, channel: WebhookChannel) -> None:
    hook.respond = answer(204)
    assert await send(channel, subscription(hook.url())) == SendOk("HTTP 204")
    (received,) = hook.requests
    assert "webhook-signature" not in received.headers
    assert received.headers["webhook-id"].startswith("dlv_")
    assert received.headers["webhook-timestamp"] == str(int(NOW))


@pytest.mark.parametrize(
    ("status", "headers", "body", "retryable", "retry_after_s"),
    [
        (200, {}, "ok", None, None),
        (204, {}, "", None, None),
        (301, {"Location": "https://elsewhere.example.com/hooks/x"}, "", False, None),
        (400, {}, "bad\n   request\t!", False, None),
        (404, {}, "", False, None),
        (408, {}, "slow", True, None),
        (410, {}, "gone", False, None),
        (429, {"Retry-After": "7"}, "slow down", True, 7.0),
        (429, {"Retry-After": "soon"}, "", True, None),
        (429, {"Retry-After": "9" * 400}, "", True, None),  # not a finite delay
        (500, {}, "boom", True, None),
        (503, {"Retry-After": formatdate(NOW + 120, usegmt=True)}, "busy", True, 120.0),
        (503, {"Retry-After": formatdate(NOW - 60, usegmt=True)}, "busy", True, 0.0),
    ],
)
async def test_classifies_answers(
    hook: Hook,
    channel: WebhookChannel,
    status: int,
    headers: dict[str, str],
    body: str,
    retryable: bool | None,
    retry_after_s: float | None,
) -> None:
    hook.respond = answer(status, body, headers)
    sub = subscription(hook.url(userinfo="user:pa55word@"), secret=SECRET)
    result = await send(channel, sub)

    if retryable is None:
        assert result == SendOk(f"HTTP {status}")
        return
    assert isinstance(result, SendFailed)
    assert (result.retryable, result.retry_after_s) == (retryable, retry_after_s)
    assert result.reason.startswith(f"HTTP {status} from {hook.origin}")
    assert "\n" not in result.reason
    assert_no_leak(result.reason)
    if status == 301:
        assert "does not follow redirects" in result.reason
    if status == 400:
        assert result.reason == f"HTTP 400 from {hook.origin}: bad request !"


async def test_an_answer_echoing_the_url_does_not_leak_it(
    hook: Hook, channel: WebhookChannel
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text=f"no route {request.path_qs} for {request.url}")

    hook.respond = echo
    result = await send(channel, subscription(hook.url(userinfo="user:pa55word@")))
    assert isinstance(result, SendFailed)
    assert not result.retryable
    assert result.reason.startswith(f"HTTP 404 from {hook.origin}: no route ***")
    assert_no_leak(result.reason)


async def test_an_answer_echoing_the_basic_credentials_does_not_leak_them(
    hook: Hook, channel: WebhookChannel
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, text=f"bad {request.headers['Authorization']}")

    hook.respond = echo
    result = await send(channel, subscription(hook.url(userinfo="user:pa55word@")))
    assert isinstance(result, SendFailed)
    assert result.reason == f"HTTP 401 from {hook.origin}: bad ***"
    assert base64.b64encode(b"user:pa55word").decode() not in result.reason


async def test_a_secret_across_the_snippet_cut_is_hidden_whole(
    hook: Hook, channel: WebhookChannel
) -> None:
    hook.respond = answer(403, " " * 955 + "pa55word is wrong")
    result = await send(channel, subscription(hook.url(userinfo="user:pa55word@")))
    assert isinstance(result, SendFailed)
    assert result.reason == f"HTTP 403 from {hook.origin}: *** is wrong"


async def test_times_out(hook: Hook, channel: WebhookChannel) -> None:
    hook.respond = hang(hook)
    result = await send(channel, subscription(hook.url(), secret=SECRET, timeout_s=0.2))
    assert result == SendFailed(
        f"timed out after 0.2s posting to {hook.origin}", retryable=True, timed_out=True
    )
    assert len(hook.requests) == 1


async def test_connection_refused(channel: WebhookChannel) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://user:pa55word@127.0.0.1:{port}{TOKEN_PATH}"
    result = await send(channel, subscription(url, secret=SECRET))
    reason = f"cannot connect to http://127.0.0.1:{port}: Connection refused"
    assert result == SendFailed(reason, retryable=True)


async def test_reads_the_answer_so_the_connection_is_reused(
    hook: Hook, channel: WebhookChannel
) -> None:
    hook.respond = answer(503, "busy " * 1000)
    sub = subscription(hook.url())
    first, second = await send(channel, sub), await send(channel, sub)
    assert first == second
    assert isinstance(first, SendFailed)
    assert len(first.reason) < 200
    assert hook.requests[0].peer == hook.requests[1].peer


async def test_a_huge_answer_is_read_only_in_part(hook: Hook, channel: WebhookChannel) -> None:
    hook.respond = answer(500, "x" * (4 * 1024 * 1024))
    sub = subscription(hook.url())
    result = await send(channel, sub)
    assert isinstance(result, SendFailed)
    assert result.retryable
    assert len(result.reason) < 200
    hook.respond = answer(204)
    assert await send(channel, sub) == SendOk("HTTP 204")


async def test_a_given_client_is_left_open(hook: Hook) -> None:
    hook.respond = answer(204)
    client = HttpClient(guard=LOOPBACK)
    webhooks = WebhookChannel(client)
    assert await send(webhooks, subscription(hook.url())) == SendOk("HTTP 204")
    await webhooks.close()
    assert not client.closed
    await client.close()


async def test_send_after_close_fails_without_raising(hook: Hook) -> None:
    hook.respond = answer(204)
    webhooks = WebhookChannel(guard=LOOPBACK)
    assert await send(webhooks, subscription(hook.url())) == SendOk("HTTP 204")
    await webhooks.close()
    result = await send(webhooks, subscription(hook.url()))
    assert isinstance(result, SendFailed)
    assert result.retryable
    assert len(hook.requests) == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@Hooks.Example.com/T0KEN?token=abc", "https://hooks.example.com"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("https://[::1]:8443/path#frag", "https://[::1]:8443"),
        ("not a url", "<invalid URL>"),
    ],
)
def test_origin(url: str, expected: str) -> None:
    assert origin(url) == expected
