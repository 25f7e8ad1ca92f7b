"""The daemon's settings, as read from its YAML file (see `dispatcher.config` for the loading).

Every section forbids unknown keys, so a typo is an error with its line rather than a setting
silently ignored. Secrets are `SecretStr`: they never show in a repr, a log line or an error.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dispatcher.channels.base import DEFAULT_MAX_MESSAGE_BYTES
from dispatcher.delivery.breaker import BreakerSettings
from dispatcher.delivery.schedule import DEFAULT_RETRY_DELAYS, Schedule
from dispatcher.durations import parse_duration
from dispatcher.events import (
    DEFAULT_MAX_ATTRIBUTE_BYTES,
    DEFAULT_MAX_ATTRIBUTES,
    DEFAULT_MAX_DATA_DEPTH,
    DEFAULT_MAX_EVENT_BYTES,
    EventLimits,
)
from dispatcher.netguard import NetworkGuard
from dispatcher.rates import Rate
from dispatcher.redaction import CONNECTION, SECRET, HidesSecrets, check_plain_authority
from dispatcher.redaction import redact_url as redact_url  # re-exported: its old home
from dispatcher.redaction import url_secrets as url_secrets  # re-exported: its old home
from dispatcher.subscriptions.editing import MAX_PAGE
from dispatcher.subscriptions.models import (
    Subscription,
    check_delays,
    check_duration,
    check_http_url,
    check_rate,
)
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

_AMQP_NAME = r"^[A-Za-z0-9_.:\-]{1,255}$"
#: the API's limits by default: `admin.max_body_bytes`, `admin.max_page_size`
API_MAX_BODY_BYTES = 64 * 1024
API_MAX_PAGE = 200


class _Section(HidesSecrets):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _server_url(url: SecretStr) -> SplitResult:
    """A server's URL split, or a ValueError that quotes nothing of it (it holds a password):
    an unescaped `/ ? #` in a password moves the host into it, and a bad port would surface
    later as a traceback holding the whole URL."""
    text = url.get_secret_value()
    check_plain_authority(text)
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - reading it is the check: it raises on a bad port
    except ValueError:
        raise ValueError("the port must be a number from 0 to 65535") from None
    return parts


def _check_amqp_url(url: SecretStr) -> SecretStr:
    parts = _server_url(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError("must be an amqp:// or amqps:// URL with a host")
    return url


class BrokerSettings(_Section):
    #: one URL, or a list: the nodes of a RabbitMQ cluster, tried in turn (`url` is then the
    #: first, `urls` all of them)
    url: Annotated[SecretStr, CONNECTION] = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    urls: Annotated[list[SecretStr], CONNECTION] = Field(default_factory=list, max_length=32)
    exchange: str = Field(default="events", pattern=_AMQP_NAME)
    queue: str = Field(default="dispatcher.events", pattern=_AMQP_NAME)
    #: defaults to `<queue>.dead`, so two deployments on one broker never share it
    dead_letter_queue: str = Field(default="dispatcher.events.dead", pattern=_AMQP_NAME)
    #: the exchange dead letters are published to; defaults to the dead-letter queue's name
    dead_letter_exchange: str | None = Field(default=None, pattern=_AMQP_NAME)
    prefetch: int = Field(default=200, ge=1, le=65535)
    #: redeliveries of one event before the broker parks it (a message that crashes the daemon)
    delivery_limit: int = Field(default=10, ge=1, le=1000)
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, ge=1024, le=128 * 1024 * 1024)
    #: context attributes one event may have (a message with more is dead-lettered)
    max_attributes: int = Field(default=DEFAULT_MAX_ATTRIBUTES, ge=8, le=10_000)
    #: the UTF-8 length of one attribute's name or value
    max_attribute_bytes: int = Field(default=DEFAULT_MAX_ATTRIBUTE_BYTES, ge=256, le=1024 * 1024)
    #: how deep `data` may nest; at most 200: orjson writes no more than 254 levels
    max_data_depth: int = Field(default=DEFAULT_MAX_DATA_DEPTH, ge=1, le=200)
    connection_name: str = "dispatcher"
    connect_timeout_s: float = Field(default=10.0, gt=0)
    heartbeat_s: int = Field(default=30, ge=0, le=600)
    reconnect_initial_delay_s: float = Field(default=0.5, gt=0)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _url_list(cls, data: object) -> object:
        """`url: [a, b, c]` is `url: a` and `urls: [a, b, c]`."""
        if isinstance(data, dict) and isinstance(data.get("url"), list):
            urls = data["url"]
            for number, url in enumerate(urls, start=1):
                try:
                    _check_amqp_url(url if isinstance(url, SecretStr) else SecretStr(str(url)))
                except ValueError as exc:
                    raise ValueError(f"url, item {number}: {exc}") from None
            if not urls:
                raise ValueError("url: an empty list; give at least one amqp:// URL")
            data = {**data, "urls": urls, "url": urls[0]}
        return data

    @model_validator(mode="before")
    @classmethod
    def _dead_letter_queue(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("dead_letter_queue") is None:
            queue = data.get("queue", "dispatcher.events")
            if isinstance(queue, str):
                data = {**data, "dead_letter_queue": f"{queue}.dead"}
        return data

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, url: SecretStr) -> SecretStr:
        return _check_amqp_url(url)

    @field_validator("urls")
    @classmethod
    def _amqp_urls(cls, urls: list[SecretStr]) -> list[SecretStr]:
        return [_check_amqp_url(url) for url in urls]

    @property
    def all_urls(self) -> list[str]:
        """Every node to try, in order (one unless `url` was a list)."""
        return [u.get_secret_value() for u in self.urls] or [self.url.get_secret_value()]

    @property
    def event_limits(self) -> EventLimits:
        return EventLimits(
            max_event_bytes=self.max_event_bytes,
            max_attributes=self.max_attributes,
            max_attribute_bytes=self.max_attribute_bytes,
            max_data_depth=self.max_data_depth,
        )

    @property
    def dead_exchange(self) -> str:
        return self.dead_letter_exchange or self.dead_letter_queue

    @property
    def safe_url(self) -> str:
        return redact_url(self.url.get_secret_value())

    @property
    def deliveries_queue(self) -> str:
        """Single deliveries coming back from a retry tier, a parked wait, or a replay."""
        return f"{self.queue}.deliveries"

    @property
    def control_exchange(self) -> str:
        """Where operators' commands to every running process go (`dispatcher targets`)."""
        return f"{self.queue}.control"

    def retry_queue(self, tier: str) -> str:
        """The queue of one retry tier, named after its delay (`duration_name`, e.g. "10m")."""
        return f"{self.queue}.retry.{tier}"


