"""The `webhook` target: POSTs the event as a structured CloudEvent, signed the Standard Webhooks
way (`webhook-id`, `webhook-timestamp`, `webhook-signature`), and classifies the answer.

The event's bytes go out as they came in (no re-encoding), over dispatcher's own small keep-alive
HTTP/1.1 client (`dispatcher.channels.httpclient`, which says why it is not aiohttp's).

A webhook URL often carries a token in its path or query and credentials in its userinfo, so
nothing here (reason, detail, repr) shows more of it than `origin(url)`: scheme://host[:port].

The client connects only to addresses its `NetworkGuard` allows (`delivery.allowed_networks`);
a refused host is a permanent failure whose reason names the rule. Answers are read up to
64 KiB, never decompressed (the request asks for `identity`), within the target's `timeout_s`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from yarl import URL

from dispatcher import __version__
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
from dispatcher.channels.http1 import ProtocolError, check_header, request_head
from dispatcher.channels.httpclient import ClientClosed, Disconnected, HttpClient, Origin
from dispatcher.netguard import AddressRefused, NetworkGuard
from dispatcher.rates import Rate
from dispatcher.redaction import Redactor, secrets_of
from dispatcher.subscriptions.models import WebhookTarget, signing_key

CONTENT_TYPE = "application/cloudevents+json"
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer, then let the connection go
_SNIPPET_CHARS = 120
_RETRYABLE_4XX = frozenset({408, 425, 429})
_MAX_PREPARED = 4096  # targets worked out and cached; cleared when passed (config reloads)


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL: all of it that a reason or log line may show."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<invalid URL>"
    if not host:
        return "<invalid URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of
    `{msg_id}.{timestamp}.{body}`."""
    mac = hmac.digest(key, f"{msg_id}.{timestamp}.".encode() + body, "sha256")
    return "v1," + base64.b64encode(mac).decode("ascii")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or an HTTP-date, taken relative
    to `now`); a date in the past gives 0, anything unparseable gives None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True, repr=False)  # repr=False: it holds the URL and the key
class _Prepared:
    """What a target needs on every send, worked out once."""

    target: WebhookTarget  # held so the id() it is cached under cannot be reused
    origin: str
    endpoint: Origin | None  # None: the URL or a header cannot make a valid request
    head: bytes  # request line and the fixed headers; per-send ones follow
    key: bytes | None
    redactor: Redactor  # what an answer might echo back: URL parts, secrets, header values
    target_key: str  # the URL, hashed: names the target for limits without showing it


def _headers(target: WebhookTarget, url: URL, user_agent: str) -> dict[str, str]:
    # identity: an answer is read for its status and a snippet, never decompressed
    headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
    for name, value in target.headers.items():
        for own in ("User-Agent", "Accept-Encoding"):  # a target's own wins, without duplicates
            if name.lower() == own.lower():
                headers.pop(own, None)
        headers[name] = value
    if url.user is not None and not any(n.lower() == "authorization" for n in headers):
        credentials = f"{url.user}:{url.password or ''}".encode("latin-1")
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    headers["Content-Type"] = CONTENT_TYPE
    for name, value in headers.items():
        check_header(name, value)
    return headers


def _endpoint(target: WebhookTarget, user_agent: str) -> tuple[Origin, bytes, dict[str, str]]:
    """Where to connect, the request's fixed head, and its headers. Raises ValueError for what
    no request can carry (an unparseable URL, a header value with a line break)."""
    url = URL(target.url.get_secret_value())
    host = url.raw_host
    if url.scheme not in ("http", "https") or not host or url.port is None:
        raise ValueError("not an http(s) URL with a host")
    shown = f"[{host}]" if ":" in host else host
    if not url.is_default_port():
        shown = f"{shown}:{url.port}"
    headers = _headers(target, url, user_agent)
    head = request_head(url.raw_path_qs or "/", shown, headers)
    return Origin(url.scheme, host, url.port), head, headers


def _prepare(target: WebhookTarget, user_agent: str) -> _Prepared:
    url = target.url.get_secret_value()
    try:
        endpoint, head, headers = _endpoint(target, user_agent)
    except (ValueError, UnicodeError):
        endpoint, head, headers = None, b"", {}
    # Beyond the target's own secrets: the URL's user name and the Basic credentials made of it
    # (an answer may echo a request's Authorization back).
    sensitive = [*secrets_of(target), urlsplit(url).username or ""]
    if "Authorization" in headers:
        sensitive += [headers["Authorization"], headers["Authorization"].removeprefix("Basic ")]
    return _Prepared(
        target=target,
        origin=origin(url),
        endpoint=endpoint,
        head=head,
        key=signing_key(target.secret) if target.secret is not None else None,
        redactor=Redactor(sensitive, min_length=4),
        target_key=target_key("webhook", url),
    )


