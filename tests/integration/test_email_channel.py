"""EmailChannel against real SMTP servers on loopback (aiosmtpd): what arrives, how the connection
is reused and replaced, and how every kind of refusal (or silence) is classified, without the
password in any reason."""

from __future__ import annotations

import asyncio
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.message import EmailMessage as PlainMessage
from email.utils import format_datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from dispatcher.channels.base import Delivery, SendFailed, SendOk, SendResult
from dispatcher.channels.email import IDLE_CHECK_S, EmailChannel, list_id, list_label
from dispatcher.events import Event, new_event
from dispatcher.render import EmailMessage
from dispatcher.settings import SmtpSettings
from dispatcher.subscriptions.models import Subscription
from tests.integration.smtp_server import (  # noqa: F401  (pytest fixtures, found by name)
    HOST,
    SMTP_PASSWORD,
    SMTP_USER,
    RawServer,
    SmtpServer,
    silent_server_fixture,
    smtp_ca_fixture,
    smtp_client_tls_fixture,
    smtp_server_fixture,
    smtp_tls_server_fixture,
)
from tests.support import as_event

pytestmark = pytest.mark.integration

NOW = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)
SENDER = "dispatcher@example.com"
SUBJECT = "Déploiement réussi: shop → prod ✅"
TEXT = "Bonjour,\nshop a été déployé en prod. 🚀\n"
HTML = "<p>Bonjour,</p><p><b>shop</b> a été déployé en prod. 🚀</p>\n"


def render(delivery: Delivery) -> EmailMessage:
    # A CR/LF in a rendered subject must not start a header of its own.
    return EmailMessage(subject=SUBJECT + "\r\nBcc: thief@example.net", text=TEXT, html=HTML)


def settings(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "tls": "none",
        "from": f"Dispatcher <{SENDER}>",
        "timeout_s": 5.0,
        "list_id_domain": "lists.example.com",
    }
    return SmtpSettings.model_validate(values | overrides)


def subscription(
    to: list[str], cc: list[str] | None = None, bcc: list[str] | None = None
) -> Subscription:
    target = {"type": "email", "to": to, "cc": cc or [], "bcc": bcc or []}
    return Subscription.model_validate(
        {"name": "shop/deploys", "events": ["deployment.succeeded"], "target": target}
    )


def event() -> Event:
    as_dict = new_event(
        "deployment.succeeded", "/seeds/deployments", id="evt-1", data={"app": "api"}
    )
    return as_event(as_dict)


def delivery(to: list[str], cc: list[str] | None = None, bcc: list[str] | None = None) -> Delivery:
    return Delivery.of(event(), subscription(to, cc, bcc))


async def send(channel: EmailChannel, what: Delivery) -> SendResult:
    async with asyncio.timeout(15):
        return await channel.send(what)


MakeChannel = Callable[..., EmailChannel]


@pytest.fixture
async def make_channel() -> AsyncIterator[MakeChannel]:
    """Builds channels on `settings(port, **overrides)` and closes them after the test."""
    made: list[EmailChannel] = []

    def make(
        port: int,
        *,
        tls_context: ssl.SSLContext | None = None,
        idle_check_s: float = IDLE_CHECK_S,
        **overrides: Any,
    ) -> EmailChannel:
        channel = EmailChannel(
            settings(port, **overrides),
            render,
            tls_context=tls_context,
            clock=lambda: NOW,
            idle_check_s=idle_check_s,
        )
        made.append(channel)
        return channel

    yield make
    async with asyncio.timeout(15):
        for channel in made:
            await channel.close()


def failed(result: SendResult) -> SendFailed:
    assert isinstance(result, SendFailed), result
    assert SMTP_PASSWORD not in result.reason
    return result


# --- what arrives ----------------------------------------------------------------------------


