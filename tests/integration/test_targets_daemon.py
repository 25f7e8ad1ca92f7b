"""Slack, Slack incoming-webhook and email targets through the whole daemon: real RabbitMQ in,
a Slack Web API stand-in, an incoming-webhook stand-in and an SMTP server (STARTTLS + AUTH) out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiormq
import pytest
import trustme

from dispatcher.events import new_event
from tests.integration.slack_standin import SlackApiStandin, SlackWebhookStandin
from tests.integration.smtp_server import (  # noqa: F401  (pytest fixtures, found by name)
    HOST,
    SMTP_PASSWORD,
    SMTP_USER,
    SmtpServer,
    smtp_ca_fixture,
    smtp_tls_server_fixture,
)
from tests.support import (
    BrokerNames,
    drain_queue,
    publish_events,
    running,
    settled,
    write_config,
)

pytestmark = pytest.mark.integration

TOKEN = "xoxb-1111-2222-daemon-test-token"


def deployment(action: str, **data: Any) -> dict[str, Any]:
    return new_event(
        f"deployment.{action}",
        "/seeds/qovery",
        subject="v1.4.2",
        data={"status": action, "git_ref": "0a1b2c3d", "pusher": "alice", **data},
        project="web",
        environment="prod-eu",
        envtype="PRODUCTION",
        actor="alice",
    )


async def test_slack_webhook_and_email_targets_deliver_through_the_daemon(
    tmp_path: Path,
    names: BrokerNames,
    amqp: aiormq.abc.AbstractChannel,
    smtp_tls_server: SmtpServer,
    smtp_ca: trustme.CA,
) -> None:
    ca_file = tmp_path / "ca.pem"
    smtp_ca.cert_pem.write_to_path(str(ca_file))
    bot = {"type": "slack", "token": TOKEN, "timeout_s": 5}
    async with (
        SlackApiStandin(tokens=[TOKEN], channels=["deploys"]) as api,
        SlackWebhookStandin() as hooks,
    ):
        hook_url = hooks.hook()
        subscriptions: list[dict[str, Any]] = [
            {
                "name": "deploys",
                "events": ["deployment.*"],
                "target": {
                    **bot,
                    "channel": "#deploys",
                    "username": "Deploy Bot",
                    "icon_emoji": ":rocket:",
                },
            },
            {
                "name": "lost",
                "events": ["deployment.failed"],
                "target": {**bot, "channel": "#nowhere"},
            },
            {
                "name": "params",
                "events": ["parameter.*"],
                "target": {"type": "slack_webhook", "url": hook_url},
            },
            {
                "name": "files",
                "events": ["file.uploaded"],
                "target": {"type": "email", "to": ["ops@example.com"], "cc": ["lead@example.com"]},
            },
        ]
        smtp = {
            "host": HOST,
            "port": smtp_tls_server.port,
            "tls": "starttls",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from": "Dispatcher <dispatcher@example.com>",
            "ca_file": str(ca_file),
            "timeout_s": 5,
            "list_id_domain": "lists.example.com",
        }
        config = write_config(
            tmp_path / "c.yaml",
            names,
            subscriptions,
            slack={"api_url": api.api_url, "burst": 1},
            smtp=smtp,
        )
        many = {f"key_{i:02d}": f"value {i}" for i in range(80)}  # more than Slack's limits hold
        events = [
            deployment("failed", duration=73),
            deployment("succeeded", duration=40),  # same channel within a second: 429 first
            new_event(
                "parameter.created",
                "/seeds/cloudtruth",
                subject="<!channel>",
                data={"name": "<!channel> & <@U123>", **many},
                organization="acme",
                project="web",
            ),
            new_event(
                "file.uploaded",
                "/seeds/cloudrepo",
                data={"path": "com/acme/app-1.2.jar", "size": 2048},
                repository="maven-releases",
                actor="ci <ci@example.com>",
            ),
        ]
        async with running(config) as app:
            await publish_events(amqp, names, events)
            posts = await api.wait_for_posts(2, timeout_s=15)
            [hook_post] = await hooks.wait_for_posts(1)
            [mail] = await smtp_tls_server.wait_for(1)
            await settled(app, len(events))

        # Slack Web API: the bot's channel, name and icon; failed first, then the one paced a
        # second behind it (Slack allows about one a second per channel); within Block Kit's
        # limits.
        assert [p.channel_id for p in posts] == [api.channel_ids["deploys"]] * 2
        assert {(p.username, p.icon_emoji, p.token) for p in posts} == {
            ("Deploy Bot", ":rocket:", TOKEN)
        }
        assert posts[0].text is not None
        assert ":x:" in posts[0].text
        assert "failed" in posts[0].text
        assert posts[1].text is not None
        assert "succeeded" in posts[1].text
        waits = app.metrics.registry.get_sample_value(
            "dispatcher_rate_limit_waits_total", {"target_type": "slack"}
        )
        assert waits == 1.0
        for post in posts:
            assert_within_slack_limits(post.blocks)
        flat = json.dumps(posts[0].blocks)
        assert "0a1b2c3d" in flat
        assert "1 min 13 s" in flat

        # Incoming webhook: event data escaped for mrkdwn, the excess cut visibly.
        payload = json.dumps(hook_post.payload)
        assert "<!channel>" not in payload
        assert "<@U123>" not in payload
        assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in payload
        assert "more" in payload
        assert_within_slack_limits(hook_post.payload["blocks"])

        # Email over STARTTLS with AUTH: headers, both parts, the same facts in each.
        assert (mail.tls, mail.login) == (True, SMTP_USER)
        assert sorted(mail.rcpt_tos) == ["lead@example.com", "ops@example.com"]
        message = mail.message
        assert message["To"] == "ops@example.com"
        assert message["Cc"] == "lead@example.com"
        assert "app-1.2.jar" in message["Subject"]
        assert message["List-Id"].endswith("<files.lists.example.com>")
        assert message["Message-ID"].startswith("<dlv_")
        assert message["Date"]
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        assert text_part is not None
        assert html_part is not None
        text, html = text_part.get_content(), html_part.get_content()
        assert "maven-releases" in text
        assert "maven-releases" in html
        assert "ci &lt;ci@example.com&gt;" in html
        assert "<ci@example.com>" not in html

    # The unknown channel is a permanent failure: dead-lettered with Slack's reason.
    dead = await drain_queue(amqp, names.dead_letter_queue)
    reasons = {
        header(m, "x-dispatcher-subscription"): header(m, "x-dispatcher-last-error") for m in dead
    }
    assert [header(m, "x-dispatcher-reason") for m in dead] == ["permanent_failure"]
    assert list(reasons) == ["lost"]
    assert "channel_not_found" in reasons["lost"]
    assert TOKEN not in reasons["lost"]
    assert app.pipeline.stats.delivered == 4
    assert app.pipeline.stats.dead_lettered == 1


def header(message: aiormq.abc.DeliveredMessage, name: str) -> str:
    value = (message.header.properties.headers or {})[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def assert_within_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            for field in block.get("fields", []):
                assert len(field["text"]) <= 2000
