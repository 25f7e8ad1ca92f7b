"""The network guard against real servers on loopback: the daemon dead-letters a delivery to an
address it does not allow and delivers where allowed; a name connects to the address that was
checked and cannot rebind to a forbidden one; Slack's session refuses the same way, follows no
redirect, reads a bounded answer and decompresses nothing; config load, the CLI and the API
refuse a forbidden literal host up front. No reason or error shows the URL's secret parts."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import pytest
from aiohttp import web

from dispatcher.channels.base import Channel, Delivery, SendFailed, SendOk, SendResult
from dispatcher.channels.httpclient import HttpClient, Origin
from dispatcher.channels.slack import SlackChannel, SlackWebhookChannel
from dispatcher.channels.webhook import WebhookChannel
from dispatcher.events import new_event
from dispatcher.netguard import HOW_TO_ALLOW, HOW_TO_ALLOW_BY_CIDR, NetworkGuard, Resolved
from dispatcher.render import SlackMessage
from dispatcher.settings import SlackSettings
from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.store import MemoryStore
from tests.integration.slack_standin import SlackWebhookStandin
from tests.support import (
    LOOPBACK,
    BrokerNames,
    Sink,
    as_event,
    drain_queue,
    header,
    publish_events,
    run_cli,
    running,
    start_sink,
    wait_for_depth,
    write_config,
)

pytestmark = pytest.mark.integration

SECRETS = ("query-secret", "hunter2", "H00KSECRET", "xoxb-")
TOKEN = "api-token-0123456789abcdef"


def subscription(name: str, target: dict[str, Any]) -> Subscription:
    return Subscription.model_validate({"name": name, "events": ["*"], "target": target})


def webhook(name: str, url: str) -> Subscription:
    return subscription(name, {"type": "webhook", "url": url, "timeout_s": 5})


async def send(channel: Channel, sub: Subscription) -> SendResult:
    try:
        async with asyncio.timeout(10):
            return await channel.send(
                Delivery.of(as_event(new_event("deployment.failed", "t")), sub)
            )
    finally:
        await channel.close()


def refused(result: SendResult) -> SendFailed:
    """A permanent failure that says how to allow the address and shows no secret."""
    assert isinstance(result, SendFailed), result
    assert not result.retryable
    assert result.reason.endswith((HOW_TO_ALLOW, HOW_TO_ALLOW_BY_CIDR))
    for secret in SECRETS:
        assert secret not in result.reason
    return result


def names_resolving(table: dict[str, list[list[str]]]) -> Callable[[str, int], Awaitable[Any]]:
    """A resolver for names under .test: each lookup of a name gives its next answer (the last
    one repeats), so a test can make a name change its address between two connections."""
    answers: dict[str, Iterator[list[str]]] = {
        host: iter([*given, *[given[-1]] * 100]) for host, given in table.items()
    }

    async def lookup(host: str, port: int) -> list[Resolved]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, (address, port)) for address in next(answers[host])]

    return lookup


async def test_the_daemon_dead_letters_a_refused_target_and_delivers_an_allowed_one(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    other, stop = await start_sink("127.0.0.2")  # loopback too, outside the allowed /32
    refused_url = other.url("/refused?token=query-secret")
    # a store's subscriptions are not checked at load (the API checks them at create time):
    # the send-time check is the one that holds
    store = MemoryStore([webhook("allowed", sink.url("/ok")), webhook("refused", refused_url)])
    delivery = {"backoff_initial_s": 0.01, "allowed_networks": ["127.0.0.1/32"]}
    config = write_config(tmp_path / "c.yaml", names, [], delivery=delivery)
    try:
        async with running(config, store):
            await publish_events(amqp, names, [new_event("deployment.failed", "t")])
            await sink.wait_for(1)
            await wait_for_depth(amqp, names.dead_letter_queue, 1)
        [dead] = await drain_queue(amqp, names.dead_letter_queue)
    finally:
        await stop()
    assert [r.path for r in sink.received] == ["/ok"]
    assert other.received == []
    assert header(dead, "x-dispatcher-subscription") == "refused"
    assert header(dead, "x-dispatcher-reason") == "permanent_failure"
    assert header(dead, "x-dispatcher-attempts") == "1"
    origin = other.base_url
    assert header(dead, "x-dispatcher-last-error") == (
        f"not posting to {origin}: 127.0.0.2 is a loopback address; {HOW_TO_ALLOW}"
    )
    assert "query-secret" not in repr(dead.header.properties.headers)


async def test_a_name_connects_to_the_checked_address_and_cannot_rebind(sink: Sink) -> None:
    port = int(sink.base_url.rsplit(":", 1)[1])
    lookup = names_resolving(
        {
            "hooks.test": [["127.0.0.1"], ["169.254.169.254"]],  # rebinds after one lookup
            "second.test": [["127.0.0.3", "127.0.0.1"]],  # nothing listens on the first
            "mixed.test": [["127.0.0.1", "10.0.0.9"]],
        }
    )
    guard = NetworkGuard.of(["127.0.0.0/8"], lookup=lookup)
    hooks = webhook("h", f"http://hooks.test:{port}/a?token=query-secret")
    assert await send(WebhookChannel(guard=guard), hooks) == SendOk("HTTP 204")
    # a fresh connection looks the name up again: it now points at the metadata service
    assert refused(await send(WebhookChannel(guard=guard), hooks)).reason == (
        f"not posting to http://hooks.test:{port}: 169.254.169.254 is a cloud metadata address;"
        f" {HOW_TO_ALLOW_BY_CIDR}"
    )
    second = webhook("s", f"http://second.test:{port}/b")
    assert await send(WebhookChannel(guard=guard), second) == SendOk("HTTP 204")
    mixed = webhook("m", f"http://mixed.test:{port}/c")
    assert (
        "10.0.0.9 is a private address"
        in refused(await send(WebhookChannel(guard=guard), mixed)).reason
    )
    # what arrived came over connections to the addresses checked, naming the host asked for
    assert [(r.path, r.headers["Host"]) for r in sink.received] == [
        ("/a", f"hooks.test:{port}"),
        ("/b", f"second.test:{port}"),
    ]


async def test_a_connection_to_a_checked_address_is_set_up_as_asyncio_would(sink: Sink) -> None:
    """The client connects a socket of its own; asyncio sets TCP_NODELAY only on one made the way
    getaddrinfo says (IPPROTO_TCP), and without it a request can wait out a delayed ACK."""
    client = HttpClient(guard=LOOPBACK)
    origin = Origin("http", "127.0.0.1", int(sink.base_url.rsplit(":", 1)[1]))
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    try:
        async with asyncio.timeout(10):
            assert (await client.request(origin, request, 64)).status == 204
        [kept] = client._pools[origin].idle  # the connection, kept alive for the next request
        assert kept.transport is not None
        sock = kept.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        await client.close()


async def test_a_webhook_asks_for_and_gets_an_answer_as_sent() -> None:
    seen: list[str] = []

    async def gzipped(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        body = gzip.compress(b"the decompressed words")
        return web.Response(status=500, body=body, headers={"Content-Encoding": "gzip"})

    async with serve(gzipped) as url:
        result = await send(WebhookChannel(guard=LOOPBACK), webhook("g", f"{url}/g"))
    assert seen == ["identity"]
    assert isinstance(result, SendFailed)
    assert result.reason.startswith(f"HTTP 500 from {url}")
    assert "decompressed" not in result.reason


async def test_an_answer_that_trickles_in_is_cut_by_the_whole_request_deadline() -> None:
    """A target that sends its head at once and then a byte at a time keeps every read busy:
    only a deadline on the whole request ends it."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(400):  # 20 s at most, should the client never give up
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass  # the client gave up: what the test waits for
        finally:
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = {"type": "webhook", "url": f"http://127.0.0.1:{port}/t", "timeout_s": 0.5}
    try:
        result = await send(WebhookChannel(guard=LOOPBACK), subscription("t", target))
    finally:
        server.close()
        await server.wait_closed()
    assert result == SendFailed(
        f"timed out after 0.5s posting to http://127.0.0.1:{port}", True, timed_out=True
    )