class CircuitBreakerSettings(_Section):
    """Per target: open when at least `failure_ratio` of at least `min_attempts` tries in the
    last `window` failed; then no tries (deliveries wait on the retry tiers) until one probe
    after `open_for` (doubled per failed probe, up to `max_open_for`) succeeds."""

    window: str = "5m"
    min_attempts: int = Field(default=10, ge=1)
    failure_ratio: float = Field(default=0.7, gt=0, le=1)
    open_for: str = "30s"
    max_open_for: str = "10m"

    _durations = field_validator("window", "open_for", "max_open_for")(check_duration)

    def breaker(self) -> BreakerSettings:
        return BreakerSettings(
            window_s=parse_duration(self.window),
            min_attempts=self.min_attempts,
            failure_ratio=self.failure_ratio,
            open_s=parse_duration(self.open_for),
            max_open_s=max(parse_duration(self.max_open_for), parse_duration(self.open_for)),
        )


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        bits = "host bits set" in str(exc)
        why = "host bits are set: name the network" if bits else "not a network in CIDR notation"
        raise ValueError(f"{why}, e.g. 10.20.0.0/16 or fd00::/8") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]


class TemplateBudgetSettings(_Section):
    """What one render of a subscription's template may cost (see `dispatcher.template_budget`):
    over it, a template is a config error at load and the default rendering at send time."""

    max_steps: int = Field(default=DEFAULT_BUDGET.max_steps, ge=100, le=10_000_000)
    max_time_s: float = Field(default=DEFAULT_BUDGET.max_time_s, gt=0, le=10)
    #: the longest output, and the longest string or list a template may build on the way
    max_output_chars: int = Field(default=DEFAULT_BUDGET.max_output_chars, ge=1024, le=2**24)

    @property
    def budget(self) -> TemplateBudget:
        return TemplateBudget(self.max_steps, self.max_time_s, self.max_output_chars)


def template_budget_in(data: object) -> TemplateBudget:
    """The budget a config's raw data sets, before it is validated (templates are checked under
    it); the default when it sets none, or sets it wrong, which validation then reports."""
    try:
        section = data["delivery"]["template_budget"]  # type: ignore[index]
        return TemplateBudgetSettings.model_validate(section).budget
    except (KeyError, TypeError, ValidationError):
        return DEFAULT_BUDGET


