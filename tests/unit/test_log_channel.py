"""The log target: one `notification` line with the rendered text and the event's facts."""

from __future__ import annotations

from structlog.testing import capture_logs

from dispatcher.channels.base import Delivery, SendOk
from dispatcher.channels.log import LogChannel
from dispatcher.events import Event, new_event
from dispatcher.subscriptions.models import Subscription
from tests.support import as_event


def event() -> Event:
    body = new_event(
        "deployment.failed",
        "urn:ci",
        subject="v1.4.2",
        data={"duration": 40, "git_ref": "0123abc"},
        project="web",
        environment="prod-eu",
        envtype="PRODUCTION",
    )
    return as_event(body)


async def test_logs_the_rendered_text_and_the_facts() -> None:
    sub = Subscription.model_validate(
        {"name": "audit", "events": ["*"], "target": {"type": "log", "level": "warning"}}
    )
    with capture_logs() as logs:
        result = await LogChannel().send(Delivery.of(event(), sub))
    assert isinstance(result, SendOk)
    [line] = logs
    assert line["event"] == "notification"
    assert line["log_level"] == "warning"
    assert line["text"].startswith("Deployment of web to prod-eu (PRODUCTION) failed after 40 s")
    assert "Git ref: 0123abc" in line["text"]
    assert (line["type"], line["project"], line["envtype"]) == (
        "deployment.failed",
        "web",
        "PRODUCTION",
    )


async def test_a_text_template_replaces_the_default() -> None:
    sub = Subscription.model_validate(
        {
            "name": "audit",
            "events": ["*"],
            "target": {"type": "log"},
            "template": {"text": "{{ event.project }} {{ data.git_ref }}"},
        }
    )
    with capture_logs() as logs:
        await LogChannel().send(Delivery.of(event(), sub))
    assert logs[0]["text"] == "web 0123abc"