def render(_delivery: Delivery) -> SlackMessage:
    return SlackMessage(text="t", blocks=[])


def hook_sub(url: str) -> Subscription:
    return subscription("hook", {"type": "slack_webhook", "url": url, "timeout_s": 5})


async def test_slack_targets_are_refused_before_connecting() -> None:
    metadata = SlackChannel(SlackSettings(api_url="http://169.254.169.254/api/"), render)
    token = subscription("bot", {"type": "slack", "token": "xoxb-1-secret", "channel": "#d"})
    assert refused(await send(metadata, token)).reason == (
        "slack chat.postMessage to #d: not posting to http://169.254.169.254: "
        f"169.254.169.254 is a cloud metadata address; {HOW_TO_ALLOW_BY_CIDR}"
    )
    hooks = SlackWebhookChannel(render)  # public addresses only: the stand-in's is loopback
    async with SlackWebhookStandin() as standin:
        url = standin.hook("/services/T0/B0/H00KSECRET")
        assert "127.0.0.1 is a loopback address" in refused(await send(hooks, hook_sub(url))).reason
        assert standin.posts == []


async def test_a_slack_name_resolves_through_the_guard() -> None:
    lookup = names_resolving({"hooks.test": [["127.0.0.1"]], "private.test": [["10.1.2.3"]]})
    guard = NetworkGuard.of(["127.0.0.0/8"], lookup=lookup)
    async with SlackWebhookStandin() as standin:
        path = "/services/T0/B0/H00KSECRET"
        standin.hook(path)
        named = f"http://hooks.test:{standin.port}{path}"
        assert await send(SlackWebhookChannel(render, guard=guard), hook_sub(named)) == SendOk("ok")
        elsewhere = f"http://private.test:{standin.port}{path}"
        result = await send(SlackWebhookChannel(render, guard=guard), hook_sub(elsewhere))
        assert "10.1.2.3 is a private address" in refused(result).reason
        assert [post.headers["Host"] for post in standin.posts] == [f"hooks.test:{standin.port}"]


