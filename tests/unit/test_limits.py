"""Limits on what comes in: each has a default, a config key, and a clear error or dead-letter
reason naming that key (events, fan-out, rendered message size, config files, dead-letter
headers). The API's limits and the broker round trip are in tests/integration/test_limits.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from dispatcher.admin.metrics import Metrics
from dispatcher.amqp import headers as h
from dispatcher.amqp.deadletters import DeadLetter as Letter
from dispatcher.amqp.deadletters import Replacement, replacement
from dispatcher.amqp.messages import MAX_ERROR_CHARS, Messages, read_resume
from dispatcher.channels.base import Delivery, SendFailed
from dispatcher.channels.email import EmailChannel
from dispatcher.channels.log import LogChannel
from dispatcher.channels.slack import SlackChannel, SlackWebhookChannel
from dispatcher.channels.webhook import WebhookChannel
from dispatcher.config import DEFAULT_MAX_CONFIG_BYTES, MAX_CONFIG_BYTES_ENV, load_settings
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.outcome import DeadLetter, Delivered
from dispatcher.delivery.retry import RetryPolicy
from dispatcher.errors import ConfigError
from dispatcher.events import (
    DEFAULT_LIMITS,
    Event,
    EventLimits,
    InvalidEvent,
    _check_depth,
    decode,
    encode,
    new_event,
)
from dispatcher.pipeline import Handled, Incoming, Pipeline, Rejected
from dispatcher.render import email_message, slack_message
from dispatcher.settings import BrokerSettings, Settings, SlackSettings, SmtpSettings
from dispatcher.subscriptions.matcher import Matcher
from dispatcher.subscriptions.models import Subscription
from tests.support import LOOPBACK, as_event, json_depth

BASE = {"specversion": "1.0", "id": "e-1", "source": "/test", "type": "deployment.failed"}
BINARY = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/test", "ce-type": "x.y"}


def reason(result: Event | InvalidEvent) -> str:
    assert isinstance(result, InvalidEvent), result
    return result.reason


def ok(result: Event | InvalidEvent) -> Event:
    assert isinstance(result, Event), result
    return result


def nested(depth: int, leaf: Any = 1) -> Any:
    """`leaf` inside `depth` containers, lists and objects in turn."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# --- event attributes: broker.max_attributes, broker.max_attribute_bytes


def test_the_defaults_are_the_settings_defaults() -> None:
    assert BrokerSettings().event_limits == DEFAULT_LIMITS == EventLimits()
    limits = DEFAULT_LIMITS
    assert (limits.max_attributes, limits.max_attribute_bytes, limits.max_data_depth) == (
        64,
        4096,
        64,
    )
    custom = BrokerSettings(max_attributes=8, max_attribute_bytes=256, max_data_depth=3)
    assert custom.event_limits == EventLimits(
        max_event_bytes=256 * 1024, max_attributes=8, max_attribute_bytes=256, max_data_depth=3
    )


def test_too_many_attributes_structured() -> None:
    extensions = {f"x{i}": "v" for i in range(60)}  # 4 required + 60 = 64: the limit
    body = orjson.dumps({**BASE, **extensions, "data": {"a": 1}, "data_base64": None})
    assert len(ok(decode(body)).attributes) == 64
    body = orjson.dumps({**BASE, **extensions, "x60": "v"})
    assert (
        reason(decode(body)) == "event has 65 attributes, the limit is 64 (broker.max_attributes)"
    )


def test_too_many_attributes_binary() -> None:
    headers = {**BINARY, **{f"ce-x{i}": "v" for i in range(60)}, "x-not-an-attribute": 1}
    assert len(ok(decode(b"", headers)).attributes) == 64
    # found by hypothesis: the content type is an attribute too (datacontenttype)
    assert reason(decode(b"{}", headers, "application/json")) == (
        "event has 65 attributes, the limit is 64 (broker.max_attributes)"
    )
    headers["ce-x60"] = "v"
    assert reason(decode(b"", headers)) == (
        "event has 65 attributes, the limit is 64 (broker.max_attributes)"
    )
    few = EventLimits(max_attributes=4)
    assert reason(decode(b"", BINARY | {"ce-subject": "s"}, limits=few)).startswith(
        "event has 5 attributes, the limit is 4"
    )


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("a" * 4097, 4097),
        ("\u00e9" * 2049, 4098),  # fewer characters than the limit, more bytes
        ("\U0001f680" * 1025, 4100),
        ("\ud800" * 1366, 4098),  # a lone surrogate (a header as str) is measured as 3 bytes
    ],
)
def test_an_attribute_value_longer_than_the_limit(value: str, size: int) -> None:
    expected = (
        f"attribute 'subject' is {size} bytes long, the limit is 4096 bytes "
        "(broker.max_attribute_bytes)"
    )
    assert reason(decode(b"", BINARY | {"ce-subject": value})) == expected
    if "\ud800" not in value:  # neither JSON nor a header's bytes can carry one
        assert reason(decode(orjson.dumps({**BASE, "subject": value}))) == expected
        assert reason(decode(b"", BINARY | {"ce-subject": value.encode()})) == expected


