"""The `slack` and `slack_webhook` targets: post through slack_sdk's async clients (Web API
`chat.postMessage` with a bot token, or an incoming webhook) and classify Slack's answer. Each
post is one attempt; the deliverer paces posts to one channel (`default_rate`, Slack's ~1/s).

The bot token and the incoming-webhook URL (the URL is the credential) never show in a reason,
detail or log line. Reasons are built from Slack's error code and the HTTP status only, never
from the SDK's exception text, which can hold the URL and the whole answer; and the SDK logs to a
logger of its own that drops everything, because at debug level it writes the webhook URL.

The SDK applies its `timeout` only to sessions it makes itself, so each send is bounded here with
`asyncio.timeout(target.timeout_s)`; and it gets no retry handlers: a channel makes one attempt.

The session (`guarded_session`) connects only where the `NetworkGuard` allows (a refused host is
a permanent failure naming the rule), follows no redirect and reads a bounded answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from dispatcher.channels.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Delivery,
    SendFailed,
    SendOk,
    SendResult,
    error_text,
    target_key,
    too_large,
)
from dispatcher.channels.guarded_session import AnswerTooLarge, RedirectRefused, guarded_session
from dispatcher.channels.webhook import origin, parse_retry_after
from dispatcher.netguard import AddressRefused, NetworkGuard
from dispatcher.rates import Rate
from dispatcher.render import SlackMessage
from dispatcher.settings import SlackSettings
from dispatcher.subscriptions.models import SlackTarget, SlackWebhookTarget

Render = Callable[[Delivery], SlackMessage]

#: Slack's limit is about one message a second per channel (incoming webhooks too)
SLACK_RATE = Rate(1.0)
_Client = TypeVar("_Client")

#: Web API errors worth another try; any other error is permanent unless the status is 5xx.
#: Permanent ones seen in practice: invalid_auth, not_authed, token_revoked, token_expired,
#: account_inactive, missing_scope, channel_not_found, not_in_channel, is_archived,
#: msg_too_long, no_text, invalid_blocks, invalid_arguments, restricted_action.
RETRYABLE_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "request_timeout",
        "service_unavailable",
    }
)
_RETRYABLE_STATUSES = frozenset({408, 429})
_CODE = re.compile(r"[a-z][a-z0-9_.:\-]{0,63}")  # what an error code looks like; else not shown
_SCOPES = re.compile(r"[a-z0-9_.:,\-]{1,200}")
_MAX_CLIENTS = 1024  # clients cached (one per token or webhook URL); the oldest goes first


def _quiet_logger() -> logging.Logger:
    """A logger outside the logging tree that drops everything, for the SDK's clients."""
    quiet = logging.Logger("dispatcher.channels.slack.sdk", logging.CRITICAL + 1)
    quiet.disabled = True
    return quiet


def _code(value: object) -> str | None:
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _retryable(status: int | None, code: str | None = None) -> bool:
    return code in RETRYABLE_ERRORS or status in _RETRYABLE_STATUSES or (status or 0) >= 500


def _cause(exc: BaseException) -> str:
    """A short cause from the OS error, never str() of an aiohttp error (it can hold the URL)."""
    err = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(err, AnswerTooLarge):
        return str(err)  # our own words: no URL in them
    if isinstance(err, aiohttp.ClientError) and not (isinstance(err, OSError) and err.errno):
        return type(err).__name__  # its text can hold the URL
    return error_text(err) if isinstance(err, OSError) else type(err).__name__


