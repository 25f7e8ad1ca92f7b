"""The `email` target: a text + HTML email through the config's one SMTP server, over one reused
connection, with the server's answer classified: 4yz transient (retryable), 5yz permanent.

The SMTP password never appears in a reason, a detail, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr

import structlog
from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientsRefused,
    SMTPResponse,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from dispatcher.channels.base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Delivery,
    SendFailed,
    SendOk,
    SendResult,
    error_text,
    text_bytes,
    too_large,
)
from dispatcher.rates import Rate
from dispatcher.redaction import Redactor, secrets_of
from dispatcher.render import EmailMessage
from dispatcher.settings import SmtpSettings
from dispatcher.subscriptions.models import EmailTarget

log = structlog.get_logger(__name__)

#: a connection idle this long is checked with NOOP before it carries a message
IDLE_CHECK_S = 30.0
_REPLY_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
# What each reply-carrying error says about where in the conversation the server said no.
_REFUSALS: tuple[tuple[type[SMTPResponseException], str], ...] = (
    (SMTPAuthenticationError, "authentication failed"),
    (SMTPConnectResponseError, "connection refused by the server"),
    (SMTPSenderRefused, "sender refused"),
    (SMTPDataError, "message refused"),
    (SMTPHeloError, "EHLO refused"),
    (SMTPResponseException, "unexpected reply"),
)


def one_line(text: str, limit: int | None = None) -> str:
    """`text` without CR, LF or other control characters, whitespace runs collapsed."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def list_label(name: str) -> str:
    """A subscription name made into a List-Id label (RFC 2919 dot-atom): `shop/deploys` ->
    `shop-deploys`."""
    label = re.sub(r"\.{2,}", ".", _NOT_LABEL.sub("-", name)).strip(".")
    return label or "subscription"


def list_id(name: str, domain: str) -> str:
    """`<label.domain>`, kept to 69 characters so that `List-Id:` fits one 78-character line: a
    longer one is folded, or sent as an encoded word that mail filters do not match. A label cut
    short ends in a hash of the whole name, so it stays distinct."""
    label, room = list_label(name), max(16, 66 - len(domain))
    if len(label) > room:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        label = f"{label[: room - 9].rstrip('.')}-{digest}"
    return f"<{label}.{domain}>"


def _domain(sender: str) -> str:
    domain = (parseaddr(sender)[1] or sender).rpartition("@")[2].strip("[] ")
    try:
        return domain.encode("idna").decode("ascii") if domain else "localhost"
    except UnicodeError:
        return "localhost"