@pytest.mark.parametrize("value", ["a" * 4096, "\u00e9" * 2048, "\U0001f680" * 1024])
def test_an_attribute_value_at_the_limit(value: str) -> None:
    for name in ("subject", "project", "ext", "id", "source"):
        assert ok(decode(orjson.dumps({**BASE, name: value}))).attributes[name] == value
        assert ok(decode(b"", BINARY | {f"ce-{name}": value})).attributes[name] == value


def test_an_attribute_name_longer_than_the_limit() -> None:
    body = orjson.dumps({**BASE, "x" * 4097: 1})
    text = reason(decode(body))
    assert text.startswith("attribute name 'xxxx")
    assert text.endswith("is 4097 bytes long, the limit is 4096 bytes (broker.max_attribute_bytes)")
    assert len(text) < 200  # the name is not echoed whole
    assert ok(decode(orjson.dumps({**BASE, "x" * 4096: 1})))


def test_numbers_and_booleans_are_not_measured() -> None:
    limits = EventLimits(max_attribute_bytes=256)
    event = ok(decode(orjson.dumps({**BASE, "n": 2**63, "f": 1.5e300, "b": True}), limits=limits))
    assert event.attributes["n"] == 2**63


# --- the nesting of data: broker.max_data_depth


@pytest.mark.parametrize("depth", [1, 63, 64])
def test_data_nested_to_the_limit_is_an_event(depth: int) -> None:
    data = nested(depth)
    assert ok(decode(orjson.dumps({**BASE, "data": data}))).data == data
    assert ok(decode(orjson.dumps(data), BINARY, "application/json")).data == data


@pytest.mark.parametrize("depth", [65, 66, 300, 1000])
def test_data_nested_deeper_is_refused(depth: int) -> None:
    expected = "data is nested more than 64 levels deep (broker.max_data_depth)"
    body = b"[" * depth + b"]" * depth  # orjson writes no more than 254 levels
    assert reason(decode(orjson.dumps(BASE)[:-1] + b',"data":' + body + b"}")) == expected
    assert reason(decode(body, BINARY, "application/json")) == expected
    assert reason(decode(body, BINARY)) == expected  # no content type: JSON when it parses


def test_structured_data_300_deep_no_longer_passes() -> None:
    """Found here: orjson reads 1024 levels but writes only 254, so an event 255 to 1023
    deep was taken in and then broke whatever encoded it again (the dead-letter list's JSON,
    a binary-mode event's body). The limit refuses it at the door."""
    body = b'{"specversion":"1.0","id":"i","source":"s","type":"a.b","data":'
    body += b"[" * 300 + b"]" * 300 + b"}"
    assert "broker.max_data_depth" in reason(decode(body, limits=EventLimits(max_data_depth=200)))


def test_brackets_in_strings_do_not_count() -> None:
    tricky = ["[[[[{{{{", '"]]]]', "\\", '\\"[', "}}}}]]]]"] * 30
    data = nested(60, tricky)
    for body in (orjson.dumps({**BASE, "data": data}), json.dumps({**BASE, "data": data}).encode()):
        assert ok(decode(body)).data == data
    assert ok(decode(json.dumps(data).encode(), BINARY)).data == data
    assert "more than 64 levels" in reason(decode(orjson.dumps({**BASE, "data": nested(5, data)})))


TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\u00e9\U0001f680\n', max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=30,
)


