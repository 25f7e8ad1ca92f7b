"""SlackChannel and SlackWebhookChannel against real stand-ins for Slack on loopback: what
arrives, and how every answer (or none) is classified, with no token or webhook URL path in any
reason, repr or log line."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from structlog.testing import capture_logs

from dispatcher.admin.metrics import Metrics
from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
from dispatcher.channels.slack import SlackChannel, SlackWebhookChannel
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.outcome import Delivered, RetryLater
from dispatcher.delivery.ratelimit import LocalRateLimiter
from dispatcher.delivery.retry import RetryPolicy
from dispatcher.events import Event, new_event
from dispatcher.rates import Rate
from dispatcher.render import SlackMessage
from dispatcher.settings import SlackSettings
from dispatcher.subscriptions.models import Subscription
from tests.integration.slack_standin import SlackApiStandin, SlackWebhookStandin
from tests.support import LOOPBACK, as_event

pytestmark = pytest.mark.integration

TOKEN = "xoxb-1111-2222-T0KENSECRET"
OTHER_TOKEN = "xoxb-3333-4444-OTHERSECRET"
HOOK_PATH = "/services/T0TEAM/B0HOOK/H00KSECRET"
LEAKS = (TOKEN, "T0KENSECRET", OTHER_TOKEN, "OTHERSECRET", HOOK_PATH, "H00KSECRET", "/services")
BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Deployment succeeded"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*api* to `production` :rocket:"}},
]
POST = "slack chat.postMessage to"


def render(_delivery: Delivery) -> SlackMessage:
    """A fake renderer: these tests are about sending, not rendering."""
    return SlackMessage(text="t", blocks=BLOCKS)


class FakeClock:
    """The stand-in's clock for its per-channel rate limit, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[SlackApiStandin]:
    standin = SlackApiStandin(
        tokens={TOKEN, OTHER_TOKEN},
        channels=["deploys", "alerts"],
        not_in_channel=["private"],
        archived=["old"],
        clock=clock,
    )
    async with standin:
        yield standin


@pytest.fixture
async def slack(api: SlackApiStandin) -> AsyncIterator[SlackChannel]:
    # The channel makes one attempt and never paces: pacing is the deliverer's (tested below).
    channel = SlackChannel(SlackSettings(api_url=api.api_url), render, guard=LOOPBACK, rate=None)
    yield channel
    await channel.close()


@pytest.fixture
async def hooks() -> AsyncIterator[SlackWebhookStandin]:
    async with SlackWebhookStandin() as standin:
        yield standin


@pytest.fixture
async def webhooks() -> AsyncIterator[SlackWebhookChannel]:
    channel = SlackWebhookChannel(render, guard=LOOPBACK, rate=None)
    yield channel
    await channel.close()


def slack_sub(channel: str = "#deploys", token: str = TOKEN, **target: Any) -> Subscription:
    fields = {"type": "slack", "token": token, "channel": channel, "timeout_s": 5.0, **target}
    return Subscription.model_validate(
        {"name": "shop/deploys", "events": ["deployment.succeeded"], "target": fields}
    )


def hook_sub(url: str, timeout_s: float = 5.0) -> Subscription:
    target = {"type": "slack_webhook", "url": url, "timeout_s": timeout_s}
    return Subscription.model_validate(
        {"name": "shop/deploys", "events": ["deployment.succeeded"], "target": target}
    )


def event() -> Event:
    as_dict = new_event("deployment.succeeded", "/seeds/deployments", id="evt-1", data={"a": 1})
    return as_event(as_dict)


async def send(channel: SlackChannel | SlackWebhookChannel, sub: Subscription) -> SendResult:
    async with asyncio.timeout(10):
        return await channel.send(Delivery.of(event(), sub))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def assert_no_leak(text: str) -> None:
    for secret in LEAKS:
        assert secret not in text


def failed(result: SendResult) -> SendFailed:
    assert isinstance(result, SendFailed), result
    assert "\n" not in result.reason
    assert_no_leak(result.reason)
    return result


# --- Web API: chat.postMessage ------------------------------------------------------------