class DeliverySettings(_Section):
    #: quick tries in process before a retryable failure is handed to the retry tiers (a
    #: timeout goes to the tiers at once: a hanging target gets no second try in process)
    attempts: int = Field(default=3, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    #: the longest Retry-After waited out in process; a longer one goes to the retry tiers
    max_retry_after_s: float = Field(default=30.0, ge=0)
    #: the durable retry schedule: one broker queue per delay, tried in order
    retry_delays: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_DELAYS), min_length=1, max_length=30
    )
    #: a delivery not delivered this long after its first try is dead-lettered as `expired`
    max_age: str = "24h"
    #: the longest wait for a rate-limited target's turn held in process; a delivery that would
    #: wait longer (a backlog) waits on a retry tier instead, holding no memory
    max_rate_wait_s: float = Field(default=30.0, ge=0)
    #: a target whose attempts take this long on average is slow; at most
    #: `slow_target_max_in_flight` deliveries run to it at once, the rest wait on a retry tier
    slow_target_s: float = Field(default=1.0, gt=0)
    slow_target_max_in_flight: int = Field(default=10, ge=1, le=10_000)
    #: a target failing without a break this long is disabled (its deliveries dead-lettered)
    disable_after: str = "5d"
    #: subscriptions one event is delivered to; it reaches the first this many (in the
    #: subscriptions' order) and each further one is dead-lettered as `fanout_exceeded`
    max_fanout: int = Field(default=100, ge=1, le=100_000)
    #: a rendered message (Slack text and blocks, an email's parts, a webhook body) larger
    #: than this is a permanent failure rather than a post that a target refuses or chokes on
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=128 * 1024 * 1024)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    #: webhook, Slack incoming-webhook and `slack.api_url` hosts must resolve to public
    #: addresses; these networks (CIDRs) are allowed too, e.g. an internal 10.20.0.0/16
    allowed_networks: list[Cidr] = Field(default_factory=list, max_length=1000)
    #: allow every loopback, private, link-local and CGNAT address (cloud metadata, multicast,
    #: reserved and unspecified addresses still need a CIDR in `allowed_networks`)
    allow_private_networks: bool = False
    template_budget: TemplateBudgetSettings = Field(default_factory=TemplateBudgetSettings)

    _delays = field_validator("retry_delays")(check_delays)
    _age = field_validator("max_age", "disable_after")(check_duration)

    @property
    def schedule(self) -> Schedule:
        return Schedule.of(self.retry_delays, self.max_age)

    @property
    def guard(self) -> NetworkGuard:
        """Where targets may connect (`allowed_networks`, `allow_private_networks`)."""
        return NetworkGuard.of(self.allowed_networks, allow_private=self.allow_private_networks)


class SlackSettings(_Section):
    #: Slack's Web API base; a proxy or a test server can stand in
    api_url: Annotated[str, CONNECTION] = "https://slack.com/api/"
    #: posts to one channel (or incoming webhook): Slack takes about one message a second per
    #: channel, allows a short burst, and answers more with 429 (`null`: no limit)
    rate_limit: str | None = "1/s"
    burst: int = Field(default=3, ge=1, le=100)

    _rate = field_validator("rate_limit")(check_rate)

    @property
    def rate(self) -> Rate | None:
        return None if self.rate_limit is None else Rate.parse(self.rate_limit, self.burst)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str) -> str:
        check_http_url(url)
        return url if url.endswith("/") else url + "/"