@settings(deadline=None, max_examples=300)
@given(value=JSON, levels=st.integers(0, 12), ascii=st.booleans())
def test_the_depth_read_from_the_bytes_is_the_depth_of_the_value(
    value: Any, levels: int, ascii: bool
) -> None:
    for body in (orjson.dumps(value), json.dumps(value, ensure_ascii=ascii).encode()):
        assert (_check_depth(body, levels, levels) is not None) == (json_depth(value) > levels)


# --- the pipeline: delivery.max_fanout


def _subscriptions(count: int) -> list[Subscription]:
    return [
        Subscription.model_validate(
            {"name": f"s{i:03}", "events": ["deployment.*"], "target": {"type": "log"}}
        )
        for i in range(count)
    ]


def _pipeline(subscriptions: list[Subscription], max_fanout: int, metrics: Metrics) -> Pipeline:
    policy = RetryPolicy(attempts=1, initial_s=0, max_s=0, max_retry_after_s=0)
    deliverer = Deliverer({"log": LogChannel()}, policy, metrics=metrics)
    return Pipeline(Matcher(subscriptions), deliverer, max_fanout=max_fanout, metrics=metrics)


def _incoming(event: dict[str, Any]) -> Incoming:
    return Incoming(encode(event), {}, "application/cloudevents+json", event["type"])


async def test_past_max_fanout_the_first_get_it_and_the_rest_are_dead_lettered() -> None:
    metrics = Metrics()
    pipeline = _pipeline(_subscriptions(7), 4, metrics)
    event = new_event("deployment.failed", "/test", project="web")
    with capture_logs() as logs:
        verdict = await pipeline.handle(_incoming(event))
    assert isinstance(verdict, Handled)
    names = [(d.subscription.name, type(o).__name__) for d, o in verdict.results]
    assert names == [
        *((f"s{i:03}", "Delivered") for i in range(4)),
        *((f"s{i:03}", "DeadLetter") for i in range(4, 7)),
    ]
    for _, outcome in verdict.results[4:]:
        assert isinstance(outcome, DeadLetter)
        assert outcome.code == h.FANOUT_EXCEEDED
        assert outcome.attempts == 0
        assert "matched 7 subscriptions and delivery.max_fanout is 4" in outcome.reason
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["matched"] == 7
    assert warnings[0]["max_fanout"] == 4
    assert len([e for e in logs if e["event"] == "notification"]) == 4
    assert (pipeline.stats.delivered, pipeline.stats.dead_lettered) == (4, 3)
    assert pipeline.stats.fanout_exceeded == 1
    scraped = generate_latest(metrics.registry).decode()
    assert 'dispatcher_dead_letters_total{reason="fanout_exceeded"} 3.0' in scraped


async def test_the_fanout_dead_letters_replay_to_their_own_subscription() -> None:
    pipeline = _pipeline(_subscriptions(3), 2, Metrics())
    incoming = _incoming(new_event("deployment.failed", "/test"))
    verdict = await pipeline.handle(incoming)
    broker = BrokerSettings(queue="q")
    out = Messages(broker).of(incoming, verdict)
    assert len(out) == 1
    letter = out[0]
    assert letter.exchange == broker.dead_exchange
    assert letter.headers[h.REASON] == h.FANOUT_EXCEEDED
    assert letter.headers[h.SUBSCRIPTION] == "s002"
    assert letter.headers[h.KIND] == h.KIND_DELIVERY
    properties = aiormq.spec.Basic.Properties(headers=dict(letter.headers))
    dead = Letter(1, letter.body, dict(letter.headers), properties, "q.dead", letter.routing_key)
    assert dead.reason == "fanout_exceeded"
    plan = replacement(dead, broker, datetime.now(UTC))
    assert isinstance(plan, Replacement)
    assert plan.queue == "q.deliveries"
    assert plan.headers[h.SUBSCRIPTION] == "s002"
    # and resumed there, it goes to that one subscription, whatever max_fanout is
    resumed = await pipeline.resume(
        Incoming(letter.body, plan.headers, "application/cloudevents+json", "q.deliveries"),
        read_resume(plan.headers),
    )
    assert isinstance(resumed, Handled)
    ((delivery, outcome),) = resumed.results
    assert delivery.subscription.name == "s002"
    assert isinstance(outcome, Delivered)


