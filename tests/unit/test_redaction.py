"""Secrets as the models declare them: found through nested models, lists and mappings, shown
hidden in reprs, and kept out of text in every form a URL or a form body writes them."""

from __future__ import annotations

import typing
from typing import Annotated, Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from dispatcher.redaction import (
    CONNECTION,
    SECRET,
    HidesSecrets,
    Redactor,
    redact_secret_url,
    redact_url,
    secrecy,
    secrets_of,
    url_secrets,
)
from dispatcher.settings import Settings
from dispatcher.subscriptions.models import Subscription

SIGNING_KEY = "whsec_cmVkYWN0aW9uLXNpZ25pbmcta2V5LTI0Yg=="
BOT_TOKEN = "xoxb-1111-2222-redaction-token"
HOOK_PATH = "/services/T000/B000/XXXXredactionXXXX"
HEADER_VALUE = "Bearer header-value-9f3e"
HOOK_TOKEN = "hook-query-token-77"
SMTP_PASSWORD = "smtp-pa55-redaction"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
BROKER_PASSWORDS = ("broker-pw-one", "broker-pw-two")
DB_PASSWORD = "db-pa55-redaction"
REDIS_PASSWORD = "redis-pa55-redaction"

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {
        "name": "signed",
        "events": ["*"],
        "target": {
            "type": "webhook",
            "url": f"https://hooks.example.com/in?token={HOOK_TOKEN}&team=ops",
            "secret": SIGNING_KEY,
            "headers": {"Authorization": HEADER_VALUE, "X-Team": "ops-team-name"},
        },
    },
    {
        "name": "bot",
        "events": ["*"],
        "target": {"type": "slack", "token": BOT_TOKEN, "channel": "c"},
    },
    {
        "name": "incoming",
        "events": ["*"],
        "target": {"type": "slack_webhook", "url": f"https://hooks.slack.com{HOOK_PATH}"},
    },
    {"name": "mail", "events": ["*"], "target": {"type": "email", "to": ["ops@example.com"]}},
    {"name": "log", "events": ["*"], "target": {"type": "log"}},
]

SETTINGS = Settings.model_validate(
    {
        "broker": {
            "url": [f"amqp://disp:{pw}@rabbit-{n}:5672/" for n, pw in enumerate(BROKER_PASSWORDS)]
        },
        "smtp": {"host": "mail", "username": "disp", "password": SMTP_PASSWORD},
        "admin": {"token": ADMIN_TOKEN},
        "store": {"url": f"postgresql://disp:{DB_PASSWORD}@db:5432/dispatcher"},
        "rate_limits": {"redis_url": f"redis://:{REDIS_PASSWORD}@redis:6379/0"},
        "subscriptions": SUBSCRIPTIONS,
    }
)
SECRETS = [
    SIGNING_KEY,
    BOT_TOKEN,
    HOOK_PATH,
    HEADER_VALUE,
    HOOK_TOKEN,
    SMTP_PASSWORD,
    ADMIN_TOKEN,
    *BROKER_PASSWORDS,
    DB_PASSWORD,
    REDIS_PASSWORD,
]


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model reachable from `root` through its fields' types."""
    found: set[type[BaseModel]] = set()
    todo: list[Any] = [root]
    while todo:
        kind = todo.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind not in found:
                found.add(kind)
                todo += [field.annotation for field in kind.model_fields.values()]
        else:
            todo += typing.get_args(kind)
    return found