class SmtpSettings(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 25, 587 or 465 by `tls`
    tls: Literal["none", "starttls", "implicit"] = "starttls"
    username: str | None = None
    password: Annotated[SecretStr | None, SECRET] = None
    sender: str = Field(default="dispatcher@localhost", alias="from")
    timeout_s: float = Field(default=30.0, gt=0)
    #: a PEM file of CA certificates to trust instead of the system's (a private relay's CA)
    ca_file: str | None = None
    #: List-Id is `<subscription>.<list_id_domain>`, so mail rules can sort by subscription
    list_id_domain: str = "dispatcher.invalid"
    #: messages through this server, e.g. "10/s" or "600/min" (`null`: no limit)
    rate_limit: str | None = None
    burst: int = Field(default=1, ge=1, le=1000)

    _rate = field_validator("rate_limit")(check_rate)

    @property
    def rate(self) -> Rate | None:
        return None if self.rate_limit is None else Rate.parse(self.rate_limit, self.burst)

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, path: str | None) -> str | None:
        if path is not None:
            try:
                ssl.create_default_context(cafile=path)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load CA certificates from {path}: {exc}") from None
        return path

    @property
    def effective_port(self) -> int:
        return self.port or {"none": 25, "starttls": 587, "implicit": 465}[self.tls]


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6-address]:PORT` for IPv6) as (host, port); ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    odd = "[" in host or "]" in host or (":" in host and not bracketed)
    if not sep or not host or odd or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
    return host, int(port)


def _listen(value: str | None) -> str | None:
    if value is not None:
        parse_listen(value)
    return value


class AdminSettings(_Section):
    """The admin HTTP server: /healthz, /readyz and /metrics (the subscriptions API mounts here
    too). Loopback by default; `listen: null` turns it off."""

    listen: str | None = "127.0.0.1:9464"
    #: turns the subscriptions API (`/api/v1`) on: `Authorization: Bearer <token>`
    token: Annotated[SecretStr | None, SECRET] = None
    #: an API request body larger than this is refused with 413
    max_body_bytes: int = Field(default=API_MAX_BODY_BYTES, ge=1024, le=16 * 1024 * 1024)
    #: the most subscriptions one page of `GET /api/v1/subscriptions` holds (`?limit=`)
    max_page_size: int = Field(default=API_MAX_PAGE, ge=1, le=MAX_PAGE)
    _check = field_validator("listen")(_listen)

    @field_validator("token")
    @classmethod
    def _strong(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return token


class MetricsSettings(_Section):
    """A second server with only /healthz, /readyz and /metrics, for when the admin server is
    off or must not be reachable from where Prometheus scrapes. Off by default.
    `queue_depth_every`: how often the depth of each declared queue is read from the broker
    for `dispatcher_queue_messages` (when a server serves /metrics)."""

    listen: str | None = None
    queue_depth_every: str = "15s"
    _check = field_validator("listen")(_listen)
    _every = field_validator("queue_depth_every")(check_duration)


class StoreSettings(_Section):
    """Where subscriptions live. The config file by default (`subscriptions:` and
    `subscriptions_file`); with `url`, a database that the HTTP API and `dispatcher
    subscriptions` edit: `sqlite:///path.db` (embedded) or `postgresql://user:pass@host/db`
    (several replicas sharing one set). Every running process sees a change within
    `poll_every` plus a load (PostgreSQL also notifies at once). `migrate: false` leaves the
    schema to `dispatcher db upgrade`."""

    url: Annotated[SecretStr | None, CONNECTION] = None
    migrate: bool = True
    poll_every: str = "1s"
    _every = field_validator("poll_every")(check_duration)

    @field_validator("url")
    @classmethod
    def _database_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            parts = _server_url(url)
            if parts.scheme == "sqlite":
                if not parts.path.strip("/"):
                    raise ValueError("sqlite:///path/to/file.db names no file")
            elif parts.scheme in ("postgresql", "postgres"):
                if not parts.hostname and "host=" not in parts.query:
                    raise ValueError("a postgresql:// URL needs a host")
            else:
                raise ValueError("must be sqlite:///path.db or postgresql://user:pass@host/db")
        return url

    @property
    def poll_every_s(self) -> float:
        return parse_duration(self.poll_every)


class RateLimitSettings(_Section):
    """Where rate limits are kept. In process by default (right for one replica); with
    `redis_url` in Redis, so that every replica consuming the same queues shares each
    target's limit exactly."""

    redis_url: Annotated[SecretStr | None, CONNECTION] = None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            parts = _server_url(url)
            if parts.scheme not in ("redis", "rediss", "unix") or not (
                parts.hostname or parts.path
            ):
                raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return url


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto: human console output on a TTY, JSON lines otherwise
    format: Literal["auto", "console", "json"] = "auto"


class Settings(_Section):
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    smtp: SmtpSettings | None = None
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    #: on SIGTERM, how long in-flight events may take to finish before they are handed back
    shutdown_timeout_s: float = Field(default=8.0, ge=0)
    subscriptions: list[Subscription] = Field(default_factory=list)
    #: a YAML file holding the subscription list; relative to the config file
    subscriptions_file: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for sub in self.subscriptions:
            if sub.name in seen:
                raise ValueError(f"subscription name {sub.name!r} is used twice")
            seen.add(sub.name)
        return self

    @model_validator(mode="after")
    def _distinct_listen(self) -> Settings:
        admin, metrics = self.admin.listen, self.metrics.listen
        if admin is not None and admin == metrics and parse_listen(admin)[1] != 0:
            raise ValueError("admin.listen and metrics.listen must differ (or set one to null)")
        return self

    @model_validator(mode="after")
    def _smtp_for_email(self) -> Settings:
        emails = [sub.name for sub in self.subscriptions if sub.target.type == "email"]
        if emails and self.smtp is None:
            raise ValueError(f"email targets ({', '.join(emails)}) need an `smtp:` section")
        return self