async def test_at_max_fanout_every_subscription_gets_it() -> None:
    pipeline = _pipeline(_subscriptions(3), 3, Metrics())
    verdict = await pipeline.handle(_incoming(new_event("deployment.failed", "/test")))
    assert isinstance(verdict, Handled)
    assert all(isinstance(outcome, Delivered) for _, outcome in verdict.results)
    assert pipeline.stats.fanout_exceeded == 0


def test_max_fanout_default_and_bounds() -> None:
    assert Settings().delivery.max_fanout == 100
    with pytest.raises(ValueError, match="max_fanout"):
        Settings.model_validate({"delivery": {"max_fanout": 0}})


async def test_the_pipeline_refuses_with_its_limits() -> None:
    policy = RetryPolicy(attempts=1, initial_s=0, max_s=0, max_retry_after_s=0)
    deliverer = Deliverer({"log": LogChannel()}, policy)
    limits = EventLimits(max_attributes=5)
    pipeline = Pipeline(Matcher(_subscriptions(1)), deliverer, max_fanout=10, limits=limits)
    event = new_event("deployment.failed", "/test", subject="s", project="web")
    verdict = await pipeline.handle(_incoming(event))
    assert verdict == Rejected("event has 7 attributes, the limit is 5 (broker.max_attributes)")


# --- dead-letter headers stay small


def test_a_long_reason_is_cut_in_the_dead_letter_header() -> None:
    incoming = Incoming(b"x", {}, None, "k")
    out = Messages(BrokerSettings()).rejected(incoming, Rejected("y" * 100_000))
    assert len(out.headers[h.LAST_ERROR]) == MAX_ERROR_CHARS
    assert out.headers[h.LAST_ERROR].endswith("\u2026")
    short = Messages(BrokerSettings()).rejected(incoming, Rejected("short"))
    assert short.headers[h.LAST_ERROR] == "short"


# --- rendered message size: delivery.max_message_bytes


def _delivery(target: dict[str, Any], fields: int = 40) -> Delivery:
    data = {f"field_{i}": "v" * 40 for i in range(fields)}
    event = as_event(new_event("deployment.failed", "/ci", data=data, project="web"))
    sub = Subscription.model_validate({"name": "big", "events": ["*"], "target": target})
    return Delivery.of(event, sub)


def _refused(result: object, where: str) -> str:
    assert isinstance(result, SendFailed), result
    assert not result.retryable
    assert result.reason.startswith(where), result.reason
    assert "more than delivery.max_message_bytes (1024)" in result.reason
    return result.reason


# Each target below is on loopback where nothing listens: a check that let the message
# through would fail differently (cannot connect), not pass.


async def test_a_webhook_body_over_the_limit_is_not_posted() -> None:
    delivery = _delivery({"type": "webhook", "url": "http://127.0.0.1:9/hook?token=s3cret-token"})
    channel = WebhookChannel(max_message_bytes=1024)
    try:
        text = _refused(await channel.send(delivery), "not posting to http://127.0.0.1:9")
        assert f"the message is {len(delivery.event.body)} bytes" in text
        assert "s3cret-token" not in text
    finally:
        await channel.close()


async def test_a_slack_message_over_the_limit_is_not_posted() -> None:
    target = {"type": "slack", "token": "xoxb-secret-token", "channel": "#ops"}
    delivery = _delivery(target)
    render = lambda d: slack_message(d.event, d.subscription)  # noqa: E731
    channel = SlackChannel(
        SlackSettings(api_url="http://127.0.0.1:9/api/"), render, rate=None, max_message_bytes=1024
    )
    try:
        text = _refused(await channel.send(delivery), "slack chat.postMessage to #ops")
        assert "xoxb-secret-token" not in text
    finally:
        await channel.close()
    hook = {"type": "slack_webhook", "url": "https://hooks.slack.com/services/T0/B0/secretpath"}
    webhooks = SlackWebhookChannel(render, rate=None, max_message_bytes=1024)
    try:
        text = _refused(await webhooks.send(_delivery(hook)), "Slack incoming webhook at")
        assert "secretpath" not in text
    finally:
        await webhooks.close()


async def test_an_email_over_the_limit_is_not_sent() -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=9, tls="none", password="smtp-secret")
    render = lambda d: email_message(d.event, d.subscription)  # noqa: E731
    channel = EmailChannel(smtp, render, max_message_bytes=1024)
    try:
        result = await channel.send(_delivery({"type": "email", "to": ["ops@example.com"]}))
        text = _refused(result, "not sending through 127.0.0.1:9")
        assert "smtp-secret" not in text
    finally:
        await channel.close()