async def test_posts_what_was_rendered(api: SlackApiStandin, slack: SlackChannel) -> None:
    sub = slack_sub(username="Deploy bot", icon_emoji=":rocket:")
    result = await send(slack, sub)

    channel_id = api.channel_ids["deploys"]
    assert result == SendOk(f"ok, ts=1700000000.000001, channel={channel_id}")
    (post,) = await api.wait_for_posts(1)
    assert post.token == TOKEN
    assert (post.channel, post.channel_id) == ("#deploys", channel_id)
    assert (post.username, post.icon_emoji, post.icon_url) == ("Deploy bot", ":rocket:", None)
    assert post.text == "t"
    assert post.blocks == BLOCKS
    assert post.unfurl_links is False


async def test_posts_an_icon_url_and_to_a_channel_id(
    api: SlackApiStandin, slack: SlackChannel
) -> None:
    channel_id = api.channel_ids["alerts"]
    sub = slack_sub(channel_id, icon_url="https://example.com/icon.png")
    assert isinstance(await send(slack, sub), SendOk)
    (post,) = api.posts
    assert (post.channel, post.icon_url, post.username) == (
        channel_id,
        "https://example.com/icon.png",
        None,
    )
    assert "icon_emoji" not in post.fields  # what the target leaves out is not sent at all


@pytest.mark.parametrize(
    ("channel", "token", "error"),
    [
        ("#deploys", "xoxb-9999-WRONG", "invalid_auth"),
        ("#nowhere", TOKEN, "channel_not_found"),
        ("#private", TOKEN, "not_in_channel"),
        ("old", TOKEN, "is_archived"),
    ],
)
async def test_refusals_are_permanent(
    api: SlackApiStandin, slack: SlackChannel, channel: str, token: str, error: str
) -> None:
    result = failed(await send(slack, slack_sub(channel, token)))

    assert result == SendFailed(f"{POST} {channel}: {error}", retryable=False)
    assert len(api.received) == 1  # one attempt: the SDK's own retries are off
    assert api.received[0].token == token
    assert api.posts == []


async def test_a_second_post_within_a_second_is_rate_limited(
    api: SlackApiStandin, slack: SlackChannel, clock: FakeClock
) -> None:
    first = await send(slack, slack_sub("#deploys"))
    second = await send(slack, slack_sub("#deploys"))
    other_channel = await send(slack, slack_sub("#alerts"))
    clock.now += 1.0
    after_a_second = await send(slack, slack_sub("#deploys"))

    assert isinstance(first, SendOk)
    assert failed(second) == SendFailed(
        f"{POST} #deploys: ratelimited (HTTP 429)", retryable=True, retry_after_s=1.0
    )
    assert isinstance(other_channel, SendOk)
    assert isinstance(after_a_second, SendOk)
    assert len(api.received) == 4
    assert [post.channel for post in api.posts] == ["#deploys", "#alerts", "#deploys"]


async def test_posts_to_one_channel_are_paced_so_a_burst_all_arrives() -> None:
    """Three posts to #deploys at once, to a Slack that refuses a second post within 0.2 s:
    the deliverer paces them 0.3 s apart, none is refused; #alerts does not wait behind them."""
    metrics = Metrics(process=False)
    async with SlackApiStandin(
        tokens=[TOKEN], channels=["deploys", "alerts"], per_channel_s=0.2
    ) as api:
        channel = SlackChannel(
            SlackSettings(api_url=api.api_url), render, guard=LOOPBACK, rate=Rate(1 / 0.3)
        )
        deliverer = Deliverer({"slack": channel}, RetryPolicy(attempts=1), metrics=metrics)
        try:
            async with asyncio.timeout(10):
                outcomes = await asyncio.gather(
                    *(
                        deliverer.deliver(Delivery.of(event(), sub))
                        for sub in [
                            *(slack_sub("#deploys") for _ in range(3)),
                            slack_sub("#alerts"),
                        ]
                    )
                )
        finally:
            await channel.close()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes), outcomes
    waits = metrics.registry.get_sample_value(
        "dispatcher_rate_limit_waits_total", {"target_type": "slack"}
    )
    assert waits == 2  # the second and third post to #deploys; #alerts went at once
    assert len(api.received) == 4  # no 429 among them
    assert sorted(post.channel for post in api.posts) == [
        "#alerts",
        "#deploys",
        "#deploys",
        "#deploys",
    ]