def build_message(
    delivery: Delivery, rendered: EmailMessage, settings: SmtpSettings, now: datetime
) -> MimeMessage:
    """The email for one delivery. Bcc recipients go only on the envelope, never in a header;
    the Message-ID derives from the delivery id, so every retry carries the same one."""
    target = delivery.subscription.target
    assert isinstance(target, EmailTarget)
    message = MimeMessage(policy=SMTP_POLICY)
    message["From"] = settings.sender
    message["To"] = ", ".join(target.to)
    if target.cc:
        message["Cc"] = ", ".join(target.cc)
    message["Subject"] = one_line(rendered.subject)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = f"<{delivery.id}@{_domain(settings.sender)}>"
    message["List-Id"] = list_id(delivery.subscription.name, settings.list_id_domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Dispatcher-Event-Id"] = one_line(delivery.event.id)
    message["X-Dispatcher-Delivery-Id"] = delivery.id
    message.set_content(rendered.text, charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message


def _os_text(err: BaseException) -> str:
    if isinstance(err, OSError):  # TLS and DNS errors too
        return one_line(error_text(err), _REPLY_CHARS)
    return one_line(str(err), _REPLY_CHARS) or type(err).__name__


def _refused(refusals: list[tuple[str, int, str]]) -> str:
    return ", ".join(f"{address} ({code} {one_line(text, 80)})" for address, code, text in refusals)


def classify(exc: Exception, server: str) -> SendFailed:
    """What a failed send means: a 4yz reply or a lost connection may pass, a 5yz will not."""
    if isinstance(exc, SMTPRecipientsRefused):
        refusals = [(r.recipient, r.code, r.message) for r in exc.recipients]
        retryable = any(not 500 <= code < 600 for _, code, _ in refusals)
        return SendFailed(f"all recipients refused by {server}: {_refused(refusals)}", retryable)
    if isinstance(exc, SMTPResponseException):
        what = next(label for kind, label in _REFUSALS if isinstance(exc, kind))
        reply = one_line(f"{exc.code} {exc.message}", _REPLY_CHARS)
        return SendFailed(f"{what} at {server}: {reply}", not 500 <= exc.code < 600)
    if isinstance(exc, SMTPServerDisconnected):
        return SendFailed(f"{server} closed the connection", True)
    if isinstance(exc, SMTPConnectError):
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        return SendFailed(f"cannot connect to {server}: {_os_text(cause)}", True)
    if isinstance(exc, SMTPException):  # no reply code: STARTTLS or AUTH unsupported, and such
        return SendFailed(f"cannot send through {server}: {one_line(exc.message)}", False)
    if isinstance(exc, ssl.SSLError):
        return SendFailed(f"TLS error with {server}: {_os_text(exc)}", True)
    if isinstance(exc, OSError):
        return SendFailed(f"connection to {server} failed: {_os_text(exc)}", True)
    # ValueError: aiosmtplib refuses an address it cannot put on a command line
    return SendFailed(f"cannot send through {server}: {one_line(str(exc))}", False)


def _stale(exc: Exception) -> bool:
    """The server dropped a connection we held (idle timeout, restart): try a fresh one."""
    return isinstance(exc, SMTPServerDisconnected) or (
        isinstance(exc, SMTPResponseException) and exc.code == 421
    )


class EmailChannel:
    """Delivers to `email` targets through the settings' SMTP server.

    One connection, made on first use and reused: SMTP is one conversation at a time, so sends
    take turns (an asyncio.Lock). Each turn (NOOP check, connect, STARTTLS, login, the mail
    transaction) is bounded as a whole by `timeout_s`; time spent waiting for the turn is not.
    A reused connection the server has dropped is replaced once within the same turn.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        render: Callable[[Delivery], EmailMessage],
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        idle_check_s: float = IDLE_CHECK_S,
        rate: Rate | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._settings = settings
        self._max_message_bytes = max_message_bytes
        self._rate = rate
        self._render = render
        self._tls_context = tls_context
        self._clock = clock
        self._idle_check_s = idle_check_s
        self._server = f"{settings.host}:{settings.effective_port}"
        self._envelope_from = parseaddr(settings.sender)[1] or settings.sender
        self._redactor = _redactor(settings)
        self._lock = asyncio.Lock()
        self._smtp: SMTP | None = None
        self._last_used_s = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"EmailChannel({self._server}, tls={self._settings.tls})"

    def target_key(self, delivery: Delivery) -> str:
        return f"smtp:{self._server}"

    def default_rate(self, delivery: Delivery) -> Rate | None:
        return self._rate  # `smtp.rate_limit`: one limit for the whole server

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        if not isinstance(target, EmailTarget):
            raise TypeError(f"EmailChannel cannot send to a {target.type!r} target")
        try:
            rendered = self._render(delivery)
            size = text_bytes(rendered.subject, rendered.text, rendered.html)
            if size > self._max_message_bytes:
                where = f"not sending through {self._server}"
                return too_large(where, size, self._max_message_bytes)
            message = build_message(delivery, rendered, self._settings, self._clock())
        except Exception as exc:  # noqa: BLE001 - a template or renderer bug must not stop the consumer
            why = one_line(f"{type(exc).__name__}: {exc}", _REPLY_CHARS)
            return SendFailed(f"cannot build the email: {why}", False)
        recipients = list(dict.fromkeys([*target.to, *target.cc, *target.bcc]))
        async with self._lock:
            if self._closed:
                reason = f"not sending through {self._server}: the email channel is closed"
                return SendFailed(reason, True)
            try:
                async with asyncio.timeout(self._settings.timeout_s):
                    refused, reply = await self._transmit(message, recipients)
            except TimeoutError:  # ours, or one of aiosmtplib's per-operation ones
                self._drop()
                timeout_s = self._settings.timeout_s
                return SendFailed(
                    f"timed out after {timeout_s:g}s sending through {self._server}",
                    True,
                    timed_out=True,
                )
            except (SMTPException, OSError, ValueError) as exc:
                # After a refusal inside the transaction aiosmtplib sent RSET: the connection
                # may carry on. After anything else its state is unknown: start afresh.
                refusal = isinstance(exc, SMTPResponseException | SMTPRecipientsRefused)
                if not (refusal and self._smtp is not None and self._smtp.is_connected):
                    self._drop()
                failed = classify(exc, self._server)
                return dataclasses.replace(failed, reason=self._redactor.scrub(failed.reason))
        detail = one_line(f"250 {reply}", _REPLY_CHARS)
        if refused:
            listed = _refused([(address, r.code, r.message) for address, r in refused.items()])
            detail = self._redactor.scrub(f"{detail}; refused: {listed}")
            log.warning(
                "email partly refused", server=self._server, delivery=delivery.id, detail=detail
            )
        return SendOk(detail)

    async def close(self) -> None:
        """QUIT (bounded by `timeout_s`) and close; later sends fail retryable."""
        self._closed = True
        async with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            try:
                if smtp.is_connected:
                    async with asyncio.timeout(self._settings.timeout_s):
                        await smtp.quit()
            except (SMTPException, OSError, TimeoutError):
                pass  # closing anyway
            finally:
                smtp.close()

    async def _transmit(
        self, message: MimeMessage, recipients: list[str]
    ) -> tuple[dict[str, SMTPResponse], str]:
        while True:  # at most twice: after a drop the next connection is a fresh one
            smtp, reused = await self._connection()
            try:
                result = await smtp.send_message(
                    message, sender=self._envelope_from, recipients=recipients
                )
            except (SMTPException, OSError) as exc:
                if not (reused and _stale(exc)):
                    raise
                # At-least-once: had the server taken the message and dropped the line before
                # its 250, it comes again; the stable Message-ID lets receivers drop the copy.
                log.info("smtp connection went stale; reconnecting", server=self._server)
                self._drop()
            else:
                self._last_used_s = time.monotonic()
                return result

    async def _connection(self) -> tuple[SMTP, bool]:
        """The connection to use and whether it is a reused one."""
        smtp = self._smtp
        if smtp is not None and smtp.is_connected:
            if time.monotonic() - self._last_used_s < self._idle_check_s:
                return smtp, True
            try:
                await smtp.noop()
                return smtp, True
            except (SMTPException, OSError):
                log.info("idle smtp connection is gone; reconnecting", server=self._server)
        self._drop()
        smtp = SMTP(
            hostname=self._settings.host,
            port=self._settings.effective_port,
            username=self._settings.username,
            password=password.get_secret_value() if (password := self._settings.password) else None,
            timeout=self._settings.timeout_s,
            use_tls=self._settings.tls == "implicit",
            start_tls=self._settings.tls == "starttls",
            tls_context=self._tls_context,
        )
        await smtp.connect()  # greeting, EHLO, STARTTLS and AUTH as configured
        self._smtp, self._last_used_s = smtp, time.monotonic()
        return smtp, False

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


def _redactor(settings: SmtpSettings) -> Redactor:
    """Hides the password and the encodings of it that go over the wire, in case a server
    echoes one."""
    passwords = secrets_of(settings)
    plain = [f"\0{settings.username or ''}\0{password}" for password in passwords]  # AUTH PLAIN
    encoded = [base64.b64encode(s.encode()).decode() for s in (*passwords, *plain)]
    return Redactor([*passwords, *encoded], min_length=4)