async def test_a_message_under_the_limit_goes_on_to_the_target() -> None:
    """The same delivery, with the default limit, reaches the network (and fails there)."""
    delivery = _delivery({"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    channel = WebhookChannel(guard=LOOPBACK)
    try:
        result = await channel.send(delivery)
        assert isinstance(result, SendFailed)
        assert result.reason.startswith("cannot connect to http://127.0.0.1:9")
    finally:
        await channel.close()


def test_max_message_bytes_default() -> None:
    assert Settings().delivery.max_message_bytes == 1024 * 1024


# --- config files: DISPATCHER_MAX_CONFIG_BYTES, aliases, nesting


def _problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ or {})
    return [str(problem) for problem in raised.value.problems]


def test_a_config_file_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    config = tmp_path / "big.yaml"
    config.write_text("logging: {level: info}\n" + "# padding\n" * 200)
    size = config.stat().st_size
    assert load_settings(config, {MAX_CONFIG_BYTES_ENV: str(size)}).logging.level == "info"
    assert _problems(config, {MAX_CONFIG_BYTES_ENV: str(size - 1)}) == [
        f"{config}: larger than {size - 1} bytes, the limit ($DISPATCHER_MAX_CONFIG_BYTES);"
        " not parsed"
    ]
    assert DEFAULT_MAX_CONFIG_BYTES == 8 * 1024 * 1024
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as stream:  # sparse: 9 MiB that take no room
        stream.truncate(9 * 1024 * 1024)
    assert _problems(huge) == [
        f"{huge}: larger than {DEFAULT_MAX_CONFIG_BYTES} bytes, the limit "
        "($DISPATCHER_MAX_CONFIG_BYTES); not parsed"
    ]


def test_a_subscriptions_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    subs = tmp_path / "subs.yaml"
    subs.write_text("- {name: a, events: ['*'], target: {type: log}}\n" * 50)
    config = tmp_path / "c.yaml"
    config.write_text("subscriptions_file: subs.yaml\n")
    limit = subs.stat().st_size - 1
    (problem,) = _problems(config, {MAX_CONFIG_BYTES_ENV: str(limit)})
    assert problem == (
        f"{config}:1: subscriptions_file: cannot read {subs}: larger than {limit} bytes,"
        " the limit ($DISPATCHER_MAX_CONFIG_BYTES); not parsed"
    )


@pytest.mark.parametrize("value", ["x", "-1", "0", "1.5"])
def test_a_bad_size_limit_is_an_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    assert _problems(config, {MAX_CONFIG_BYTES_ENV: value}) == [
        "$DISPATCHER_MAX_CONFIG_BYTES: must be a whole number of bytes, at least 1"
    ]


def _laughs(anchor_prefix: str = "l") -> str:
    """A billion laughs: 9 aliases of 9 aliases ... nine deep, 9**9 values once expanded."""
    lines = [f"{anchor_prefix}0: &{anchor_prefix}0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        items = ", ".join([f"*{anchor_prefix}{level - 1}"] * 9)
        lines.append(f"{anchor_prefix}{level}: &{anchor_prefix}{level} [{items}]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(30)
def test_a_billion_laughs_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(_laughs())
    assert _problems(config) == [f"{config}: more than 100000 values: aliases nested too deep?"]
    subs = tmp_path / "subs.yaml"
    subs.write_text(_laughs())
    config.write_text("subscriptions_file: subs.yaml\n")
    assert _problems(config) == [f"{subs}: more than 100000 values: aliases nested too deep?"]


@pytest.mark.timeout(30)
def test_merge_keys_nested_nine_deep_are_read_once(tmp_path: Path) -> None:
    lines = ["m0: &m0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    lines += [f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 9)}]}}" for n in range(1, 9)]
    config = tmp_path / "c.yaml"
    config.write_text("\n".join(lines) + "\n")
    problems = _problems(config)
    assert len(problems) == 9
    assert all(p.endswith(": unknown key") for p in problems)


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_yaml_nested_past_the_stack_is_a_config_error(tmp_path: Path, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    config = tmp_path / "c.yaml"
    config.write_text(f"broker: {opener * 5000}1{closer * 5000}\n")
    assert _problems(config) == [f"{config}:1: nested more than 100 levels deep"]
