"""Real HTTP servers on 127.0.0.1 standing in for Slack: the Web API's `chat.postMessage` and
incoming webhooks, answering the way Slack does and recording what they accepted.

Shared by the channel tests and the end-to-end tests through the daemon:

    async with SlackApiStandin(tokens={"xoxb-1"}, channels={"deploys"}) as slack:
        settings = SlackSettings(api_url=slack.api_url)
        ...
        await slack.wait_for_posts(1)
        assert slack.posts[0].text == "..."
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

#: Slack's answers to an incoming webhook it refuses: the error text and its HTTP status.
WEBHOOK_ERRORS: Mapping[str, int] = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "too_many_attachments": 400,
    "no_service_id": 400,
    "no_team": 400,
    "no_text": 400,
    "invalid_blocks": 400,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "team_disabled": 403,
    "invalid_token": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "channel_is_archived": 410,
    "rate_limited": 429,
    "internal_error": 500,
}


@dataclass(frozen=True)
class Answer:
    """A fixed answer: `body` a dict (sent as JSON) or a str (sent as text)."""

    status: int
    body: dict[str, Any] | str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        if isinstance(self.body, dict):
            return web.json_response(self.body, status=self.status, headers=self.headers)
        return web.Response(status=self.status, text=self.body, headers=self.headers)


@dataclass(frozen=True)
class ApiPost:
    """One `chat.postMessage` call as received: `channel` as posted, `channel_id` as resolved
    (empty when unknown), `blocks` parsed from JSON whether the call was JSON or a form."""

    token: str | None
    channel: str
    channel_id: str
    text: str | None
    blocks: Any
    username: str | None
    icon_emoji: str | None
    icon_url: str | None
    unfurl_links: bool | None
    fields: dict[str, Any]
    peer: Any  # the client's (host, port): the same port means the same pooled connection


@dataclass(frozen=True)
class WebhookPost:
    """One incoming-webhook POST as received."""

    path: str
    payload: Any  # the parsed JSON, or None when the body was not JSON
    headers: dict[str, str]


class _Server:
    """An aiohttp app on an ephemeral loopback port, with a bounded wait for arrivals."""

    def __init__(self) -> None:
        self.port = 0
        self._forced: Answer | None = None
        self._hanging = False
        self._release = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(
        self,
        status: int,
        body: dict[str, Any] | str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer every following request with this (a dict body as JSON), after recording it."""
        self._forced = Answer(status, body, headers or {})

    def hang(self) -> None:
        """Hold every following request unanswered until `stop()` or `reset()`."""
        self._hanging = True

    def reset(self) -> None:
        """Answer normally again; requests held by `hang()` end with HTTP 503."""
        self._forced, self._hanging = None, False
        self._release.set()
        self._release = asyncio.Event()

    async def start(self) -> Self:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _record(self, append: Callable[[], None]) -> web.Response | None:
        """Record an arrival; then a forced answer or a hang, if one is set."""
        async with self._arrived:
            append()
            self._arrived.notify_all()
        if self._hanging:
            await self._release.wait()  # the event as it was: reset() swaps in a new one
            return web.Response(status=503)
        return self._forced.response() if self._forced is not None else None

    async def _wait(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout_s), self._arrived:
                await self._arrived.wait_for(ready)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}") from None


