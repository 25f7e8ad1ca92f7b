"""Loading the YAML config: a good file loads; each mistake is one `file:line: field: message`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from dispatcher.config import load_settings, summarize
from dispatcher.errors import ConfigError
from dispatcher.settings import Settings
from dispatcher.subscriptions.models import WebhookTarget

KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

GOOD = """\
broker:
  url: amqp://guest:guest@127.0.0.1:5672/
  exchange: events
  queue: dispatcher.events
  dead_letter_queue: dispatcher.dead
  prefetch: 200
subscriptions:
  - name: deploys-to-ops
    enabled: true
    events: ["deployment.*", "parameter.created"]
    filter:
      organization: acme
      projects: ["product*", "analytics"]
      environment_types: [PRODUCTION, STAGING]
      environments: ["prod-*"]
      repositories: ["maven-releases"]
      apps: ["my-app"]
    target:
      type: webhook
      url: https://example.com/hooks/dispatcher
      secret: ${OPS_WEBHOOK_SECRET}
      headers: {X-Team: ops}
      timeout_s: 10
  - name: audit
    enabled: false
    events: ["*"]
    target: {type: log}
"""

#: one subscription, to build broken variants from; its `events` is on line 4
ONE = """\
subscriptions:
  - name: ops
    events: [deployment.succeeded]
    target:
      type: webhook
      url: https://example.com/hook
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path, so problems name `config.yaml` as a user who ran from its folder would."""
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "config.yaml") -> str:
    Path(name).write_text(dedent(text), encoding="utf-8")
    return name


def load(text: str, env: Mapping[str, str] | None = None) -> Settings:
    return load_settings(write(text), env or {})


def problems(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return [str(problem) for problem in caught.value.problems]


def test_the_documented_config_loads() -> None:
    settings = load(GOOD, {"OPS_WEBHOOK_SECRET": KEY})

    assert settings.broker.prefetch == 200
    ops, audit = settings.subscriptions
    assert ops.filter.organization == ["acme"]
    assert ops.filter.environment_types == ["PRODUCTION", "STAGING"]
    assert isinstance(ops.target, WebhookTarget)
    assert ops.target.secret is not None
    assert ops.target.secret.get_secret_value() == KEY
    assert ops.target.headers == {"X-Team": "ops"}
    assert not audit.enabled
    assert summarize(settings) == "2 subscriptions (1 enabled): 1 log, 1 webhook"


def test_an_empty_file_is_all_defaults() -> None:
    settings = load("# nothing yet\n")

    assert settings == Settings()
    assert summarize(settings) == "0 subscriptions"


def test_summary_of_one_subscription() -> None:
    assert summarize(load(ONE)) == "1 subscription (1 enabled): 1 webhook"


def test_event_names_arrive_normalised() -> None:
    settings = load(ONE.replace("[deployment.succeeded]", "[DEPLOYMENT_SUCCESSFUL, file_uploaded]"))

    assert settings.subscriptions[0].events == ["deployment.succeeded", "file.uploaded"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "broker:\n  url: [amqp://x\nlogging: {}\n",
            "config.yaml:3: expected ',' or ']', but got ':'",
            id="yaml-syntax",
        ),
        pytest.param(
            "broker:\n  prefetch: 10\n  queue: q\n  prefetch: 20\n",
            "config.yaml:4: broker.prefetch: duplicate key (first at line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "brokr:\n  prefetch: 10\n",
            "config.yaml:1: brokr: unknown key; did you mean 'broker'?",
            id="unknown-top-level-key",
        ),
        pytest.param(
            "broker:\n  prefetch: many\n",
            "config.yaml:2: broker.prefetch: "
            "Input should be a valid integer, unable to parse string as an integer",
            id="wrong-type",
        ),
        pytest.param(
            ONE + "      secrt: " + KEY + "\n",
            "config.yaml:7: subscriptions[ops].target.secrt: unknown key; did you mean 'secret'?",
            id="unknown-key-in-target",
        ),
        pytest.param(
            ONE.replace("type: webhook", "type: pager"),
            "config.yaml:5: subscriptions[ops].target.type: must be one of 'webhook', 'log', "
            "'slack', 'slack_webhook', 'email'",
            id="unknown-target-type",
        ),
        pytest.param(
            ONE.replace("      type: webhook\n", ""),
            "config.yaml:4: subscriptions[ops].target.type: Field required",
            id="missing-target-type",
        ),
        pytest.param(
            ONE.replace("    events: [deployment.succeeded]\n", ""),
            "config.yaml:2: subscriptions[ops].events: Field required",
            id="missing-events",
        ),
        pytest.param(
            ONE.replace("https://example.com/hook", "example.com/hook"),
            "config.yaml:6: subscriptions[ops].target.url: "
            "must be an absolute http:// or https:// URL",
            id="relative-webhook-url",
        ),
        pytest.param(
            ONE.replace("https://example.com/hook", "http://169.254.169.254/latest/meta-data/"),
            "config.yaml:6: subscriptions[ops].target.url: refused: 169.254.169.254 is a cloud "
            "metadata address; allow it with a CIDR naming it in delivery.allowed_networks",
            id="webhook-to-cloud-metadata",
        ),
        pytest.param(
            ONE.replace("https://example.com/hook", "http://localhost:5672/?token=t0ken"),
            "config.yaml:6: subscriptions[ops].target.url: refused: 127.0.0.1 is a loopback "
            "address; allow it with delivery.allowed_networks (CIDRs) or "
            "delivery.allow_private_networks",
            id="webhook-to-localhost",
        ),
        pytest.param(
            "slack:\n  api_url: http://10.0.0.5/api/\n",
            "config.yaml:2: slack.api_url: refused: 10.0.0.5 is a private address (RFC 1918 / "
            "RFC 4193); allow it with delivery.allowed_networks (CIDRs) or "
            "delivery.allow_private_networks",
            id="slack-api-url-private",
        ),
        pytest.param(
            "delivery:\n  allowed_networks: [10.0.0.0/8, 10.0.0.1/8]\n",
            "config.yaml:2: delivery.allowed_networks[1]: host bits are set: name the network, "
            "e.g. 10.20.0.0/16 or fd00::/8",
            id="allowed-network-with-host-bits",
        ),
        pytest.param(
            "delivery:\n  allowed_networks:\n    - 10.0.0.0/8\n    - intranet\n",
            "config.yaml:4: delivery.allowed_networks[1]: not a network in CIDR notation, "
            "e.g. 10.20.0.0/16 or fd00::/8",
            id="allowed-network-not-a-cidr",
        ),
        pytest.param(
            ONE.replace("deployment.succeeded", "deployment.succeeded, ''"),
            "config.yaml:3: subscriptions[ops].events: empty event pattern",
            id="empty-event-pattern",
        ),
        pytest.param(
            ONE.replace("name: ops", "name: 7"),
            "config.yaml:2: subscriptions[0].name: Input should be a valid string",
            id="name-not-a-string",
        ),
        pytest.param(
            "- just a list\n",
            "config.yaml:1: the top level must be a mapping of settings",
            id="top-level-list",
        ),
        pytest.param(
            "a: 1\n---\nb: 2\n",
            "config.yaml:2: but found another document",
            id="two-documents",
        ),
        pytest.param(
            "broker:\n  prefetch: !!int lots\n",
            "config.yaml:2: not a valid int",
            id="bad-explicit-tag",
        ),
        pytest.param(
            "logging: !env LEVEL\n",
            "config.yaml:1: could not determine a constructor for the tag '!env'",
            id="unknown-tag",
        ),
    ],
)
def test_one_mistake_is_one_problem(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_allowed_networks_let_literal_hosts_load() -> None:
    internal = ONE.replace("https://example.com/hook", "http://10.20.1.2:8080/hook")
    assert problems(internal) == [
        "config.yaml:6: subscriptions[ops].target.url: refused: 10.20.1.2 is a private address "
        "(RFC 1918 / RFC 4193); allow it with delivery.allowed_networks (CIDRs) or "
        "delivery.allow_private_networks"
    ]
    for delivery in ("allowed_networks: [10.20.0.0/16]", "allow_private_networks: true"):
        settings = load(f"delivery:\n  {delivery}\n" + internal)
        assert settings.delivery.guard.host_refusal("http://10.20.1.2/") is None


def test_nested_aliases_cannot_blow_up_the_load() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]

    assert problems("\n".join(lines)) == [
        "config.yaml: more than 100000 values: aliases nested too deep?"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "subscriptions:\n  - name: " + "[" * 1000 + "]" * 1000 + "\n",
            "config.yaml:2: nested more than 100 levels deep",
            id="deep",
        ),
        pytest.param(
            "broker:\n  queue: &loop [1, *loop]\n",
            "config.yaml:2: nested more than 100 levels deep: an alias inside its own value?",
            id="alias-inside-itself",
        ),
    ],
)
def test_nesting_that_would_exhaust_the_stack_is_a_problem(text: str, expected: str) -> None:
    # found by fuzz/fuzz_config.py (corpus: too-deep.yaml, alias-inside-itself.yaml): both raised
    # RecursionError out of check-config instead of a ConfigError
    assert problems(text) == [expected]


def test_nesting_up_to_the_limit_is_read() -> None:
    text = "broker: {queue: " + "[" * 98 + "]" * 98 + "}\n"  # 100 levels, the document's own too

    assert problems(text) == ["config.yaml:1: broker.queue: Input should be a valid string"]


def test_a_character_yaml_does_not_allow_is_a_problem_with_its_line() -> None:
    # found by fuzz/fuzz_config.py (corpus: control-character.yaml): PyYAML's reader refuses it
    # as the loader is made, outside the handling of YAML errors, so check-config crashed
    write("- from-file\n- \x00\n", "subs.yaml")

    assert problems("broker:\n  queue: \x1b[31mred\n") == [
        "config.yaml:2: unacceptable character #x001b: special characters are not allowed"
    ]
    assert problems("subscriptions_file: subs.yaml\n") == [
        "subs.yaml:2: unacceptable character #x0000: special characters are not allowed"
    ]


@pytest.mark.parametrize("tag", ["!!int", "!!float", '!!int "-"'])
def test_a_number_tag_on_an_empty_value_is_a_problem(tag: str) -> None:
    # found by fuzz/fuzz_config.py (corpus: empty-int-tag): PyYAML's constructor raised
    # IndexError, which check-config did not catch
    kind = tag.split()[0].removeprefix("!!")

    assert problems(f"broker:\n  prefetch: {tag}\n") == [f"config.yaml:2: not a valid {kind}"]


def test_a_bad_signing_secret_is_reported_without_its_value() -> None:
    secret = "whsec_not-base64-TOPSECRET"
    text = ONE + "      secret: ${HOOK_KEY}\n"

    with pytest.raises(ConfigError) as caught:
        load(text, {"HOOK_KEY": secret})

    assert [str(p) for p in caught.value.problems] == [
        "config.yaml:7: subscriptions[ops].target.secret: "
        "must be a Standard Webhooks signing key: 'whsec_' followed by base64"
    ]
    assert "TOPSECRET" not in str(caught.value)
    assert "TOPSECRET" not in repr(caught.value.problems)


def test_an_unset_variable_is_reported_once_at_its_line() -> None:
    text = ONE + "      secret: ${OPS_WEBHOOK_SECRET}\n"

    assert problems(text) == [
        "config.yaml:7: subscriptions[ops].target.secret: "
        "environment variable OPS_WEBHOOK_SECRET is not set"
    ]


def test_a_malformed_reference_is_reported() -> None:
    text = ONE.replace("https://example.com/hook", "https://example.com/${HOOK")

    assert problems(text) == [
        "config.yaml:6: subscriptions[ops].target.url: "
        "a '${' must open ${NAME} or ${NAME:-default}; write $${ for a literal '${'"
    ]


def test_references_expand_with_defaults_and_escapes() -> None:
    text = """\
    broker:
      url: amqp://${USER}:${PASSWORD:-guest}@${HOST:-localhost}:5672/
      exchange: ${EXCHANGE:-}events
      connection_name: cost $${HOME} and $$5 ${SUFFIX}
    """

    env = {"USER": "svc", "HOST": "", "SUFFIX": "!"}
    broker = load(text, env).broker

    assert broker.url.get_secret_value() == "amqp://svc:guest@localhost:5672/"
    assert broker.exchange == "events"
    assert broker.connection_name == "cost ${HOME} and $$5 !"


def test_only_string_values_expand_and_pydantic_coerces_them() -> None:
    text = "broker:\n  prefetch: ${PREFETCH}\n${KEY_NOT_EXPANDED}: 1\n"

    assert problems(text, {"PREFETCH": "50"}) == ["config.yaml:3: ${KEY_NOT_EXPANDED}: unknown key"]
    assert load("broker:\n  prefetch: ${PREFETCH}\n", {"PREFETCH": "50"}).broker.prefetch == 50


def test_the_broker_url_variable_overrides_the_file() -> None:
    text = "broker:\n  url: amqp://${UNSET}@file-host/\n  prefetch: 5\n"
    env = {"DISPATCHER_BROKER_URL": "amqp://u:p@env-host/${NOT_EXPANDED}"}

    broker = load(text, env).broker

    assert broker.url.get_secret_value() == "amqp://u:p@env-host/${NOT_EXPANDED}"
    assert broker.prefetch == 5
    assert load("{}", {"DISPATCHER_BROKER_URL": ""}).broker == Settings().broker


def test_a_bad_broker_url_from_the_environment_names_the_variable() -> None:
    assert problems("{}", {"DISPATCHER_BROKER_URL": "http://secret@host/"}) == [
        "$DISPATCHER_BROKER_URL: broker.url: must be an amqp:// or amqps:// URL with a host"
    ]


def test_a_broker_url_with_a_bad_port_is_a_config_error() -> None:
    assert problems("broker: {url: 'amqp://u:p@host:99999/'}") == [
        "config.yaml:1: broker.url: the port must be a number from 0 to 65535"
    ]


def test_merge_keys_and_anchors_work_as_in_safe_load() -> None:
    text = """\
    subscriptions:
      - name: a
        events: ["*"]
        target: &hook {type: webhook, url: "https://example.com/a", timeout_s: 5}
      - name: b
        events: ["*"]
        target:
          <<: *hook
          url: https://example.com/b
    """

    a, b = load(text).subscriptions

    assert isinstance(b.target, WebhookTarget)
    assert b.target.url.get_secret_value() == "https://example.com/b"
    assert b.target.timeout_s == 5
    assert isinstance(a.target, WebhookTarget)
    assert a.target.url.get_secret_value() == "https://example.com/a"


SUBS = """\
- name: from-file
  events: [file.uploaded]
  target:
    type: webhook
    url: https://example.com/files
