"""Subscription, Filter and Target: the data a team writes to ask for notifications.

Pure pydantic models, validated at load time so a mistake is a config error with a line number,
never a failure at delivery time. Event names written the seeds' way (`parameter_created`,
`DEPLOYMENT_SUCCESSFUL`) are normalised here to dispatcher's types (`parameter.created`,
`deployment.succeeded`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from dispatcher.durations import parse_duration
from dispatcher.rates import Rate
from dispatcher.redaction import SECRET, SECRET_URL, HidesSecrets, check_plain_authority
from dispatcher.template_budget import budget_in

#: Resources and actions of the seeds' event names, and the synonyms they use for actions.
RESOURCES = frozenset(
    {"parameter", "project", "environment", "value", "deployment", "file", "template", "secret"}
)
ACTION_SYNONYMS = {
    "successful": "succeeded",
    "success": "succeeded",
    "succeeded": "succeeded",
    "failure": "failed",
    "failed": "failed",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "started": "started",
    "created": "created",
    "updated": "updated",
    "deleted": "deleted",
    "uploaded": "uploaded",
    "downloaded": "downloaded",
}

_EVENT_PATTERN = re.compile(r"^[A-Za-z0-9_.:/*?\-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/\-]{0,199}$")


def normalise_event_name(name: str) -> str:
    """Map a seeds-style event name to dispatcher's `<resource>.<action>`; others pass unchanged.

    >>> normalise_event_name("parameter_created"), normalise_event_name("DEPLOYMENT_FAILURE")
    ('parameter.created', 'deployment.failed')
    """
    if "." in name or "_" not in name or "*" in name or "?" in name:
        return name
    resource, _, action = name.lower().partition("_")
    if resource in RESOURCES and action in ACTION_SYNONYMS:
        return f"{resource}.{ACTION_SYNONYMS[action]}"
    return name


def _check_patterns(values: list[str], what: str) -> list[str]:
    for value in values:
        if not value or not value.strip():
            raise ValueError(f"empty {what}")
        if value != value.strip():
            raise ValueError(f"{what} {value!r} has leading or trailing spaces")
    return values


class _Model(HidesSecrets):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(_Model):
    """Every field given must match the event; a field left out matches anything.

    Lists are alternatives. Values are compared case-insensitively and `*` (any run of characters)
    and `?` (one character) are wildcards, as in Qovery's `project_names_filter`.
    """

    organization: list[str] = Field(default_factory=list)
    projects: list[str] = Field(default_factory=list)
    environment_types: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=list)
    repositories: list[str] = Field(default_factory=list)
    apps: list[str] = Field(default_factory=list)
    actors: list[str] = Field(default_factory=list)

    @field_validator("organization", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("*")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        return _check_patterns(values, "pattern")

    def constraints(self) -> dict[str, list[str]]:
        """The fields that constrain, keyed by the event attribute each one reads."""
        by_attribute = {
            "organization": self.organization,
            "project": self.projects,
            "envtype": self.environment_types,
            "environment": self.environments,
            "repository": self.repositories,
            "app": self.apps,
            "actor": self.actors,
        }
        return {attribute: patterns for attribute, patterns in by_attribute.items() if patterns}


def check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url


def _check_secret_url(url: SecretStr) -> SecretStr:
    check_plain_authority(url.get_secret_value())
    check_http_url(url.get_secret_value())
    return url


class WebhookTarget(_Model):
    """POST the event as a structured CloudEvent, signed the Standard Webhooks way."""

    type: Literal["webhook"]
    url: Annotated[SecretStr, SECRET_URL]  # a webhook URL often carries a token in its path
    secret: Annotated[SecretStr | None, SECRET] = None
    #: values are secrets: an `Authorization` header is as secret as a token
    headers: Annotated[dict[str, str], SECRET] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    _url = field_validator("url")(_check_secret_url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            signing_key(secret)
        return secret

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        reserved = {"content-type", "content-length", "host"}
        for name in headers:
            if name.lower() in reserved or name.lower().startswith("webhook-"):
                raise ValueError(f"header {name!r} is set by dispatcher and cannot be overridden")
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return headers


def signing_key(secret: SecretStr) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64), or ValueError."""
    raw = secret.get_secret_value()
    encoded = raw.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "must be a Standard Webhooks signing key: 'whsec_' followed by base64"
        ) from None
    if len(key) < 16:
        raise ValueError("signing key is too short: use at least 16 random bytes (24 recommended)")
    return key


class LogTarget(_Model):
    """Write the notification to dispatcher's own log: for local use and trying things out."""

    type: Literal["log"]
    level: Literal["debug", "info", "warning"] = "info"


