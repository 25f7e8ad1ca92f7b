"""`dispatcher config show` and `config schema`: each value with its origin, no secret shown, and
a JSON Schema that takes the files we ship and refuses mistakes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent
from typing import Any

import jsonschema
import pytest
import yaml

from dispatcher.config import load_settings
from dispatcher.errors import ConfigError
from dispatcher.introspect import (
    Setting,
    config_schema,
    effective_config,
    render_json,
    render_text,
)

ROOT = Path(__file__).resolve().parents[2]

#: line numbers matter: the tests name them
ORIGINS = """\
broker:
  prefetch: 50
  queue: ${QUEUE}
  exchange: ${EXCHANGE:-events.main}
delivery:
  retry_delays: [10s, "${LONG_DELAY}"]
subscriptions:
  - name: ops
    events: [deployment.*]
    target:
      type: webhook
      url: https://example.com/hook
"""
ORIGINS_ENV = {"QUEUE": "q1", "LONG_DELAY": "2h"}

SIGNING_KEY = "whsec_aW50cm9zcGVjdC1zaWduaW5nLWtleS0yNGI="
SLACK_TOKEN = "xoxb-1111-2222-slack-token-value"
SMTP_PASSWORD = "smtp-pa55word-value"
BROKER_PASSWORD = "broker-pa55word"
REDIS_PASSWORD = "redis-pa55word"
HOOK_URL = "https://hooks.example.com/T0/hook-token-value"
HEADER_VALUE = "Bearer header-token-value"
SECRETS = {
    "signing key": SIGNING_KEY,
    "slack token": SLACK_TOKEN,
    "smtp password": SMTP_PASSWORD,
    "broker password": BROKER_PASSWORD,
    "redis password": REDIS_PASSWORD,
    "webhook url token": "hook-token-value",
    "header value": "header-token-value",
}

WITH_SECRETS = f"""\
broker:
  url: amqp://disp:{BROKER_PASSWORD}@rabbit.internal:5672/prod
rate_limits:
  redis_url: redis://:{REDIS_PASSWORD}@redis.internal:6379/0
smtp:
  host: mail.internal
  username: dispatcher
  password: ${{SMTP_PASSWORD}}
subscriptions:
  - name: signed
    events: ["*"]
    target:
      type: webhook
      url: {HOOK_URL}
      secret: {SIGNING_KEY}
      headers: {{Authorization: {HEADER_VALUE}}}
  - name: chat
    description: posts with ${{SLACK_TOKEN}}
    events: ["*"]
    target: {{type: slack, token: "${{SLACK_TOKEN}}", channel: "#ops"}}
"""
SECRETS_ENV = {"SMTP_PASSWORD": SMTP_PASSWORD, "SLACK_TOKEN": SLACK_TOKEN}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path, so origins name `config.yaml` as a user who ran from its folder would."""
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "config.yaml") -> str:
    Path(name).write_text(dedent(text), encoding="utf-8")
    return name


def show(text: str, env: Mapping[str, str] | None = None) -> dict[str, Setting]:
    return {setting.key: setting for setting in effective_config(write(text), env or {})}


def test_a_value_written_in_the_file_names_its_file_and_line() -> None:
    shown = show(ORIGINS, ORIGINS_ENV)

    assert shown["broker.prefetch"] == Setting("broker.prefetch", 50, "config.yaml:2")
    target = "subscriptions[ops].target.type"
    assert shown[target] == Setting(target, "webhook", "config.yaml:11")


def test_a_value_from_a_variable_names_the_variable() -> None:
    shown = show(ORIGINS, ORIGINS_ENV)

    assert shown["broker.queue"] == Setting("broker.queue", "q1", "$QUEUE")
    delays = shown["delivery.retry_delays"]
    assert delays == Setting("delivery.retry_delays", ["10s", "2h"], "$LONG_DELAY")


def test_a_fallback_written_in_the_file_is_from_the_file_unless_its_variable_is_set() -> None:
    unset = show(ORIGINS, ORIGINS_ENV)["broker.exchange"]
    given = show(ORIGINS, {**ORIGINS_ENV, "EXCHANGE": "ex"})["broker.exchange"]

    assert unset == Setting("broker.exchange", "events.main", "config.yaml:4")
    assert given == Setting("broker.exchange", "ex", "$EXCHANGE")


