"""slack_message(): Block Kit within Slack's limits, cut visibly, and nothing in an event can
mention anyone or forge a link."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.events import Event
from dispatcher.render import SlackMessage, escape_mrkdwn, slack_message, text_message
from dispatcher.render.slack import CUT, cut
from dispatcher.subscriptions.models import Subscription

WHERE = {"project": "web", "environment": "prod-eu", "envtype": "PRODUCTION"}
SUBSCRIPTION = Subscription.model_validate(
    {
        "name": "deploys-to-ops",
        "events": ["*"],
        "target": {"type": "slack_webhook", "url": "https://hooks.slack.com/services/T/B/x"},
    }
)


def make(type_: str, data: Any = None, **attributes: str) -> Event:
    attributes = {"time": "2026-11-23T08:30:00Z", **attributes}
    everything = {"specversion": "1.0", "id": "evt-1", "source": "urn:acme:test", "type": type_}
    return Event("evt-1", "urn:acme:test", type_, {**everything, **attributes}, data, b"{}")


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text object's text, wherever it is in the blocks."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def assert_within_limits(message: SlackMessage) -> None:
    blocks = message.blocks
    assert 1 <= len(blocks) <= 50
    assert len(message.text) <= 3000
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(field["text"]) <= 2000 for field in block.get("fields", []))
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(element["text"]) <= 3000 for element in block["elements"])


def test_default_layout() -> None:
    data = {"git_ref": "0123abc", "duration": 40, "url": "https://ci.example.com/r/1?a=1&b=2"}
    message = slack_message(make("deployment.failed", data, **WHERE), SUBSCRIPTION)
    assert message.text == ":x: Deployment of web to prod-eu (PRODUCTION) failed after 40 s"
    kinds = [block["type"] for block in message.blocks]
    assert kinds == ["header", "section", "section", "actions", "context"]
    header, headline, facts, actions, context = message.blocks
    assert header["text"] == {"type": "plain_text", "text": ":x: Deployment failed", "emoji": True}
    assert headline["text"]["text"] == "Deployment of web to prod-eu (PRODUCTION) failed after 40 s"
    assert {"type": "mrkdwn", "text": "*Git ref*\n0123abc"} in facts["fields"]
    assert actions["elements"][0]["url"] == "https://ci.example.com/r/1?a=1&b=2"
    assert [e["text"] for e in context["elements"]] == [
        "Source: urn:acme:test",
        "Event: evt-1",
        "Subscription: deploys-to-ops",
    ]
    assert_within_limits(message)


def test_many_data_fields_stay_within_limits_with_a_note() -> None:
    data = {f"field_{n:03}": f"value {n} " * 20 for n in range(200)}
    message = slack_message(make("acme.thing.happened", data), SUBSCRIPTION)
    assert_within_limits(message)
    assert any("175 more fields" in text for text in texts(message.blocks))


def test_long_name_is_cut_in_the_header() -> None:
    message = slack_message(make("parameter.created", subject="N" * 500), SUBSCRIPTION)
    assert_within_limits(message)
    header = message.blocks[0]["text"]["text"]
    assert header == f":heavy_plus_sign: Parameter {'N' * 99}\u2026 created"
    field = next(t for t in texts(message.blocks) if t.startswith("*Parameter*"))
    assert "N" * 500 in field  # the full name is still shown where it fits


def test_long_values_are_cut_visibly() -> None:
    data = {"trace": "line\n" * 3000}
    message = slack_message(make("acme.crashed", data, subject="s" * 5000), SUBSCRIPTION)
    assert_within_limits(message)
    assert any(text.endswith(CUT) for text in texts(message.blocks))


def test_mrkdwn_is_escaped() -> None:
    event = make("parameter.created", {"note": "a & b"}, subject="<!channel> <@U1> & <#C1>")
    message = slack_message(event, SUBSCRIPTION)
    field = next(t for t in texts(message.blocks) if t.startswith("*Parameter*"))
    assert field == "*Parameter*\n&lt;!channel&gt; &lt;@U1&gt; &amp; &lt;#C1&gt;"
    assert "&lt;!channel&gt;" in message.text
    assert any("a &amp; b" in text for text in texts(message.blocks))
    assert "<" not in json.dumps(message.blocks) + message.text


def test_cut_never_splits_an_entity() -> None:
    cut_text = cut(escape_mrkdwn("&" * 100), 50)
    assert len(cut_text) <= 50
    assert cut_text.removesuffix(CUT) == "&amp;" * ((50 - len(CUT)) // 5)


@given(st.text(), st.integers(min_value=20, max_value=400))
def test_cut_fits_and_keeps_entities_whole(text: str, limit: int) -> None:
    result = cut(escape_mrkdwn(text), limit)
    assert len(result) <= limit
    body = result.removesuffix(CUT)
    assert body.count("&") == body.count("&amp;") + body.count("&lt;") + body.count("&gt;")


def test_emoji_and_astral_characters_count_as_slack_counts_them() -> None:
    message = slack_message(make("parameter.created", subject="\U0001f680" * 200), SUBSCRIPTION)
    header = message.blocks[0]["text"]["text"]
    assert len(header.encode("utf-16-le")) // 2 <= 150
    assert header.endswith("\U0001f680\u2026")


HOSTILE = st.text(alphabet=st.sampled_from("<>!@#&|^*_~`:;\n abcU1"), max_size=60) | st.text(
    max_size=60
)
SCALARS = HOSTILE | st.integers() | st.booleans() | st.none()
DATA = st.dictionaries(HOSTILE, SCALARS | st.dictionaries(HOSTILE, SCALARS, max_size=4), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    type_=st.sampled_from(["parameter.created", "deployment.failed", "file.uploaded", "a.b.c"]),
    subject=HOSTILE,
    project=HOSTILE,
    actor=HOSTILE,
    data=DATA,
)
def test_hostile_input_cannot_ping_or_break_limits(
    type_: str, subject: str, project: str, actor: str, data: dict[str, Any]
) -> None:
    event = make(type_, data, subject=subject, project=project, actor=actor)
    message = slack_message(event, SUBSCRIPTION)
    assert_within_limits(message)
    everything = json.dumps(message.blocks, ensure_ascii=False) + message.text
    assert "<" not in everything  # so no <!channel>, <@U1>, <#C1> or <http://x|link>
    assert ">" not in everything


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://x.example/" + "a" * 3000])
def test_unusable_links_get_no_button(url: str) -> None:
    message = slack_message(make("acme.x", {"url": url}), SUBSCRIPTION)
    assert "actions" not in [block["type"] for block in message.blocks]


def test_templates_for_slack_see_the_event_escaped() -> None:
    """A team's template cannot be made to ping by the event: what it interpolates is escaped
    for mrkdwn (tojson included), once, while the log and email see the data as it is."""
    blocks = '[{"type": "section", "text": {"type": "mrkdwn", "text": {{ data.name | tojson }}}}]'
    subscription = Subscription.model_validate(
        {
            "name": "templated",
            "events": ["*"],
            "target": {"type": "slack_webhook", "url": "https://hooks.slack.com/services/T/B/x"},
            "template": {
                "text": "<!here> {{ data.name }} / {{ data.name | mrkdwn }} in {{ event.project }}",
                "slack_blocks": blocks,
            },
        }
    )
    event = make("parameter.created", {"name": "<!channel> & co"}, project="<web>")
    message = slack_message(event, subscription)
    assert message.text == (
        "<!here> &lt;!channel&gt; &amp; co / &lt;!channel&gt; &amp; co in &lt;web&gt;"
    )  # the template's own text is the team's to write
    assert message.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "&lt;!channel&gt; &amp; co"}}
    ]
    in_the_log = text_message(event, subscription)
    assert in_the_log == "<!here> <!channel> & co / &lt;!channel&gt; &amp; co in <web>"