class SlackApiStandin(_Server):
    """Slack's Web API `chat.postMessage`, served at `{api_url}chat.postMessage`.

    Knows its valid bot tokens and channels (by name, `#name` or id); answers `ok: false` with
    HTTP 200 for `not_authed`, `invalid_auth`, `channel_not_found`, `not_in_channel`,
    `is_archived`, `no_text` and `invalid_blocks`, and HTTP 429 `ratelimited` with `Retry-After: 1`
    to a second post to one channel within `per_channel_s` of the last accepted one (by `clock`).
    `received` holds every call, `posts` the accepted ones.
    """

    def __init__(
        self,
        *,
        tokens: Iterable[str] = ("xoxb-standin-token",),
        channels: Iterable[str] = ("deploys",),
        not_in_channel: Iterable[str] = (),
        archived: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        per_channel_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.clock = clock
        self.per_channel_s = per_channel_s
        self.channel_ids: dict[str, str] = {}
        for number, name in enumerate(
            dict.fromkeys([*channels, *not_in_channel, *archived]), start=1
        ):
            self.channel_ids[name.lstrip("#")] = f"C{number:08d}"
        self.not_in_channel = {self.channel_ids[n.lstrip("#")] for n in not_in_channel}
        self.archived = {self.channel_ids[n.lstrip("#")] for n in archived}
        self.received: list[ApiPost] = []
        self.posts: list[ApiPost] = []
        self._last_post: dict[str, float] = {}
        self._ts = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"{self.origin}/api/"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat.postMessage", self._post_message)

    async def wait_for_posts(self, count: int, timeout_s: float = 10.0) -> list[ApiPost]:
        """Wait until at least `count` posts were accepted; fail after `timeout_s`."""
        await self._wait(lambda: len(self.posts) >= count, timeout_s, f"{count} Slack posts")
        return self.posts

    async def wait_for_calls(self, count: int, timeout_s: float = 10.0) -> list[ApiPost]:
        """Wait until at least `count` calls arrived, accepted or not."""
        await self._wait(lambda: len(self.received) >= count, timeout_s, f"{count} Slack calls")
        return self.received

    def _resolve(self, channel: str) -> str:
        if channel in self.channel_ids.values():
            return channel
        return self.channel_ids.get(channel.lstrip("#"), "")

    async def _post_message(self, request: web.Request) -> web.Response:
        fields, blocks = await _api_fields(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else fields.get("token")
        channel = str(fields.get("channel", ""))
        post = ApiPost(
            token=token,
            channel=channel,
            channel_id=self._resolve(channel),
            text=fields.get("text"),
            blocks=blocks,
            username=fields.get("username"),
            icon_emoji=fields.get("icon_emoji"),
            icon_url=fields.get("icon_url"),
            unfurl_links=_flag(fields.get("unfurl_links")),
            fields=fields,
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        forced = await self._record(lambda: self.received.append(post))
        if forced is not None:
            return forced
        error = self._refusal(post)
        if error is not None:
            return web.json_response({"ok": False, "error": error})
        now = self.clock()
        last = self._last_post.get(post.channel_id)
        if last is not None and now - last < self.per_channel_s:
            body = {"ok": False, "error": "ratelimited"}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        async with self._arrived:
            self._last_post[post.channel_id] = now
            self.posts.append(post)
            self._arrived.notify_all()
        ts = f"1700000000.{next(self._ts):06d}"
        message = {"type": "message", "text": post.text or "", "ts": ts}
        return web.json_response(
            {"ok": True, "channel": post.channel_id, "ts": ts, "message": message}
        )

    def _refusal(self, post: ApiPost) -> str | None:
        if not post.token:
            return "not_authed"
        if post.token not in self.tokens:
            return "invalid_auth"
        if not post.channel_id:
            return "channel_not_found"
        if post.channel_id in self.not_in_channel:
            return "not_in_channel"
        if post.channel_id in self.archived:
            return "is_archived"
        if post.blocks is not None and not _valid_blocks(post.blocks):
            return "invalid_blocks"
        if not post.text and not post.blocks:
            return "no_text"
        return None


class SlackWebhookStandin(_Server):
    """Slack incoming webhooks: one URL per `hook()`, each answering "ok" (HTTP 200) to a JSON
    payload with `text` or `blocks`, `invalid_payload` (400) to anything else, `no_service`
    (404) at an unknown path, or the error `fail()` set, with Slack's status for it."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[WebhookPost] = []
        self._hooks: dict[str, Answer | None] = {}

    @property
    def url(self) -> str:
        return self.origin

    def hook(self, path: str = "/services/T0STANDIN/B0STANDIN/hook-secret") -> str:
        """Make a hook answer at `path`; returns its full URL."""
        self._hooks[path] = None
        return f"{self.origin}{path}"

    def fail(
        self,
        path: str,
        error: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the hook at `path` refuse every post with Slack's `error` text and its status
        (from WEBHOOK_ERRORS unless given)."""
        self._hooks[path] = Answer(status or WEBHOOK_ERRORS[error], error, headers or {})

    def at(self, path: str) -> list[WebhookPost]:
        return [post for post in self.posts if post.path == path]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._receive)

    async def wait_for_posts(self, count: int, timeout_s: float = 10.0) -> list[WebhookPost]:
        """Wait until at least `count` posts arrived, answered ok or not; bounded by `timeout_s`."""
        await self._wait(lambda: len(self.posts) >= count, timeout_s, f"{count} webhook posts")
        return self.posts

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        post = WebhookPost(request.path, payload, dict(request.headers))
        forced = await self._record(lambda: self.posts.append(post))
        if forced is not None:
            return forced
        if request.path not in self._hooks:
            return web.Response(status=404, text="no_service")
        refusal = self._hooks[request.path]
        if refusal is not None:
            return refusal.response()
        if not _valid_webhook_payload(payload):
            return web.Response(status=400, text="invalid_payload")
        return web.Response(text="ok")


async def _api_fields(request: web.Request) -> tuple[dict[str, Any], Any]:
    """The call's arguments, from a JSON body or a form, and its blocks parsed from JSON."""
    if request.content_type == "application/json":
        fields = await request.json()
        fields = fields if isinstance(fields, dict) else {}
        blocks = fields.get("blocks")
    else:
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        blocks = fields.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            blocks = {"unparseable": blocks}
    return fields, blocks


def _flag(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true")


def _valid_blocks(blocks: Any) -> bool:
    return isinstance(blocks, list) and all(
        isinstance(block, dict) and isinstance(block.get("type"), str) for block in blocks
    )


def _valid_webhook_payload(payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    text, blocks = payload.get("text"), payload.get("blocks")
    has_text = isinstance(text, str) and bool(text.strip())
    return (has_text or bool(blocks)) and (blocks is None or _valid_blocks(blocks))