def test_a_value_not_written_is_a_default() -> None:
    shown = show(ORIGINS, ORIGINS_ENV)

    assert shown["delivery.attempts"] == Setting("delivery.attempts", 3, "default")
    # derived from the queue, but not written: still the default rule
    queue = shown["broker.dead_letter_queue"]
    assert queue == Setting("broker.dead_letter_queue", "q1.dead", "default")
    assert shown["smtp"] == Setting("smtp", None, "default")
    assert shown["subscriptions[ops].enabled"].origin == "default"


def test_the_broker_url_override_is_named() -> None:
    env = {**ORIGINS_ENV, "DISPATCHER_BROKER_URL": "amqp://u:hidden-pw@rabbit:5672/"}

    url = show(ORIGINS, env)["broker.url"]

    assert url == Setting("broker.url", "amqp://u:***@rabbit:5672/", "$DISPATCHER_BROKER_URL")


def test_a_broker_url_list_sets_url_and_urls_from_its_line() -> None:
    shown = show("logging: {}\nbroker:\n  url: [amqp://a:5672/, amqp://b:5672/]\n")

    assert shown["broker.url"] == Setting("broker.url", "amqp://a:5672/", "config.yaml:3")
    assert shown["broker.urls"].value == ["amqp://a:5672/", "amqp://b:5672/"]
    assert shown["broker.urls"].origin == "config.yaml:3"


def test_subscriptions_from_a_subscriptions_file_name_that_file() -> None:
    write("# ops\n- name: ops\n  events: [x]\n  target:\n    type: log\n", "subs.yaml")

    shown = show("subscriptions_file: subs.yaml\n")

    assert shown["subscriptions_file"].origin == "config.yaml:1"
    assert shown["subscriptions[ops].name"] == Setting(
        "subscriptions[ops].name", "ops", "subs.yaml:2"
    )
    level = shown["subscriptions[ops].target.level"]
    assert level == Setting("subscriptions[ops].target.level", "info", "default")


@pytest.mark.parametrize("render", [render_text, render_json])
@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_secret_shows(render: Any, name: str) -> None:
    env = {**SECRETS_ENV, "DISPATCHER_BROKER_URL": ""}  # empty: no override

    text = render(effective_config(write(WITH_SECRETS), env))

    assert SECRETS[name] not in text
    assert "rabbit.internal" in text  # a connection URL keeps its host
    assert "redis.internal" in text


def test_secrets_show_as_stars_and_keep_their_origin() -> None:
    shown = show(WITH_SECRETS, SECRETS_ENV)

    assert shown["broker.url"].value == "amqp://disp:***@rabbit.internal:5672/prod"
    assert shown["rate_limits.redis_url"].value == "redis://:***@redis.internal:6379/0"
    assert shown["smtp.password"] == Setting("smtp.password", "***", "$SMTP_PASSWORD")
    assert shown["subscriptions[signed].target.url"].value == "https://hooks.example.com/***"
    assert shown["subscriptions[signed].target.secret"].value == "***"
    header = "subscriptions[signed].target.headers.Authorization"
    assert shown[header] == Setting(header, "***", "config.yaml:16")
    assert shown["subscriptions[chat].target.token"] == Setting(
        "subscriptions[chat].target.token", "***", "$SLACK_TOKEN"
    )
    # a secret quoted where no secret is expected is hidden all the same
    assert shown["subscriptions[chat].description"].value == "posts with ***"