async def _attempt(
    where: str, timeout_s: float, at: str | None, post: Callable[[], Awaitable[SendResult]]
) -> SendResult:
    """Run one post, bounded in time, turning whatever it raises into a SendFailed. `at` names
    the server when `where` does not already."""
    to = f" to {at}" if at else ""
    try:
        async with asyncio.timeout(timeout_s):
            return await post()
    except TimeoutError:  # also aiohttp's ServerTimeoutError
        return SendFailed(f"{where}: timed out after {timeout_s:g}s", True, timed_out=True)
    except aiohttp.InvalidURL:
        return SendFailed(f"{where}: invalid URL; check the target", retryable=False)
    except RedirectRefused as exc:
        reason = f"{where}: HTTP {exc.status}{' from ' + at if at else ''}: dispatcher does not "
        return SendFailed(reason + "follow redirects; configure the final URL", retryable=False)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, AddressRefused):  # the config must change: no retry passes
            return SendFailed(f"{where}: not posting{to}: {exc.os_error}", retryable=False)
        return SendFailed(f"{where}: cannot connect{to}: {_cause(exc)}", retryable=True)
    except (aiohttp.ClientError, OSError) as exc:
        return SendFailed(f"{where}: posting{to} failed: {_cause(exc)}", retryable=True)
    except Exception as exc:  # noqa: BLE001 - a send never raises; e.g. an answer the SDK cannot parse
        return SendFailed(f"{where}: unexpected {type(exc).__name__}", retryable=False)


class _SlackChannelBase(Generic[_Client]):
    """The pooled session, the bounded client cache and `close()`, shared by both channels.
    The session made here connects where `guard` allows (default: public addresses only)."""

    _web_api = False  # the session reads Web API answers (larger: they echo the message)

    def __init__(
        self,
        render: Render,
        *,
        session: aiohttp.ClientSession | None = None,
        guard: NetworkGuard | None = None,
        clock: Callable[[], float] = time.time,
        rate: Rate | None = SLACK_RATE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if session is not None and guard is not None:
            raise ValueError("a session passed in brings its own guard; pass one or the other")
        self._guard = guard or NetworkGuard()
        self._render = render
        self._rate = rate
        self._max_message_bytes = max_message_bytes
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sdk_log = _quiet_logger()
        self._clients: dict[str, _Client] = {}
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = guarded_session(self._guard, web_api=self._web_api)
        return self._session

    def _unusable(self) -> bool:
        return self._closed or (self._session is not None and self._session.closed)

    def _cached(self, secret: str, make: Callable[[aiohttp.ClientSession], _Client]) -> _Client:
        """The client for this secret, keyed by its hash so the key itself holds nothing."""
        key = hashlib.sha256(secret.encode()).hexdigest()
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= _MAX_CLIENTS:
                del self._clients[next(iter(self._clients))]
            client = self._clients[key] = make(self._get_session())
        return client

    def default_rate(self, delivery: Delivery) -> Rate | None:
        """Slack's pace for one channel or incoming webhook (`slack.rate_limit`)."""
        return self._rate

    def _message(self, delivery: Delivery, where: str) -> SlackMessage | SendFailed:
        try:
            message = self._render(delivery)
        except Exception as exc:  # noqa: BLE001 - a template that fails fails every time: report it
            return SendFailed(f"{where}: cannot render the message ({type(exc).__name__})", False)
        # As the SDK encodes it (json, ASCII); posts are paced per channel, so this is cheap.
        size = len(json.dumps([message.text, message.blocks]))
        if size > self._max_message_bytes:
            return too_large(where, size, self._max_message_bytes)
        return message

    async def close(self) -> None:
        self._closed = True
        self._clients.clear()
        if self._owns_session and self._session is not None:
            await self._session.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} clients={len(self._clients)} closed={self._closed}>"