async def test_a_429_holds_the_channel_back_for_its_retry_after(api: SlackApiStandin) -> None:
    channel = SlackChannel(SlackSettings(api_url=api.api_url), render, guard=LOOPBACK)
    limiter = LocalRateLimiter()
    deliverer = Deliverer({"slack": channel}, RetryPolicy(attempts=1), limiter=limiter)
    api.answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"})
    delivery = Delivery.of(event(), slack_sub("#deploys"))
    try:
        outcome = await deliverer.deliver(delivery)
    finally:
        await channel.close()
    assert isinstance(outcome, RetryLater)  # 30 s is longer than a delivery is held in process
    key = channel.target_key(delivery)
    assert key.startswith("slack:")
    assert TOKEN not in key
    assert (await limiter.reserve(key, Rate(1.0), 60.0) or 0) == pytest.approx(30.0, abs=0.5)


@pytest.mark.parametrize(
    ("status", "body", "headers", "detail", "retryable", "retry_after_s"),
    [
        (500, "<html>oops</html>", {}, "HTTP 500", True, None),
        (502, {"ok": False}, {}, "HTTP 502", True, None),
        (503, {"ok": False, "error": "something_new"}, {}, "something_new (HTTP 503)", True, None),
        (200, {"ok": False, "error": "internal_error"}, {}, "internal_error", True, None),
        (200, {"ok": False, "error": "fatal_error"}, {}, "fatal_error", True, None),
        (200, {"ok": False, "error": "request_timeout"}, {}, "request_timeout", True, None),
        (200, {"ok": False, "error": "service_unavailable"}, {}, "service_unavailable", True, None),
        (
            429,
            {"ok": False, "error": "ratelimited"},
            {"Retry-After": "30"},
            "ratelimited (HTTP 429)",
            True,
            30.0,
        ),
        (
            200,
            {"ok": False, "error": "missing_scope", "needed": "chat:write", "provided": "x"},
            {},
            "missing_scope (needed: chat:write)",
            False,
            None,
        ),
        (200, {"ok": False, "error": "token_revoked"}, {}, "token_revoked", False, None),
        (200, {"ok": False, "error": "msg_too_long"}, {}, "msg_too_long", False, None),
        (200, {"ok": False, "error": "invalid_blocks"}, {}, "invalid_blocks", False, None),
        (200, {"ok": False, "error": "something_new"}, {}, "something_new", False, None),
        (200, {"ok": False, "error": f"bad token {TOKEN}"}, {}, "unexpected answer", False, None),
        (
            200,
            "<html>portal</html>",
            {"Content-Type": "text/html"},
            "unexpected answer",
            False,
            None,
        ),
        (200, "ok", {}, "unexpected AttributeError", False, None),  # text/plain: the SDK trips
    ],
)
async def test_classifies_api_answers(
    api: SlackApiStandin,
    slack: SlackChannel,
    status: int,
    body: dict[str, Any] | str,
    headers: dict[str, str],
    detail: str,
    retryable: bool,
    retry_after_s: float | None,
) -> None:
    api.answer(status, body, headers)
    result = failed(await send(slack, slack_sub()))

    assert result == SendFailed(f"{POST} #deploys: {detail}", retryable, retry_after_s)
    assert len(api.received) == 1


async def test_connection_refused_is_retryable() -> None:
    port = free_port()
    slack = SlackChannel(
        SlackSettings(api_url=f"http://127.0.0.1:{port}/api/"), render, guard=LOOPBACK
    )
    try:
        result = failed(await send(slack, slack_sub()))
    finally:
        await slack.close()
    reason = f"{POST} #deploys: cannot connect to http://127.0.0.1:{port}: Connection refused"
    assert result == SendFailed(reason, retryable=True)


async def test_no_answer_times_out_retryably(api: SlackApiStandin, slack: SlackChannel) -> None:
    api.hang()  # released when the stand-in stops
    result = failed(await send(slack, slack_sub(timeout_s=0.2)))

    assert result == SendFailed(f"{POST} #deploys: timed out after 0.2s", True, timed_out=True)
    assert len(await api.wait_for_calls(1)) == 1


async def test_tokens_share_one_pooled_session(api: SlackApiStandin, slack: SlackChannel) -> None:
    results = [
        await send(slack, slack_sub("#deploys", TOKEN)),
        await send(slack, slack_sub("#alerts", OTHER_TOKEN)),
    ]

    assert all(isinstance(result, SendOk) for result in results)
    first, second = api.posts
    assert (first.token, second.token) == (TOKEN, OTHER_TOKEN)
    assert first.peer == second.peer  # the same keep-alive connection


