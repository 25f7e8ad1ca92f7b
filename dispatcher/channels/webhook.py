"""The `webhook` target: POSTs the event as a structured CloudEvent, signed the Standard Webhooks
way (`webhook-id`, `webhook-timestamp`, `webhook-signature`), and classifies the answer.

A webhook URL often carries a token in its path or query and credentials in its userinfo, so
nothing here (reason, detail, repr) shows more of it than `origin(url)`: scheme://host[:port].
"""

from __future__ import annotations

import base64
import hmac
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

import aiohttp

from dispatcher import __version__
from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
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
        return float(value)
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
    url: str
    origin: str
    headers: dict[str, str]
    key: bytes | None
    timeout: aiohttp.ClientTimeout
    redact: tuple[str, ...]  # what an answer might echo back: URL parts, secrets, header values


def _prepare(target: WebhookTarget, user_agent: str) -> _Prepared:
    url = target.url.get_secret_value()
    headers = {"User-Agent": user_agent}
    for name, value in target.headers.items():
        if name.lower() == "user-agent":  # a target's own User-Agent wins, without duplicates
            del headers["User-Agent"]
        headers[name] = value
    headers["Content-Type"] = CONTENT_TYPE
    parts = urlsplit(url)
    sensitive = {url, parts.path, parts.query, parts.username or "", parts.password or ""}
    sensitive |= {unquote(s) for s in sensitive} | set(target.headers.values())
    if target.secret is not None:
        sensitive.add(target.secret.get_secret_value())
    return _Prepared(
        target=target,
        url=url,
        origin=origin(url),
        headers=headers,
        key=signing_key(target.secret) if target.secret is not None else None,
        timeout=aiohttp.ClientTimeout(total=target.timeout_s),
        redact=tuple(sorted((s for s in sensitive if len(s) >= 4), key=len, reverse=True)),
    )


async def _read_bounded(stream: aiohttp.StreamReader, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _snippet(answer: bytes, redact: tuple[str, ...]) -> str:
    text = " ".join(answer[: 8 * _SNIPPET_CHARS].decode("utf-8", "replace").split())
    for secret in redact:
        text = text.replace(secret, "***")
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _not_accepted(
    status: int, answer: bytes, retry_after_s: float | None, p: _Prepared
) -> SendFailed:
    head = f"HTTP {status} from {p.origin}"
    if 300 <= status < 400:
        reason = f"{head}: dispatcher does not follow redirects; configure the final URL"
        return SendFailed(reason, retryable=False, retry_after_s=retry_after_s)
    snippet = _snippet(answer, p.redact)
    retryable = status in _RETRYABLE_4XX or 500 <= status < 600
    return SendFailed(f"{head}: {snippet}" if snippet else head, retryable, retry_after_s)


def _error_text(exc: BaseException) -> str:
    """A one-line cause built from the OS/TLS error, never from str() of an aiohttp error, which
    can contain the whole URL."""
    err = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return str(err.verify_message)
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason)
    if isinstance(err, socket.gaierror) and err.strerror:
        return err.strerror
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    if isinstance(err, OSError) and not isinstance(err, aiohttp.ClientError) and str(err):
        return " ".join(str(err).split())  # the socket layer's text names addresses, not URLs
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return type(err).__name__


def _failure(exc: BaseException, p: _Prepared) -> SendFailed:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return SendFailed(f"cannot resolve the host of {p.origin}: {_error_text(exc)}", True)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return SendFailed(f"TLS error with {p.origin}: {_error_text(exc)}", True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return SendFailed(f"cannot connect to {p.origin}: {_error_text(exc)}", True)
    if isinstance(exc, ValueError):  # InvalidURL, a bad header value: the config must change
        reason = f"cannot post to {p.origin}: invalid request ({type(exc).__name__})"
        return SendFailed(reason + "; check the target's url and headers", False)
    return SendFailed(f"posting to {p.origin} failed: {_error_text(exc)}", True)


class WebhookChannel:
    """Delivers to `webhook` targets through one pooled HTTP session.

    Without a `session` it makes its own on first use (inside the running loop) and closes it in
    `close()`; a session passed in belongs to the caller and is left open.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Callable[[], float] = time.time,
        user_agent: str = f"dispatcher/{__version__}",
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._user_agent = user_agent
        self._prepared: dict[int, _Prepared] = {}
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30)
            # No cookie jar: a cookie one target sets must never travel to another.
            jar = aiohttp.DummyCookieJar()
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=jar)
        return self._session

    def _prepared_for(self, target: WebhookTarget) -> _Prepared:
        prepared = self._prepared.get(id(target))
        if prepared is None or prepared.target is not target:
            if len(self._prepared) >= _MAX_PREPARED:
                self._prepared.clear()
            prepared = self._prepared[id(target)] = _prepare(target, self._user_agent)
        return prepared

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        if not isinstance(target, WebhookTarget):
            raise TypeError(f"WebhookChannel cannot send to a {target.type!r} target")
        p = self._prepared_for(target)
        if self._closed or (self._session is not None and self._session.closed):
            return SendFailed(f"not posting to {p.origin}: the webhook channel is closed", True)
        body = delivery.event.body
        timestamp = int(self._clock())
        headers = {**p.headers, "webhook-id": delivery.id, "webhook-timestamp": str(timestamp)}
        if p.key is not None:
            headers["webhook-signature"] = sign(p.key, delivery.id, timestamp, body)
        try:
            async with self._get_session().post(
                p.url, data=body, headers=headers, timeout=p.timeout, allow_redirects=False
            ) as response:
                answer = await _read_bounded(response.content)
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError:  # also aiohttp's ServerTimeoutError and friends
            return SendFailed(f"timed out after {target.timeout_s:g}s posting to {p.origin}", True)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return _failure(exc, p)
        if 200 <= status < 300:
            return SendOk(f"HTTP {status}")
        return _not_accepted(status, answer, parse_retry_after(retry_after, self._clock()), p)

    async def close(self) -> None:
        self._closed = True
        self._prepared.clear()
        if self._owns_session and self._session is not None:
            await self._session.close()