def _snippet(answer: bytes, redactor: Redactor) -> str:
    """The answer's start on one line, secrets hidden. Redacted whole before it is cut (a failure
    path; answers are read up to 64 KiB), so no secret survives in part across the cut."""
    text = redactor.scrub(" ".join(answer.decode("utf-8", "replace").split()))
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _not_accepted(
    status: int, answer: bytes, retry_after_s: float | None, p: _Prepared
) -> SendFailed:
    head = f"HTTP {status} from {p.origin}"
    if 300 <= status < 400:
        reason = f"{head}: dispatcher does not follow redirects; configure the final URL"
        return SendFailed(reason, retryable=False, retry_after_s=retry_after_s)
    snippet = _snippet(answer, p.redactor)
    retryable = status in _RETRYABLE_4XX or 500 <= status < 600
    return SendFailed(f"{head}: {snippet}" if snippet else head, retryable, retry_after_s)


def _failure(exc: BaseException, p: _Prepared) -> SendFailed:
    if isinstance(exc, AddressRefused):  # the config must change: no retry will pass
        return SendFailed(f"not posting to {p.origin}: {exc}", retryable=False)
    if isinstance(exc, socket.gaierror):
        return SendFailed(f"cannot resolve the host of {p.origin}: {error_text(exc)}", True)
    if isinstance(exc, ssl.SSLError):
        return SendFailed(f"TLS error with {p.origin}: {error_text(exc)}", True)
    if isinstance(exc, OSError):  # only connecting raises it: later, the connection is "lost"
        return SendFailed(f"cannot connect to {p.origin}: {error_text(exc)}", True)
    if isinstance(exc, ProtocolError):
        return SendFailed(f"posting to {p.origin} failed: invalid HTTP answer: {exc}", True)
    if isinstance(exc, Disconnected):
        return SendFailed(f"posting to {p.origin} failed: server disconnected", True)
    return SendFailed(f"posting to {p.origin} failed: {type(exc).__name__}", True)


class WebhookChannel:
    """Delivers to `webhook` targets over one pooled HTTP client (keep-alive, per origin).

    Without a `client` it makes its own, connecting where `guard` allows (default: public
    addresses only), and closes it in `close()`; a client passed in belongs to the caller, is
    left open, and brings its own guard.
    """

    def __init__(
        self,
        client: HttpClient | None = None,
        *,
        guard: NetworkGuard | None = None,
        clock: Callable[[], float] = time.time,
        user_agent: str = f"dispatcher/{__version__}",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if client is not None and guard is not None:
            raise ValueError("pass the guard to the HttpClient, which does the connecting")
        self._client = client or HttpClient(guard=guard)
        self._max_message_bytes = max_message_bytes
        self._owns_client = client is None
        self._clock = clock
        self._user_agent = user_agent
        self._prepared: dict[int, _Prepared] = {}
        self._closed = False

    def _prepared_for(self, target: WebhookTarget) -> _Prepared:
        prepared = self._prepared.get(id(target))
        if prepared is None or prepared.target is not target:
            if len(self._prepared) >= _MAX_PREPARED:
                self._prepared.clear()
            prepared = self._prepared[id(target)] = _prepare(target, self._user_agent)
        return prepared

    def target_key(self, delivery: Delivery) -> str:
        target = delivery.subscription.target
        assert isinstance(target, WebhookTarget)
        return self._prepared_for(target).target_key

    def default_rate(self, delivery: Delivery) -> Rate | None:
        return None  # a generic receiver is never capped unless its subscription says so

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        if not isinstance(target, WebhookTarget):
            raise TypeError(f"WebhookChannel cannot send to a {target.type!r} target")
        p = self._prepared_for(target)
        if self._closed or self._client.closed:
            return SendFailed(f"not posting to {p.origin}: the webhook channel is closed", True)
        if p.endpoint is None:  # the config must change: an invalid URL or header value
            reason = f"cannot post to {p.origin}: invalid request (ValueError)"
            return SendFailed(reason + "; check the target's url and headers", False)
        body = delivery.event.body
        if len(body) > self._max_message_bytes:  # an event may be larger (max_event_bytes)
            return too_large(f"not posting to {p.origin}", len(body), self._max_message_bytes)
        timestamp = int(self._clock())
        fields = [p.head, b"webhook-id: ", delivery.id.encode("ascii")]
        fields += [b"\r\nwebhook-timestamp: ", b"%d" % timestamp, b"\r\n"]
        if p.key is not None:
            signature = sign(p.key, delivery.id, timestamp, body).encode("ascii")
            fields += [b"webhook-signature: ", signature, b"\r\n"]
        fields += [b"Content-Length: %d\r\n\r\n" % len(body), body]
        request = b"".join(fields)
        try:
            async with asyncio.timeout(target.timeout_s):
                answer = await self._client.request(p.endpoint, request, MAX_RESPONSE_BYTES)
        except TimeoutError:
            return SendFailed(
                f"timed out after {target.timeout_s:g}s posting to {p.origin}", True, timed_out=True
            )
        except ClientClosed:
            return SendFailed(f"not posting to {p.origin}: the webhook channel is closed", True)
        except (OSError, ProtocolError, Disconnected) as exc:
            return _failure(exc, p)
        status = answer.status
        if 200 <= status < 300:
            return SendOk(f"HTTP {status}")
        retry_after = parse_retry_after(answer.headers.get("retry-after"), self._clock())
        return _not_accepted(status, answer.body, retry_after, p)

    async def close(self) -> None:
        self._closed = True
        self._prepared.clear()
        if self._owns_client:
            await self._client.close()