async def test_a_given_session_is_left_open(api: SlackApiStandin) -> None:
    async with aiohttp.ClientSession() as session:
        slack = SlackChannel(SlackSettings(api_url=api.api_url), render, session=session)
        assert isinstance(await send(slack, slack_sub()), SendOk)
        await slack.close()
        assert not session.closed


async def test_send_after_close_fails_without_posting(
    api: SlackApiStandin, slack: SlackChannel
) -> None:
    await slack.close()
    result = failed(await send(slack, slack_sub()))
    assert result.retryable
    assert api.received == []


async def test_a_failing_renderer_is_a_permanent_failure(api: SlackApiStandin) -> None:
    def broken(_delivery: Delivery) -> SlackMessage:
        raise ValueError("template error")

    slack = SlackChannel(SlackSettings(api_url=api.api_url), broken, guard=LOOPBACK)
    try:
        result = failed(await send(slack, slack_sub()))
    finally:
        await slack.close()
    assert result == SendFailed(f"{POST} #deploys: cannot render the message (ValueError)", False)
    assert api.received == []


async def test_refuses_a_target_of_another_type(slack: SlackChannel) -> None:
    with pytest.raises(TypeError, match="slack_webhook"):
        await send(slack, hook_sub("https://hooks.slack.com/services/T/B/x"))