MODELS = sorted(_models(Settings), key=lambda model: model.__name__)


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_secret_field_says_how_secret_it_is(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        if "SecretStr" in repr(field.annotation):
            assert secrecy(field) is not None, f"{model.__name__}.{name} has no marker"


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_model_hides_its_secrets_in_its_repr(model: type[BaseModel]) -> None:
    assert issubclass(model, HidesSecrets)


def test_secrets_of_walks_nested_models_lists_and_mappings() -> None:
    found = secrets_of(SETTINGS)

    for secret in SECRETS:
        assert any(secret in item for item in found), secret
    assert "ops-team-name" in found  # every header value: which is a credential is not known
    assert "rabbit-0" not in " ".join(found)  # a connection URL's host is not secret
    assert "disp" not in found  # nor its user name


def test_a_secret_nobody_marked_is_secret_whole() -> None:
    class Unmarked(BaseModel):
        key: SecretStr
        nested: list[dict[str, SecretStr]]
        plain: str = "not-secret-at-all"

    model = Unmarked(key=SecretStr("k-123456"), nested=[{"a": SecretStr("n-123456")}])

    assert secrets_of(model) == ["k-123456", "n-123456"]


def test_a_marked_plain_string_field_is_secret() -> None:
    class Marked(BaseModel):
        value: Annotated[str, SECRET]
        server: Annotated[str | None, CONNECTION] = None

    model = Marked(value="plain-secret", server="redis://u:p455word@h/0?token=t0ken&db=1")

    assert secrets_of(model) == ["plain-secret", "p455word", "t0ken"]


@pytest.mark.parametrize("sub", SETTINGS.subscriptions, ids=lambda sub: sub.name)
def test_no_target_shows_a_secret_in_its_repr_or_str(sub: Subscription) -> None:
    shown = repr(sub) + str(sub) + repr(sub.target) + str(sub.target)

    for secret in SECRETS:
        assert secret not in shown
    assert sub.name in shown  # the rest is shown as it was


def test_reprs_keep_the_shape_and_where_a_url_goes() -> None:
    webhook, _, incoming, *_ = SETTINGS.subscriptions

    assert "headers={'Authorization': '***', 'X-Team': '***'}" in repr(webhook.target)
    assert "url=https://hooks.example.com/***" in repr(webhook.target)
    assert "secret=***" in repr(webhook.target)
    assert "url=https://hooks.slack.com/***" in repr(incoming.target)


def test_settings_show_no_secret_in_their_repr_or_str() -> None:
    shown = repr(SETTINGS) + str(SETTINGS)
    shown += "".join(repr(getattr(SETTINGS, name)) for name in type(SETTINGS).model_fields)

    for secret in SECRETS:
        assert secret not in shown
    assert "amqp://disp:***@rabbit-0:5672/" in shown  # a connection URL keeps its host
    assert "postgresql://disp:***@db:5432/dispatcher" in shown


ODD_PASSWORDS = ["pa/ss-word", "pa?ss-word", "pa#ss-word", "pa@ss/word", "123/ss-word"]


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("amqp://guest:pw@h:5672/", "amqp://guest:***@h:5672/", ["pw"]),
        ("amqp://h/", "amqp://h/", []),
        ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1", ["pw"]),
        ("redis://u:p@h/0?x=1", "redis://u:***@h/0?x=1", ["p"]),
        ("amqp://u:p%2Fw%40x@h/", "amqp://u:***@h/", ["p%2Fw%40x"]),
        ("amqp://u:p@ss@h/", "amqp://u:***@h/", ["p@ss"]),
        ("amqp://u:pw@[::1]:5672/", "amqp://u:***@[::1]:5672/", ["pw"]),
        ("postgresql://u:pw@h:99999/db", "postgresql://***", ["pw"]),  # a bad port
        ("amqp://u:pw@[::1/", "amqp://***", ["pw"]),  # a malformed IPv6 host
        ("not a url", "not a url", []),
        *[(f"amqp://u:{pw}@h:5672/", "amqp://***", [pw]) for pw in ODD_PASSWORDS],
    ],
)
def test_connection_urls_show_without_their_secrets(
    url: str, shown: str, secrets: list[str]
) -> None:
    assert redact_url(url) == shown
    assert url_secrets(url) == secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/x", "https://hooks.slack.com/***"),
        ("https://u:pw@h.example:8443/x?token=t", "https://h.example:8443/***"),
        ("http://[::1]:8080/hook", "http://[::1]:8080/***"),
        ("https://u:pa/ss@h/", "https://***"),
        ("https://h:99999/x", "https://***"),
    ],
)
def test_credential_urls_show_only_where_they_go(url: str, shown: str) -> None:
    assert redact_secret_url(url) == shown


@pytest.mark.parametrize("password", ODD_PASSWORDS)
@pytest.mark.parametrize("field", ["broker.url", "store.url", "rate_limits.redis_url"])
def test_a_server_url_with_an_at_past_its_host_is_refused_without_quoting_it(
    field: str, password: str
) -> None:
    section, key = field.split(".")
    scheme = {"broker": "amqp", "store": "postgresql", "rate_limits": "redis"}[section]

    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({section: {key: f"{scheme}://user:{password}@host:1/x"}})

    assert "percent-encode" in str(caught.value)
    assert password not in str(caught.value)


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_a_webhook_url_with_an_at_past_its_host_is_refused(password: str) -> None:
    body = {**SUBSCRIPTIONS[0], "target": {"type": "webhook", "url": f"https://u:{password}@h/"}}

    with pytest.raises(ValidationError) as caught:
        Subscription.model_validate(body)

    assert "percent-encode" in str(caught.value)
    assert password not in str(caught.value)


@pytest.mark.parametrize("secret", ["s3cret/pa ss+wörd", "p@ss?#&=word"])
def test_the_redactor_hides_a_secret_in_every_form_a_url_writes_it(secret: str) -> None:
    redactor = Redactor([secret])
    forms = [secret, quote(secret, safe=""), quote_plus(secret), quote(secret)]

    for form in forms:
        assert redactor.scrub(f"<{form}>") == "<***>", form


def test_the_redactor_hides_the_longest_secret_first_and_learns_on_reload() -> None:
    redactor = Redactor(["token-abc", "token-abc-def"])
    redactor.update(["later-secret"])

    assert redactor.scrub("token-abc-def token-abc later-secret") == "*** *** ***"


def test_the_redactor_hides_passwords_of_urls_it_was_not_told_about() -> None:
    redactor = Redactor()

    assert (
        redactor.scrub("lost amqp://guest:guest@h/ and a word")
        == "lost amqp://guest:***@h/ and a word"
    )


def test_short_secrets_are_left_alone_unless_asked() -> None:
    text = "a pin: 1234"

    assert Redactor(["1234"]).scrub(text) == text  # it would mangle ordinary numbers
    assert Redactor(["1234"], min_length=1).scrub(text) == "a pin: ***"