class SlackTarget(_Model):
    """Post with a bot token through Slack's Web API `chat.postMessage` (CloudTruth's way)."""

    type: Literal["slack"]
    token: Annotated[SecretStr, SECRET]  # a bot token, xoxb-...
    channel: str = Field(min_length=1, max_length=200)  # "#deploys", "deploys" or an id C0123
    username: str | None = Field(default=None, max_length=80)
    icon_emoji: str | None = Field(default=None, pattern=r"^:[a-z0-9_+\-]+:$")
    icon_url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("icon_url")
    @classmethod
    def _icon_url(cls, url: str | None) -> str | None:
        return None if url is None else check_http_url(url)


class SlackWebhookTarget(_Model):
    """Post to a Slack incoming-webhook URL (Qovery, CloudRepo and Scalingo's way)."""

    type: Literal["slack_webhook"]
    url: Annotated[SecretStr, SECRET_URL]  # the URL is the credential
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    _url = field_validator("url")(_check_secret_url)


_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:]+$")


def _check_addresses(addresses: list[str]) -> list[str]:
    for address in addresses:
        if not _ADDRESS.match(address):
            raise ValueError(f"{address!r} is not an email address")
    return addresses


class EmailTarget(_Model):
    """Send an email (text and HTML) through the server in the config's `smtp:` section."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str | None = None  # a template; overrides the subscription's email_subject

    _addresses = field_validator("to", "cc", "bcc")(_check_addresses)

    @field_validator("subject")
    @classmethod
    def _subject(cls, subject: str | None, info: ValidationInfo) -> str | None:
        if subject is not None:
            from dispatcher.render.templates import validate_template  # lazily: keeps Jinja2 out

            validate_template("email_subject", subject, budget_in(info.context))
        return subject


Target = Annotated[
    WebhookTarget | LogTarget | SlackTarget | SlackWebhookTarget | EmailTarget,
    Field(discriminator="type"),
]


class Templates(_Model):
    """Per-subscription Jinja2 templates (sandboxed), each replacing one part of the default
    message. They see `event` (attributes, `data`) and `subscription`, and are checked under
    the template budget the validation context carries (`render.budget.validation_context`)."""

    text: str | None = None  # Slack's `text` fallback, the log line, the email's text part
    slack_blocks: str | None = None  # must render to a JSON list of Block Kit blocks
    email_subject: str | None = None
    email_html: str | None = None

    @field_validator("text", "slack_blocks", "email_subject", "email_html")
    @classmethod
    def _compiles_and_renders(cls, source: str | None, info: ValidationInfo) -> str | None:
        """Each template on its own, so that an error has the line of its own key."""
        from dispatcher.render.templates import validate_template  # lazily: keeps Jinja2 out

        if source is not None:
            part: Any = info.field_name  # one of PARTS, as the field names are
            validate_template(part, source, budget_in(info.context))
        return source


def check_duration(text: str) -> str:
    parse_duration(text)
    return text


def check_rate(rate: str | None) -> str | None:
    if rate is not None:
        Rate.parse(rate)
    return rate


def check_delays(delays: list[str]) -> list[str]:
    for delay in delays:
        parse_duration(delay)
    return delays


class RetrySchedule(_Model):
    """A subscription's own durable retry schedule; what it leaves out comes from `delivery:`."""

    delays: list[str] | None = Field(default=None, min_length=1, max_length=30)
    max_age: str | None = None

    @field_validator("delays")
    @classmethod
    def _delays(cls, delays: list[str] | None) -> list[str] | None:
        return None if delays is None else check_delays(delays)

    @field_validator("max_age")
    @classmethod
    def _max_age(cls, max_age: str | None) -> str | None:
        return None if max_age is None else check_duration(max_age)


class Subscription(_Model):
    """One team's request: these events, filtered so, delivered to that target."""

    name: str
    enabled: bool = True
    description: str = ""
    events: list[str] = Field(min_length=1)
    filter: Filter = Field(default_factory=Filter)
    target: Target
    template: Templates | None = None
    retry: RetrySchedule | None = None
    #: this target's own pace, e.g. "5/s" or "300/min" (a generic webhook has none by default)
    rate_limit: str | None = None
    #: deliveries that may go at once after a quiet spell, with `rate_limit`
    burst: int = Field(default=1, ge=1, le=1000)

    _rate_limit = field_validator("rate_limit")(check_rate)

    @functools.cached_property
    def rate(self) -> Rate | None:
        """`rate_limit` and `burst` as a Rate (None: the target's default applies)."""
        return None if self.rate_limit is None else Rate.parse(self.rate_limit, self.burst)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                "must start with a letter or digit and use only letters, digits and _ . : @ / -"
                " (at most 200 characters)"
            )
        return name

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        _check_patterns(events, "event pattern")
        for pattern in events:
            if not _EVENT_PATTERN.match(pattern):
                raise ValueError(
                    f"event pattern {pattern!r} may use only letters, digits, _ . : / - "
                    "and the wildcards * and ?"
                )
        return [normalise_event_name(pattern) for pattern in events]
