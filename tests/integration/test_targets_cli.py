"""`dispatcher test-target` and `dispatcher render`, run as the real command against Slack and SMTP
peers on loopback: what a person sees when checking a fresh token or password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.events import encode, new_event
from tests.integration.slack_standin import SlackApiStandin, SlackWebhookStandin
from tests.integration.smtp_server import (  # noqa: F401  (pytest fixtures, found by name)
    HOST,
    SmtpServer,
    smtp_server_fixture,
)
from tests.support import LOOPBACK_NETWORKS, run_cli

pytestmark = pytest.mark.integration

TOKEN = "xoxb-3333-4444-cli-test-token"
WRONG_TOKEN = "xoxb-9999-9999-revoked-token"


cli = run_cli


def config(path: Path, subscriptions: list[dict[str, Any]], **top: Any) -> Path:
    document = {"delivery": {"allowed_networks": LOOPBACK_NETWORKS}, **top}  # the peers' home
    path.write_text(yaml.safe_dump({"subscriptions": subscriptions, **document}, sort_keys=False))
    return path


def slack_sub(name: str, token: str, channel: str = "#deploys") -> dict[str, Any]:
    target = {"type": "slack", "token": token, "channel": channel, "username": "Deploy Bot"}
    return {"name": name, "events": ["deployment.*"], "target": target}


async def test_test_target_posts_a_sample_and_reports_slacks_answer(tmp_path: Path) -> None:
    async with SlackApiStandin(tokens=[TOKEN], channels=["deploys"]) as api:
        path = config(
            tmp_path / "c.yaml",
            [slack_sub("good", TOKEN), slack_sub("revoked", WRONG_TOKEN)],
            slack={"api_url": api.api_url},
        )
        code, out, err = await cli("test-target", "--config", str(path), "good")
        assert code == 0, err
        assert "good (slack): OK" in out
        [post] = api.posts
        assert (post.channel, post.username, post.token) == ("#deploys", "Deploy Bot", TOKEN)
        assert post.blocks
        assert post.text is not None
        assert "Deployment" in post.text

        code, out, err = await cli("test-target", "--config", str(path), "revoked")
        assert code == 1
        assert "revoked (slack): FAILED (permanent)" in out
        assert "invalid_auth" in out
        assert WRONG_TOKEN not in out + err
        assert len(api.posts) == 1


async def test_test_target_reports_an_incoming_webhook_refusal(tmp_path: Path) -> None:
    async with SlackWebhookStandin() as hooks:
        url = hooks.hook("/services/T1/B1/archived-secret")
        hooks.fail("/services/T1/B1/archived-secret", "channel_is_archived")
        target = {"type": "slack_webhook", "url": url}
        path = config(tmp_path / "c.yaml", [{"name": "hook", "events": ["*"], "target": target}])
        code, out, err = await cli("test-target", "--config", str(path), "hook")
        assert code == 1
        assert "channel_is_archived" in out
        assert "archived-secret" not in out + err
        assert len(hooks.posts) == 1


async def test_test_target_sends_a_real_email(tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp = {"host": HOST, "port": smtp_server.port, "tls": "none", "from": "d@example.com"}
    target = {"type": "email", "to": ["ops@example.com"]}
    path = config(
        tmp_path / "c.yaml",
        [{"name": "mail", "events": ["file.*"], "target": target}],
        smtp=smtp,
    )
    code, out, err = await cli("test-target", "--config", str(path), "mail")
    assert code == 0, err
    assert "mail (email): OK" in out
    [mail] = await smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["ops@example.com"]
    assert "File" in mail.message["Subject"]


async def test_render_prints_the_message_without_sending(tmp_path: Path) -> None:
    async with SlackApiStandin(tokens=[TOKEN]) as api:
        path = config(
            tmp_path / "c.yaml", [slack_sub("good", TOKEN)], slack={"api_url": api.api_url}
        )
        event = new_event(
            "deployment.failed", "/ci", data={"status": "failed", "name": "<!here>"}, project="web"
        )
        event_file = tmp_path / "event.json"
        event_file.write_bytes(encode(event))
        code, out, err = await cli("render", "--config", str(path), "good", str(event_file))
        assert code == 0, err
        shown = json.loads(out)
        assert shown["channel"] == "#deploys"
        assert shown["blocks"][0]["type"] == "header"
        assert "<!here>" not in out
        assert TOKEN not in out
        assert api.received == []

        code, _, err = await cli("render", "--config", str(path), "nope", str(event_file))
        assert code == 2
        assert "no subscription named 'nope' (known: good)" in err

        event_file.write_text('{"specversion": "1.0"}')
        code, _, err = await cli("render", "--config", str(path), "good", str(event_file))
        assert code == 2
        assert "missing" in err