async def test_message_arrives_with_headers_parts_and_envelope(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    what = delivery(["ops@example.com"], cc=["lead@example.com"], bcc=["audit@example.com"])
    result = await send(make_channel(smtp_server.port), what)

    assert isinstance(result, SendOk)
    assert result.detail == "250 OK: queued as Q1"
    (received,) = await smtp_server.wait_for(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["ops@example.com", "lead@example.com", "audit@example.com"]
    message = received.message
    assert message["From"] == f"Dispatcher <{SENDER}>"
    assert message["To"] == "ops@example.com"
    assert message["Cc"] == "lead@example.com"
    assert "Bcc" not in message
    assert message["Subject"] == SUBJECT + " Bcc: thief@example.net"
    assert message["Date"] == format_datetime(NOW) == "Fri, 17 May 2024 09:30:00 +0000"
    assert message["Message-ID"] == f"<{what.id}@example.com>"
    assert message["List-Id"] == "<shop-deploys.lists.example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Dispatcher-Event-Id"] == "evt-1"
    assert message["X-Dispatcher-Delivery-Id"] == what.id
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text.get_content() == TEXT
    assert html.get_content() == HTML


async def test_two_sends_share_one_connection_and_a_retry_keeps_its_message_id(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_server.port)
    what = delivery(["ops@example.com"])
    first, second = await send(channel, what), await send(channel, what)

    assert (first, second) == (SendOk("250 OK: queued as Q1"), SendOk("250 OK: queued as Q2"))
    one, two = await smtp_server.wait_for(2)
    assert one.peer == two.peer
    assert smtp_server.connections == 1
    assert one.message["Message-ID"] == two.message["Message-ID"]


async def test_concurrent_sends_take_turns_on_one_connection(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_server.port)
    async with asyncio.timeout(15):
        results = await asyncio.gather(
            *(channel.send(delivery([f"u{i}@example.com"])) for i in range(5))
        )

    assert all(isinstance(result, SendOk) for result in results)
    received = await smtp_server.wait_for(5)
    assert sorted(r.rcpt_tos[0] for r in received) == [f"u{i}@example.com" for i in range(5)]
    assert smtp_server.connections == 1


async def test_a_server_restart_between_sends_costs_nothing(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_server.port)
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    await smtp_server.restart()

    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    first, second = await smtp_server.wait_for(2)
    assert first.peer != second.peer
    assert smtp_server.connections == 2


async def test_a_reused_connection_the_server_gives_up_is_replaced_within_the_send(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    """A 421 (or a drop) on a reused connection: one fresh connection, same send."""
    channel = make_channel(smtp_server.port)
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    smtp_server.next_replies["MAIL"] = ["421 4.3.2 closing idle connection"]

    assert await send(channel, delivery(["ops@example.com"])) == SendOk("250 OK: queued as Q2")
    assert smtp_server.connections == 2


async def test_a_421_on_a_fresh_connection_is_not_retried_in_the_send(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    smtp_server.next_replies["MAIL"] = ["421 4.3.2 shutting down"]
    result = failed(await send(make_channel(smtp_server.port), delivery(["ops@example.com"])))

    assert result.retryable
    assert result.reason.endswith(": 421 4.3.2 shutting down")
    assert result.reason.startswith("sender refused at ")
    assert smtp_server.connections == 1


async def test_an_idle_connection_is_checked_with_noop_before_use(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_server.port, idle_check_s=0.0)
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    smtp_server.next_replies["NOOP"] = ["421 4.4.2 idle too long"]

    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    assert smtp_server.noops == 1
    assert smtp_server.connections == 2


def test_list_labels_are_header_safe() -> None:
    assert list_label("shop/deploys") == "shop-deploys"
    assert list_label("team.alerts") == "team.alerts"
    assert list_label("ops:pager@eu..1") == "ops-pager-eu.1"
    assert list_label("...") == "subscription"


@pytest.mark.parametrize("domain", ["dispatcher.invalid", "lists.example.com"])
def test_a_long_list_id_is_cut_so_it_folds_without_encoding(domain: str) -> None:
    assert list_id("shop/deploys", domain) == f"<shop-deploys.{domain}>"
    value = list_id("a" * 150 + "/deploys", domain)
    assert len(value) == 69
    assert value != list_id("a" * 150 + "/alerts", domain)

    message = PlainMessage(policy=email.policy.SMTP)
    message["List-Id"] = value
    raw = message.as_string()
    assert raw.startswith(f"List-Id: {value}\r\n")
    assert email.message_from_string(raw, policy=email.policy.default)["List-Id"] == value


# --- STARTTLS and AUTH -----------------------------------------------------------------------


async def test_starttls_and_login_deliver(
    smtp_tls_server: SmtpServer, smtp_client_tls: ssl.SSLContext, make_channel: MakeChannel
) -> None:
    channel = make_channel(
        smtp_tls_server.port,
        tls_context=smtp_client_tls,
        tls="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)

    (received,) = await smtp_tls_server.wait_for(1)
    assert received.tls
    assert received.login == SMTP_USER
    assert SMTP_PASSWORD not in repr(channel)


async def test_wrong_password_is_permanent_and_never_shown(
    smtp_tls_server: SmtpServer, smtp_client_tls: ssl.SSLContext, make_channel: MakeChannel
) -> None:
    wrong = "not-the-" + SMTP_PASSWORD
    channel = make_channel(
        smtp_tls_server.port,
        tls_context=smtp_client_tls,
        tls="starttls",
        username=SMTP_USER,
        password=wrong,
    )
    with capture_logs() as logs:
        result = failed(await send(channel, delivery(["ops@example.com"])))

    assert not result.retryable
    assert result.reason.startswith(f"authentication failed at {HOST}:{smtp_tls_server.port}: 535")
    assert wrong not in result.reason
    assert wrong not in repr(channel)
    assert wrong not in repr(logs)
    assert smtp_tls_server.received == []


async def test_an_untrusted_certificate_fails_retryable(
    smtp_tls_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_tls_server.port, tls="starttls")  # the system's CAs only
    result = failed(await send(channel, delivery(["ops@example.com"])))

    assert result.retryable
    assert result.reason.startswith(f"TLS error with {HOST}:{smtp_tls_server.port}: ")


# --- refusals --------------------------------------------------------------------------------


async def test_a_refused_recipient_is_permanent_and_named(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    smtp_server.replies["nobody@example.com"] = "550 5.1.1 no such user"
    result = failed(await send(make_channel(smtp_server.port), delivery(["nobody@example.com"])))

    assert not result.retryable
    assert "nobody@example.com (550 5.1.1 no such user)" in result.reason


async def test_a_recipient_told_to_try_later_is_retryable(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    smtp_server.replies["busy@example.com"] = "451 4.3.0 try later"
    channel = make_channel(smtp_server.port)
    result = failed(await send(channel, delivery(["busy@example.com"])))

    assert result.retryable
    assert "busy@example.com (451 4.3.0 try later)" in result.reason
    # the refusal leaves the connection usable
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    assert smtp_server.connections == 1


async def test_a_refused_message_is_permanent(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    smtp_server.next_replies["DATA"] = ["554 5.6.0 message looks like spam"]
    result = failed(await send(make_channel(smtp_server.port), delivery(["ops@example.com"])))

    assert not result.retryable
    assert result.reason == (
        f"message refused at {HOST}:{smtp_server.port}: 554 5.6.0 message looks like spam"
    )


async def test_partly_refused_is_sent_and_says_who_was_refused(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    smtp_server.replies["nobody@example.com"] = "550 5.1.1 no such user"
    what = delivery(["ops@example.com"], cc=["nobody@example.com"])
    result = await send(make_channel(smtp_server.port), what)

    assert result == SendOk(
        "250 OK: queued as Q1; refused: nobody@example.com (550 5.1.1 no such user)"
    )
    (received,) = await smtp_server.wait_for(1)
    assert received.rcpt_tos == ["ops@example.com"]


# --- no useful answer ------------------------------------------------------------------------


async def test_connection_refused_is_retryable(make_channel: MakeChannel) -> None:
    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind((HOST, 0))
        port = bound.getsockname()[1]
        result = failed(await send(make_channel(port), delivery(["ops@example.com"])))

    assert result.retryable
    assert result.reason.startswith(f"cannot connect to {HOST}:{port}: ")


async def test_a_silent_server_times_out_retryable(
    silent_server: RawServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(silent_server.port, timeout_s=0.3)
    result = failed(await send(channel, delivery(["ops@example.com"])))

    assert result == SendFailed(
        f"timed out after 0.3s sending through {HOST}:{silent_server.port}", True, timed_out=True
    )


async def test_a_slow_server_is_bounded_as_a_whole_not_per_reply(
    silent_server: RawServer, make_channel: MakeChannel
) -> None:
    """Every reply comes within timeout_s, but the conversation does not: still a timeout."""
    silent_server.greeting, silent_server.answer = b"220 slow.test\r\n", b"250 OK\r\n"
    silent_server.delay_s = 0.3
    channel = make_channel(silent_server.port, timeout_s=0.8)
    result = failed(await send(channel, delivery(["ops@example.com"])))

    assert result == SendFailed(
        f"timed out after 0.8s sending through {HOST}:{silent_server.port}", True, timed_out=True
    )


async def test_a_421_greeting_is_retryable(
    silent_server: RawServer, make_channel: MakeChannel
) -> None:
    silent_server.greeting = b"421 4.3.2 too busy, come back later\r\n"
    result = failed(await send(make_channel(silent_server.port), delivery(["ops@example.com"])))

    assert result.retryable
    assert "421 4.3.2 too busy, come back later" in result.reason


async def test_after_close_sends_fail_retryable(
    smtp_server: SmtpServer, make_channel: MakeChannel
) -> None:
    channel = make_channel(smtp_server.port)
    assert isinstance(await send(channel, delivery(["ops@example.com"])), SendOk)
    async with asyncio.timeout(10):
        await channel.close()

    result = failed(await send(channel, delivery(["ops@example.com"])))
    assert result.retryable
    assert "closed" in result.reason