async def test_a_slack_answer_is_bounded_never_decompressed_and_never_a_redirect() -> None:
    arrived: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        arrived.append((request.path, request.headers.get("Accept-Encoding", "")))
        if request.path == "/redirect":
            raise web.HTTPFound("/elsewhere")
        if request.path == "/gzip":
            body = gzip.compress(b"invalid_payload")
            return web.Response(status=400, body=body, headers={"Content-Encoding": "gzip"})
        response = web.StreamResponse(status=200)  # chunked: no length to refuse it by
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(200):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    async with serve(handle) as url:
        redirected = await send(
            SlackWebhookChannel(render, guard=LOOPBACK), hook_sub(f"{url}/redirect")
        )
        gzipped = await send(SlackWebhookChannel(render, guard=LOOPBACK), hook_sub(f"{url}/gzip"))
        large = await send(SlackWebhookChannel(render, guard=LOOPBACK), hook_sub(f"{url}/large"))
    assert arrived == [("/redirect", "identity"), ("/gzip", "identity"), ("/large", "identity")]
    assert isinstance(redirected, SendFailed)
    assert not redirected.retryable
    assert "HTTP 302" in redirected.reason
    assert "does not follow redirects" in redirected.reason
    # decompressed, the answer would be Slack's error code
    assert gzipped == SendFailed(f"Slack incoming webhook at {url}: HTTP 400", retryable=False)
    assert large == SendFailed(
        f"Slack incoming webhook at {url}: posting failed: the answer is larger than 65536 bytes",
        retryable=True,
    )


async def test_config_load_refuses_a_forbidden_literal_host(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "subscriptions:\n"
        "  - name: broker-port\n"
        "    events: ['*']\n"
        "    target:\n"
        "      type: webhook\n"
        "      url: http://127.0.0.1:5672/?token=query-secret\n"
    )
    for command in ("check-config", "test-target"):
        extra = ["broker-port"] if command == "test-target" else []
        code, out, err = await run_cli(command, "--config", str(config), *extra)
        assert code == 2, (out, err)
        assert (
            f"{config}:6: subscriptions[broker-port].target.url: refused: 127.0.0.1 is a "
            "loopback address" in err
        )
        assert "query-secret" not in out + err


async def test_the_api_refuses_a_forbidden_literal_host_with_422(
    tmp_path: Path, names: BrokerNames, sink: Sink
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [],
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        store={"url": f"sqlite:///{tmp_path / 'subs.db'}"},
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    metadata = {"type": "webhook", "url": "http://169.254.169.254/latest/?token=query-secret"}
    async with (
        running(config) as app,
        aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        api = f"{app.servers[0].url}/api/v1/subscriptions"
        body = {"name": "meta", "events": ["*"], "target": metadata}
        async with http.post(api, json=body) as response:
            assert response.status == 422
            error = (await response.json())["error"]
        assert error == {
            "code": "invalid",
            "message": (
                f"refused: 169.254.169.254 is a cloud metadata address; {HOW_TO_ALLOW_BY_CIDR}"
            ),
            "field": "target.url",
        }
        # loopback is allowed in this config; a patch to another forbidden host is refused
        allowed = {
            "name": "ok",
            "events": ["*"],
            "target": {"type": "webhook", "url": sink.url("/")},
        }
        async with http.post(api, json=allowed) as response:
            assert response.status == 201, await response.text()
        patch = {"target": {"url": "http://10.0.0.1:80/"}}
        async with http.patch(f"{api}/ok", json=patch) as response:
            assert response.status == 422
            text = await response.text()
        assert "10.0.0.1 is a private address" in json.loads(text)["error"]["message"]


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """An aiohttp server on loopback answering every path with `handler`; its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