"""


def test_subscriptions_file_is_appended_to_the_inline_list() -> None:
    Path("teams").mkdir()
    write(SUBS, "teams/subs.yaml")

    settings = load(ONE + "subscriptions_file: teams/subs.yaml\n")

    assert [sub.name for sub in settings.subscriptions] == ["ops", "from-file"]
    assert settings.subscriptions_file == "teams/subs.yaml"
    assert summarize(settings) == "2 subscriptions (2 enabled): 2 webhook"


def test_subscriptions_file_may_be_a_mapping_and_is_relative_to_the_config() -> None:
    Path("conf").mkdir()
    write("subscriptions:\n" + SUBS, "conf/subs.yaml")
    write("subscriptions_file: subs.yaml\n", "conf/config.yaml")

    settings = load_settings("conf/config.yaml", {})

    assert [sub.name for sub in settings.subscriptions] == ["from-file"]


def test_a_problem_in_the_subscriptions_file_names_that_file_and_line() -> None:
    write("# team subscriptions\n" + SUBS.replace("https://", "ftp://"), "subs.yaml")

    assert problems(ONE + "subscriptions_file: subs.yaml\n") == [
        "subs.yaml:6: subscriptions[from-file].target.url: "
        "must be an absolute http:// or https:// URL"
    ]


def test_a_nameless_item_in_the_subscriptions_file_is_counted_from_that_file() -> None:
    write(SUBS + "- events: [x]\n  target: {type: log}\n", "subs.yaml")

    assert problems(ONE + "subscriptions_file: subs.yaml\n") == [
        "subs.yaml:6: subscriptions[1].name: Field required"
    ]


def test_a_duplicate_name_across_inline_and_file_points_at_the_first() -> None:
    write(SUBS.replace("from-file", "ops"), "subs.yaml")

    assert problems(ONE + "subscriptions_file: subs.yaml\n") == [
        "subs.yaml:1: subscriptions[0].name: name 'ops' is already used at config.yaml:2"
    ]


def test_subscriptions_file_problems_of_its_own() -> None:
    write("subscriptions:\n  - name: [\n", "broken.yaml")
    write("subscriptions: []\nteams: {}\n", "extra.yaml")

    assert problems("subscriptions_file: missing.yaml\n") == [
        "config.yaml:1: subscriptions_file: cannot read missing.yaml: No such file or directory"
    ]
    assert problems("subscriptions_file: broken.yaml\n") == [
        "broken.yaml:3: expected the node content, but found '<stream end>'"
    ]
    assert problems("subscriptions_file: extra.yaml\n") == ["extra.yaml:2: teams: unknown key"]
    write("name: x\n", "shape.yaml")
    assert problems("subscriptions_file: shape.yaml\n") == [
        "shape.yaml:1: must hold a list of subscriptions"
        " (or a mapping with one key, 'subscriptions')"
    ]


def test_every_problem_is_reported_in_file_order() -> None:
    write(SUBS.replace("[file.uploaded]", "[]"), "subs.yaml")
    text = """\
    broker:
      prefetch: 0
      exchnage: events
    subscriptions_file: subs.yaml
    subscriptions:
      - name: ops
        events: [deployment.succeeded]
        target:
          type: webhook
          url: https://example.com/hook
          secret: ${MISSING}
      - name: ops
        events: ["*"]
        target: {type: log, level: loud}
    """

    assert problems(text) == [
        "config.yaml:2: broker.prefetch: Input should be greater than or equal to 1",
        "config.yaml:3: broker.exchnage: unknown key; did you mean 'exchange'?",
        "config.yaml:11: subscriptions[ops].target.secret: environment variable MISSING is not set",
        "config.yaml:12: subscriptions[1].name: name 'ops' is already used at config.yaml:6",
        "config.yaml:14: subscriptions[ops].target.level: "
        "Input should be 'debug', 'info' or 'warning'",
        "subs.yaml:2: subscriptions[from-file].events: "
        "List should have at least 1 item after validation, not 0",
    ]


def test_a_missing_config_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("nowhere.yaml", {})

    assert [str(p) for p in caught.value.problems] == [
        "nowhere.yaml: cannot read: No such file or directory"
    ]


def test_a_config_that_is_not_utf8_is_a_config_error() -> None:
    Path("latin1.yaml").write_bytes(b"logging: {level: \xe9}\n")

    with pytest.raises(ConfigError, match=r"latin1.yaml: cannot read: not UTF-8 text"):
        load_settings("latin1.yaml", {})


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_TEST_QUEUE", "from-environ")
    monkeypatch.delenv("DISPATCHER_BROKER_URL", raising=False)

    settings = load_settings(write("broker: {queue: '${DISPATCHER_TEST_QUEUE}'}\n"))

    assert settings.broker.queue == "from-environ"