class SlackChannel(_SlackChannelBase[AsyncWebClient]):
    """Delivers to `slack` targets with `chat.postMessage`: one AsyncWebClient per bot token,
    all on one pooled session.

    Without a `session` it makes its own on first use (inside the running loop) and closes it in
    `close()`; a session passed in belongs to the caller and is left open.
    """

    _web_api = True

    def __init__(
        self,
        settings: SlackSettings,
        render: Render,
        *,
        session: aiohttp.ClientSession | None = None,
        guard: NetworkGuard | None = None,
        clock: Callable[[], float] = time.time,
        rate: Rate | None = SLACK_RATE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(
            render,
            session=session,
            guard=guard,
            clock=clock,
            rate=rate,
            max_message_bytes=max_message_bytes,
        )
        self._api_url = settings.api_url
        self._at = origin(settings.api_url)

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        if not isinstance(target, SlackTarget):
            raise TypeError(f"SlackChannel cannot send to a {target.type!r} target")
        where = f"slack chat.postMessage to {target.channel}"
        if self._unusable():
            return SendFailed(f"{where}: not posting, {type(self).__name__} is closed", True)
        message = self._message(delivery, where)
        if isinstance(message, SendFailed):
            return message
        token = target.token.get_secret_value()
        client = self._cached(
            token,
            lambda session: AsyncWebClient(
                token=token,
                base_url=self._api_url,
                session=session,
                timeout=math.ceil(target.timeout_s),
                logger=self._sdk_log,
                retry_handlers=[],
            ),
        )

        async def post() -> SendResult:
            try:
                response = await client.chat_postMessage(
                    channel=target.channel,
                    text=message.text,
                    blocks=message.blocks or None,
                    username=target.username,
                    icon_emoji=target.icon_emoji,
                    icon_url=target.icon_url,
                    unfurl_links=False,
                )
            except SlackApiError as exc:
                return self._api_failure(where, exc.response)
            ts, channel = response.get("ts"), response.get("channel")
            return SendOk(f"ok, ts={ts}" + (f", channel={channel}" if channel else ""))

        return await _attempt(where, target.timeout_s, self._at, post)

    def target_key(self, delivery: Delivery) -> str:
        target = delivery.subscription.target
        assert isinstance(target, SlackTarget)
        return target_key("slack", f"{target.token.get_secret_value()}\0{target.channel}")

    def _api_failure(self, where: str, response: Any) -> SendFailed:
        """Classify an answer the SDK refused: an AsyncSlackResponse (`ok: false` or not HTTP
        200), or the raw aiohttp response when the body was not JSON."""
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        status = status if isinstance(status, int) else None
        data = getattr(response, "data", None)
        data = data if isinstance(data, Mapping) else {}
        code = _code(data.get("error"))
        detail = code or (f"HTTP {status}" if status not in (None, 200) else "unexpected answer")
        needed = data.get("needed")
        if code == "missing_scope" and isinstance(needed, str) and _SCOPES.fullmatch(needed):
            detail += f" (needed: {needed})"
        if code and status not in (None, 200):
            detail += f" (HTTP {status})"
        headers = getattr(response, "headers", None)
        retry_after = headers.get("Retry-After") if isinstance(headers, Mapping) else None
        return SendFailed(
            f"{where}: {detail}",
            retryable=_retryable(status, code),
            retry_after_s=parse_retry_after(
                retry_after if isinstance(retry_after, str) else None, self._clock()
            ),
        )


class SlackWebhookChannel(_SlackChannelBase[AsyncWebhookClient]):
    """Delivers to `slack_webhook` targets (incoming webhooks) through one pooled session.

    `AsyncWebhookClient.send` returns an error answer rather than raising; it is classified here
    from the status and Slack's error code (`invalid_payload`, `channel_is_archived`, ...). The
    URL is the credential: reasons name only its origin.
    """

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        if not isinstance(target, SlackWebhookTarget):
            raise TypeError(f"SlackWebhookChannel cannot send to a {target.type!r} target")
        url = target.url.get_secret_value()
        at = origin(url)
        where = f"Slack incoming webhook at {at}"
        if self._unusable():
            return SendFailed(f"{where}: not posting, {type(self).__name__} is closed", True)
        message = self._message(delivery, where)
        if isinstance(message, SendFailed):
            return message
        client = self._cached(
            url,
            lambda session: AsyncWebhookClient(
                url=url,
                session=session,
                timeout=math.ceil(target.timeout_s),
                logger=self._sdk_log,
                retry_handlers=[],
            ),
        )

        async def post() -> SendResult:
            response = await client.send(
                text=message.text, blocks=message.blocks or None, unfurl_links=False
            )
            status, body = response.status_code, (response.body or "").strip()
            if 200 <= status < 300:
                return SendOk("ok" if body == "ok" else f"HTTP {status}")
            code = _code(body)
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            reason = f"{where}: {code} (HTTP {status})" if code else f"{where}: HTTP {status}"
            return SendFailed(reason, _retryable(status), retry_after)

        return await _attempt(where, target.timeout_s, None, post)

    def target_key(self, delivery: Delivery) -> str:
        target = delivery.subscription.target
        assert isinstance(target, SlackWebhookTarget)
        return target_key("slack_webhook", target.url.get_secret_value())