def test_json_rendering_lists_every_setting_with_three_stable_keys() -> None:
    settings = effective_config(write(ORIGINS), ORIGINS_ENV)

    document = json.loads(render_json(settings))

    assert list(document) == ["settings"]
    entries = document["settings"]
    assert all(list(entry) == ["key", "value", "origin"] for entry in entries)
    assert [Setting(**entry) for entry in entries] == settings
    by_key = {entry["key"]: entry for entry in entries}
    assert by_key["broker.prefetch"] == {
        "key": "broker.prefetch",
        "value": 50,
        "origin": "config.yaml:2",
    }
    assert by_key["broker.queue"] == {"key": "broker.queue", "value": "q1", "origin": "$QUEUE"}
    assert by_key["delivery.attempts"] == {
        "key": "delivery.attempts",
        "value": 3,
        "origin": "default",
    }
    assert by_key["delivery.retry_delays"]["value"] == ["10s", "2h"]
    assert by_key["subscriptions[ops].target.url"]["value"] == "https://example.com/***"
    assert by_key["subscriptions[ops].filter.projects"]["value"] == []


def test_text_rendering_is_one_aligned_line_per_setting() -> None:
    settings = effective_config(write(ORIGINS), ORIGINS_ENV)

    lines = render_text(settings).splitlines()

    assert len(lines) == len(settings)
    assert (
        "broker.prefetch = 50"
        in lines[settings.index(Setting("broker.prefetch", 50, "config.yaml:2"))]
    )
    columns = set()
    for line, setting in zip(lines, settings, strict=True):
        found = re.fullmatch(r"(\S+) = (.*?) +# (.+)", line)
        assert found is not None, line
        assert found.groups()[::2] == (setting.key, setting.origin)
        assert json.loads(found.group(2)) == setting.value
        columns.add(line.index("  # "))
    assert len(columns) == 1


def test_an_invalid_config_raises_the_loaders_error() -> None:
    path = write("broker:\n  prefetch: many\nbrokr: {}\n")

    with pytest.raises(ConfigError) as shown:
        effective_config(path, {})
    with pytest.raises(ConfigError) as loaded:
        load_settings(path, {})

    assert shown.value.problems == loaded.value.problems


def validator() -> Any:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


SHIPPED = [
    "config/dispatcher.yaml",
    "config/container.yaml",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "config/examples").glob("*.yaml")),
]


def test_every_example_is_checked() -> None:
    assert "config/examples/seeds.yaml" in SHIPPED
    assert "config/examples/seeds-subscriptions.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED)
def test_the_schema_takes_the_shipped_files(path: str) -> None:
    document = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))

    assert list(validator().iter_errors(document)) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("broker:\n  url: [amqp://a:5672/, amqp://b:5672/]\n", id="broker-url-list"),
        pytest.param('smtp:\n  port: "${SMTP_PORT:-587}"\n', id="reference-for-an-int"),
        pytest.param('broker:\n  queue: "${QUEUE}"\n', id="reference-for-a-pattern"),
        pytest.param('logging:\n  level: "${LEVEL:-info}"\n', id="reference-for-a-choice"),
        pytest.param(
            "subscriptions:\n  - name: ops\n    events: [x]\n    filter: {organization: acme}\n"
            "    target: {type: slack, token: xoxb-1, channel: '#ops'}\n",
            id="organization-as-a-string",
        ),
    ],
)
def test_the_schema_takes_what_the_loader_takes(text: str) -> None:
    env = {"QUEUE": "q", "SMTP_PORT": "2525"}

    load_settings(write(text), env)  # the loader takes it...
    assert list(validator().iter_errors(yaml.safe_load(text))) == []  # ...and so does the schema


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("brokr:\n  prefetch: 10\n", id="unknown-top-level-key"),
        pytest.param('broker: {prefetch: "lots"}\n', id="string-for-an-int"),
        pytest.param("broker: {prefetch: 0}\n", id="int-out-of-range"),
        pytest.param("logging: {level: loud}\n", id="not-a-choice"),
        pytest.param(
            "subscriptions:\n  - {name: a, events: [x], target: {type: log, lvl: info}}\n",
            id="unknown-key-in-a-target",
        ),
    ],
)
def test_the_schema_refuses_mistakes(text: str) -> None:
    assert not validator().is_valid(yaml.safe_load(text))


def test_secrets_are_plain_strings_in_the_schema() -> None:
    defs = config_schema()["$defs"]

    assert defs["SlackTarget"]["properties"]["token"] == {
        "format": "password",
        "title": "Token",
        "type": "string",
        "writeOnly": True,
    }
    assert "**********" not in json.dumps(defs)
