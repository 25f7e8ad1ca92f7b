"""The template budget in a running daemon: a template over budget on a real event sends the
default rendering with a warning while the other subscriptions deliver as usual, and the API
refuses a template over budget with 422 naming its field (real RabbitMQ, Slack's Web API stood
in for on loopback, a real SQLite file)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import pytest
from structlog.testing import capture_logs

from dispatcher.events import new_event
from tests.integration.slack_standin import SlackApiStandin
from tests.support import BrokerNames, publish_events, running, write_config

pytestmark = pytest.mark.integration

SLACK_TOKEN = "xoxb-1111-2222-BUDGETSECRET"
API_TOKEN = "api-token-0123456789abcdef"
#: within budget on the sample event (six data items), over it on an event with a hundred
HOG = "{% for k in data %}{% for i in range(15000) %}{% endfor %}{% endfor %}hog's own text"


def slack(name: str, channel: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "events": ["deployment.*"],
        "target": {"type": "slack", "token": SLACK_TOKEN, "channel": channel},
        "template": {"text": text},
    }


@pytest.fixture
async def standin() -> AsyncIterator[SlackApiStandin]:
    async with SlackApiStandin(tokens={SLACK_TOKEN}, channels=["hogs", "fine"]) as api:
        yield api


async def test_over_budget_on_a_real_event_the_default_is_sent_and_others_deliver(
    tmp_path: Path,
    names: BrokerNames,
    amqp: aiormq.abc.AbstractChannel,
    standin: SlackApiStandin,
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [slack("hog", "hogs", HOG), slack("fine", "fine", "fine: {{ event.project }}")],
        slack={"api_url": standin.api_url, "rate_limit": None},
    )
    data = {f"item{n}": n for n in range(100)}
    event = new_event("deployment.failed", "urn:t", data=data, project="web")
    with capture_logs() as logs:
        async with running(config):
            await publish_events(amqp, names, [event])
            posts = await standin.wait_for_posts(2)
    by_channel = {post.channel: post for post in posts}
    assert by_channel["fine"].text == "fine: web"
    hog = by_channel["hogs"]
    assert hog.text
    assert "hog's own text" not in hog.text  # the default rendering: the headline
    assert hog.blocks  # and the default blocks
    warnings = [e for e in logs if e["event"] == "template_failed_using_default"]
    assert [(w["subscription"], w["part"]) for w in warnings] == [("hog", "text")]
    assert "TemplateBudgetExceeded: more than 100000 steps" in warnings[0]["error"]
    assert SLACK_TOKEN not in json.dumps(logs, default=str)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_the_api_refuses_a_template_over_the_configured_budget(
    tmp_path: Path, names: BrokerNames
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [],
        admin={"listen": "127.0.0.1:0", "token": API_TOKEN},
        store={"url": f"sqlite:///{tmp_path / 'subs.db'}"},
        delivery={"template_budget": {"max_steps": 500}},
    )
    async with running(config) as app, aiohttp.ClientSession() as http:
        api = f"{app.servers[0].url}/api/v1/subscriptions"
        status, error = await call(http, "POST", api, looping("over", 1000))
        assert status == 422, error
        [problem] = error["error"]["problems"]
        assert problem["field"] == "template.text"
        assert "exceeds delivery.template_budget" in problem["message"]
        assert "more than 500 steps" in problem["message"]

        assert (await call(http, "POST", api, looping("within", 100)))[0] == 201
        patch = {"template": looping("within", 1000)["template"]}
        status, error = await call(http, "PATCH", f"{api}/within", patch)
        assert status == 422, error
        assert error["error"]["problems"][0]["field"] == "template.text"


def looping(name: str, times: int) -> dict[str, Any]:
    text = f"{{% for i in range({times}) %}}{{% endfor %}}"
    return {"name": name, "events": ["*"], "target": {"type": "log"}, "template": {"text": text}}