async def test_the_token_is_in_no_log_line_or_repr(
    api: SlackApiStandin, slack: SlackChannel, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK logs requests at debug level (the webhook URL among them): its logger is ours and
    silent, so nothing reaches the stdlib or structlog; the reason names no token either."""
    caplog.set_level(logging.DEBUG)
    api.answer(200, {"ok": False, "error": "invalid_auth"})
    with capture_logs() as logs:
        result = failed(await send(slack, slack_sub()))

    assert "invalid_auth" in result.reason
    assert_no_leak(caplog.text + repr(logs) + result.reason)
    assert_no_leak(repr(slack))


async def test_api_standin_reads_a_form_post_too(api: SlackApiStandin) -> None:
    form = {"channel": "#alerts", "text": "t", "blocks": json.dumps(BLOCKS), "unfurl_links": "0"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(f"{api.api_url}chat.postMessage", data=form, headers=headers) as response,
    ):
        answer = await response.json()

    assert answer == {
        "ok": True,
        "channel": api.channel_ids["alerts"],
        "ts": "1700000000.000001",
        "message": {"type": "message", "text": "t", "ts": "1700000000.000001"},
    }
    (post,) = api.posts
    assert (post.token, post.blocks, post.unfurl_links) == (TOKEN, BLOCKS, False)


async def test_standin_waits_are_bounded(api: SlackApiStandin) -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for 1 Slack posts"):
        await api.wait_for_posts(1, timeout_s=0.05)


# --- incoming webhooks ----------------------------------------------------------------------


async def test_webhook_posts_what_was_rendered(
    hooks: SlackWebhookStandin, webhooks: SlackWebhookChannel
) -> None:
    url = hooks.hook(HOOK_PATH)
    assert await send(webhooks, hook_sub(url)) == SendOk("ok")

    (post,) = await hooks.wait_for_posts(1)
    assert post.path == HOOK_PATH
    assert post.payload == {"text": "t", "blocks": BLOCKS, "unfurl_links": False}
    assert post.headers["Content-Type"].startswith("application/json")


async def test_webhook_refuses_an_empty_payload(hooks: SlackWebhookStandin) -> None:
    url = hooks.hook(HOOK_PATH)
    webhooks = SlackWebhookChannel(
        lambda _delivery: SlackMessage(text="", blocks=[]), guard=LOOPBACK
    )
    try:
        result = failed(await send(webhooks, hook_sub(url)))
    finally:
        await webhooks.close()
    reason = f"Slack incoming webhook at {hooks.origin}: invalid_payload (HTTP 400)"
    assert result == SendFailed(reason, retryable=False)
    assert hooks.posts[0].payload == {"text": "", "unfurl_links": False}


@pytest.mark.parametrize(
    ("error", "status", "headers", "detail", "retryable", "retry_after_s"),
    [
        ("invalid_payload", None, {}, "invalid_payload (HTTP 400)", False, None),
        ("action_prohibited", None, {}, "action_prohibited (HTTP 403)", False, None),
        ("invalid_token", None, {}, "invalid_token (HTTP 403)", False, None),
        ("channel_not_found", None, {}, "channel_not_found (HTTP 404)", False, None),
        ("channel_is_archived", None, {}, "channel_is_archived (HTTP 410)", False, None),
        ("rate_limited", None, {"Retry-After": "3"}, "rate_limited (HTTP 429)", True, 3.0),
        ("internal_error", None, {}, "internal_error (HTTP 500)", True, None),
        ("<html>Bad gateway</html>", 502, {}, "HTTP 502", True, None),
        (f"no such hook {HOOK_PATH}", 404, {}, "HTTP 404", False, None),
    ],
)
async def test_classifies_webhook_answers(
    hooks: SlackWebhookStandin,
    webhooks: SlackWebhookChannel,
    error: str,
    status: int | None,
    headers: dict[str, str],
    detail: str,
    retryable: bool,
    retry_after_s: float | None,
) -> None:
    url = hooks.hook(HOOK_PATH)
    hooks.fail(HOOK_PATH, error, status, headers)
    result = failed(await send(webhooks, hook_sub(url)))

    reason = f"Slack incoming webhook at {hooks.origin}: {detail}"
    assert result == SendFailed(reason, retryable, retry_after_s)
    assert len(hooks.posts) == 1  # one attempt: the SDK's own retries are off


async def test_webhook_removed_is_no_service(
    hooks: SlackWebhookStandin, webhooks: SlackWebhookChannel
) -> None:
    result = failed(await send(webhooks, hook_sub(f"{hooks.url}{HOOK_PATH}")))
    reason = f"Slack incoming webhook at {hooks.origin}: no_service (HTTP 404)"
    assert result == SendFailed(reason, retryable=False)


async def test_webhook_connection_refused_is_retryable(webhooks: SlackWebhookChannel) -> None:
    port = free_port()
    result = failed(await send(webhooks, hook_sub(f"http://127.0.0.1:{port}{HOOK_PATH}")))
    reason = (
        f"Slack incoming webhook at http://127.0.0.1:{port}: cannot connect: Connection refused"
    )
    assert result == SendFailed(reason, retryable=True)


async def test_webhook_no_answer_times_out_retryably(
    hooks: SlackWebhookStandin, webhooks: SlackWebhookChannel
) -> None:
    url = hooks.hook(HOOK_PATH)
    hooks.hang()  # released when the stand-in stops
    result = failed(await send(webhooks, hook_sub(url, timeout_s=0.2)))

    reason = f"Slack incoming webhook at {hooks.origin}: timed out after 0.2s"
    assert result == SendFailed(reason, retryable=True, timed_out=True)
    assert len(await hooks.wait_for_posts(1)) == 1


async def test_webhook_url_is_in_no_log_line_or_repr(
    hooks: SlackWebhookStandin, webhooks: SlackWebhookChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = hooks.hook(HOOK_PATH)
    with capture_logs() as logs:
        assert await send(webhooks, hook_sub(url)) == SendOk("ok")
        hooks.fail(HOOK_PATH, "channel_is_archived")
        result = failed(await send(webhooks, hook_sub(url)))

    assert "channel_is_archived" in result.reason
    assert_no_leak(caplog.text + repr(logs) + result.reason)
    assert_no_leak(repr(webhooks))


async def test_webhook_send_after_close_fails_without_posting(
    hooks: SlackWebhookStandin,
) -> None:
    url = hooks.hook(HOOK_PATH)
    webhooks = SlackWebhookChannel(render, guard=LOOPBACK)
    await webhooks.close()
    result = failed(await send(webhooks, hook_sub(url)))
    assert result.retryable
    assert hooks.posts == []


async def test_an_untrusted_certificate_is_named_as_such() -> None:
    """The reason says what TLS refused, not an unrelated errno."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    api_url = f"https://127.0.0.1:{runner.addresses[0][1]}/api/"
    channel = SlackChannel(SlackSettings(api_url=api_url), render, guard=LOOPBACK, rate=None)
    try:
        result = failed(await send(channel, slack_sub()))
    finally:
        await channel.close()
        await runner.cleanup()
    assert result.retryable
    assert result.reason.endswith("unable to get local issuer certificate")
