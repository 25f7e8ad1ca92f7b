"""The composition root: builds channels, deliverer, pipeline and consumer from the settings,
runs them, and turns signals into actions (TERM/INT: drain and stop; HUP: reload subscriptions).
Also serves health and metrics over HTTP and tells systemd how it is doing (sd_notify)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import structlog

from dispatcher.admin.api import Api
from dispatcher.admin.http import HttpServer, Readiness, admin_app, metrics_app
from dispatcher.admin.metrics import Metrics
from dispatcher.amqp import control
from dispatcher.amqp.consumer import Consumer
from dispatcher.amqp.messages import Messages, read_resume
from dispatcher.amqp.status import role_label
from dispatcher.amqp.topology import topology
from dispatcher.channels.base import Channel, Delivery, SendFailed, SendResult
from dispatcher.channels.email import EmailChannel
from dispatcher.channels.log import LogChannel
from dispatcher.channels.slack import SlackChannel, SlackWebhookChannel
from dispatcher.channels.webhook import WebhookChannel
from dispatcher.delivery.breaker import BreakerState
from dispatcher.delivery.deliverer import Deliverer
from dispatcher.delivery.isolation import Isolation, IsolationSettings
from dispatcher.delivery.ratelimit import LocalRateLimiter, RateLimiter
from dispatcher.delivery.redis_limiter import RedisRateLimiter
from dispatcher.delivery.retry import RetryPolicy
from dispatcher.durations import parse_duration
from dispatcher.errors import BrokerError, ConfigError, ConfigProblem, DispatcherError
from dispatcher.logs import SecretRedactor
from dispatcher.pipeline import Incoming, Pipeline, Verdict
from dispatcher.redaction import secrets_of
from dispatcher.render import EmailMessage, SlackMessage, email_message, slack_message
from dispatcher.samples import sample_event
from dispatcher.settings import Settings
from dispatcher.subscriptions.matcher import Matcher
from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.store import MemoryStore, SubscriptionStore, YamlStore, watch
from dispatcher.systemd import Notifier, StatusLine, supervise
from dispatcher.template_budget import TemplateBudget

log = structlog.get_logger(__name__)


def tiers_of(settings: Settings) -> set[float]:
    """Every retry delay the config names, in `delivery:` and in subscriptions' own `retry:`."""
    schedule = settings.delivery.schedule
    tiers = set(schedule.delays_s)
    for sub in settings.subscriptions:
        if sub.retry is not None:
            tiers.update(schedule.override(sub.retry.delays, sub.retry.max_age).delays_s)
    return tiers


def _slack(delivery: Delivery, budget: TemplateBudget) -> SlackMessage:
    return slack_message(delivery.event, delivery.subscription, budget)


def _email(delivery: Delivery, budget: TemplateBudget) -> EmailMessage:
    return email_message(delivery.event, delivery.subscription, budget)


def build_limiter(settings: Settings) -> RateLimiter:
    """Rate limits in Redis when configured (shared by every replica), else in process."""
    url = settings.rate_limits.redis_url
    if url is None:
        return LocalRateLimiter()
    return RedisRateLimiter(url.get_secret_value(), namespace=settings.broker.queue)


def _log_breaker(key: str, old: BreakerState, new: BreakerState) -> None:
    """A target's breaker changed state: one line, not one per delivery."""
    if new is BreakerState.OPEN:
        log.warning("circuit opened: deliveries to the target wait on the retry tiers", target=key)
    elif new is BreakerState.CLOSED:
        log.info("circuit closed: the target answers again", target=key, was=str(old))


def build_channels(settings: Settings) -> dict[str, Channel]:
    """One channel per target type; `email` only when the config has an `smtp:` section. The
    HTTP ones connect only where `delivery.allowed_networks` allows (the SMTP server is the
    operator's own)."""
    rate, guard = settings.slack.rate, settings.delivery.guard
    most = settings.delivery.max_message_bytes
    budget = settings.delivery.template_budget.budget
    slack = functools.partial(_slack, budget=budget)
    channels: dict[str, Channel] = {
        "webhook": WebhookChannel(guard=guard, max_message_bytes=most),
        "log": LogChannel(budget),
        "slack": SlackChannel(
            settings.slack, slack, guard=guard, rate=rate, max_message_bytes=most
        ),
        "slack_webhook": SlackWebhookChannel(slack, guard=guard, rate=rate, max_message_bytes=most),
    }
    if settings.smtp is not None:
        smtp = settings.smtp
        context = ssl.create_default_context(cafile=smtp.ca_file) if smtp.ca_file else None
        email = functools.partial(_email, budget=budget)
        channels["email"] = EmailChannel(
            smtp, email, tls_context=context, rate=smtp.rate, max_message_bytes=most
        )
    return channels


def build_store(
    settings: Settings,
    config_path: str | Path | None,
    environ: Mapping[str, str] = os.environ,
) -> SubscriptionStore:
    """The store `store.url` names: the config file's subscriptions when it names none (or, with
    no file, the settings' own), else the database, its secrets encrypted with
    `$DISPATCHER_SECRET_KEY` when set."""
    if settings.store.url is None:
        if config_path is None:
            return MemoryStore(settings.subscriptions)
        return YamlStore(config_path, settings)
    from dispatcher.subscriptions.sql import SqlStore

    key = environ.get("DISPATCHER_SECRET_KEY") or None
    try:
        budget = settings.delivery.template_budget.budget
        return SqlStore(
            settings.store.url.get_secret_value(), secret_key=key, template_budget=budget
        )
    except ValueError as exc:  # the key or the URL: said without either
        where = "$DISPATCHER_SECRET_KEY" if "secret key" in str(exc) else "store.url"
        raise ConfigError([ConfigProblem(where, None, "", str(exc))]) from None


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | Path | None = None,
        store: SubscriptionStore | None = None,
        redactor: SecretRedactor | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """`store` holds the subscriptions (default: the config file's, `YamlStore`, or with no
        file the settings' own, `MemoryStore`); they are loaded when `run()` starts."""
        self.settings = settings
        self.store = build_store(settings, config_path) if store is None else store
        self._loaded = False
        self._reloads: set[asyncio.Task[bool]] = set()
        self._loading = asyncio.Lock()  # one load at a time: the newest set is applied last
        self.metrics = Metrics()
        self._notifier = notifier
        self._stopping = False
        self._redactor = redactor or SecretRedactor()
        self._redactor.update(secrets_of(settings))
        delivery = settings.delivery
        self.channels = build_channels(settings)
        self.limiter = build_limiter(settings)
        self.isolation = Isolation(
            IsolationSettings(
                breaker=delivery.circuit_breaker.breaker(),
                max_in_flight=delivery.slow_target_max_in_flight,
                slow_s=delivery.slow_target_s,
                disable_after_s=parse_duration(delivery.disable_after),
            ),
            on_breaker=_log_breaker,
        )
        self.deliverer = Deliverer(
            self.channels,
            RetryPolicy(
                attempts=delivery.attempts,
                initial_s=delivery.backoff_initial_s,
                max_s=delivery.backoff_max_s,
                max_retry_after_s=delivery.max_retry_after_s,
            ),
            delivery.schedule,
            limiter=self.limiter,
            max_hold_s=delivery.max_retry_after_s,
            max_rate_wait_s=delivery.max_rate_wait_s,
            isolation=self.isolation,
            metrics=self.metrics,
        )
        self.messages = Messages(settings.broker)
        self.pipeline = Pipeline(
            Matcher([]),  # until the store's set is loaded, before consuming starts
            self.deliverer,
            limits=settings.broker.event_limits,
            max_fanout=delivery.max_fanout,
            metrics=self.metrics,
        )
        self.topology = topology(settings.broker, tiers_of(settings))
        serving = settings.admin.listen is not None or settings.metrics.listen is not None
        self.consumer = Consumer(
            settings.broker,
            {
                settings.broker.queue: self.pipeline.handle,
                settings.broker.deliveries_queue: self._resume,
            },
            self.messages,
            self.topology,
            on_control=self.on_control,
            depth_every_s=parse_duration(settings.metrics.queue_depth_every) if serving else None,
        )
        self.servers = self._servers()
        self._watch_metrics()

    async def _resume(self, incoming: Incoming) -> Verdict:
        """A message of the deliveries queue: one delivery back from a tier or a replay."""
        return await self.pipeline.resume(incoming, read_resume(incoming.headers))

    def on_control(self, body: bytes) -> None:
        """An operator's command (`dispatcher.amqp.control`), heard by every running process."""
        command = control.decode(body)
        if isinstance(command, str):
            log.warning("control message ignored", why=command)
        elif self.isolation.enable(command.target):
            log.warning("target enabled again by an operator", target=command.target)
        else:
            log.info("target enable asked; it was neither disabled nor open", target=command.target)

    def _servers(self) -> list[HttpServer]:
        """The admin server and the metrics-only server, as configured (either may be off)."""
        servers = []
        if self.settings.admin.listen is not None:
            app = admin_app(self, self.metrics)
            token = self.settings.admin.token
            if token is not None:
                api = Api(
                    self.store,
                    token=token.get_secret_value(),
                    tester=self._test_once,
                    limits=self.settings.broker.event_limits,
                    max_body_bytes=self.settings.admin.max_body_bytes,
                    max_page=self.settings.admin.max_page_size,
                    target_types=frozenset(self.channels),
                    guard=self.settings.delivery.guard,
                )
                app.add_subapp("/api/v1/", api.application())
            servers.append(HttpServer("admin", app, self.settings.admin.listen))
        if self.settings.metrics.listen is not None:
            app = metrics_app(self, self.metrics)
            servers.append(HttpServer("metrics", app, self.settings.metrics.listen))
        return servers

    async def _test_once(self, subscription: Subscription) -> SendResult:
        """One real attempt with a sample event (`POST /api/v1/subscriptions/{id}/test`)."""
        channel = self.channels.get(subscription.target.type)
        if channel is None:
            reason = f"no channel for target type {subscription.target.type!r}"
            return SendFailed(reason, retryable=False)
        return await channel.send(Delivery.of(sample_event(subscription), subscription))

    def _watch_metrics(self) -> None:
        self.metrics.watch(
            in_flight=lambda: self.deliverer.in_flight,
            subscriptions=lambda: len(self.pipeline.matcher),
            ready=lambda: float(self.readiness().ready),
            reconnects=lambda: self.consumer.reconnects,
        )
        self.metrics.watch_breakers(self.isolation.states)
        broker = self.settings.broker
        roles = {q.name: role_label(q.name, broker) for q in self.topology.queues}
        self.metrics.watch_queues(roles, self.consumer.depths)

    def readiness(self) -> Readiness:
        """For /readyz: ready once the store's subscriptions are loaded and consuming."""
        return Readiness(
            broker_connected=self.consumer.ready,
            subscriptions_loaded=self._loaded,
            subscriptions=len(self.pipeline.matcher),
            stopping=self._stopping,
        )

    def stop(self) -> None:
        if not self._stopping and self._notifier is not None:
            self._notifier.send("STOPPING=1", "STATUS=stopping: finishing events in flight")
        self._stopping = True
        self.consumer.stop()

    def reload(self) -> asyncio.Task[bool]:
        """Re-read the subscriptions from the store (SIGHUP), in the background."""
        task = asyncio.get_running_loop().create_task(self.refresh())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        return task

    async def refresh(self) -> bool:
        """Load the store's set and match against it from now on; whether it was applied. A
        set that does not load, or needs what this process lacks, leaves the running one."""
        async with self._loading:
            first = not self._loaded
            try:
                fresh = await self.store.load()
            except (DispatcherError, ValueError, OSError) as exc:
                what = "cannot load the subscriptions" if first else "reload refused"
                log.error(f"{what}; keeping the running subscriptions", problems=str(exc))
                return False
            if not self._apply(fresh):
                return False
            if not first:
                log.info("subscriptions reloaded", subscriptions=len(self.pipeline.matcher))
            return True

    async def _open_store(self) -> bool:
        """Migrate a database store's schema (unless `store.migrate: false`) and say once what
        deserves saying about it; False when it cannot be opened."""
        migrate = getattr(self.store, "migrate", None)
        if migrate is None:
            return True
        if self.settings.subscriptions:
            log.warning(
                "the config file's subscriptions are ignored: store.url names a database",
                ignored=len(self.settings.subscriptions),
            )
        if not getattr(self.store, "encrypted", True):
            log.warning(
                "DISPATCHER_SECRET_KEY is not set: subscriptions' secrets are stored unencrypted",
                store=self.store.description,
            )
        if not self.settings.store.migrate:
            return True
        try:
            await migrate()
        except (DispatcherError, OSError, ValueError) as exc:
            log.error(
                "cannot migrate the subscription store",
                store=self.store.description,
                error=str(exc),
            )
            return False
        return True

    def _watch_store(self) -> list[asyncio.Task[None]]:
        """Reload when the store changes: its version polled every `store.poll_every`, and a
        PostgreSQL notification at once."""
        tasks = [
            asyncio.create_task(watch(self.store, self.reload, self.settings.store.poll_every_s))
        ]
        if getattr(self.store, "notifies", False):
            tasks.append(asyncio.create_task(self._listen(self.store.listen)))  # type: ignore[attr-defined]
        return tasks

    async def _listen(self, listen: Callable[[Callable[[], object]], Awaitable[None]]) -> None:
        """Listen for the store's change notices, again after a lost connection (the version
        poll covers the gap); until cancelled."""
        delay = 1.0
        while True:
            try:
                await listen(self.reload)
            except Exception as exc:  # noqa: BLE001 - a database gone: listen again later
                log.warning(
                    "not listening for subscription changes; polling meanwhile",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _apply(self, subscriptions: Sequence[Subscription]) -> bool:
        if "email" not in self.channels and any(s.target.type == "email" for s in subscriptions):
            log.error("reload refused: email targets need the `smtp:` section; restart to add it")
            return False
        self._redactor.update(s for sub in subscriptions for s in secrets_of(sub))
        self.pipeline.matcher = Matcher(subscriptions)  # one swap: the old set or the new
        for target_type in sorted({sub.target.type for sub in subscriptions}):
            self.metrics.target(target_type)  # their series show 0 before the first delivery
        self._loaded = True
        return True

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; 0 on a clean stop, 1 when the broker refuses our setup."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        supervisor = None
        watchers: list[asyncio.Task[None]] = []
        try:
            if not await self._open_store() or not await self.refresh():
                return 1
            watchers = self._watch_store()
            log.info(
                "dispatcher starting",
                subscriptions=len(self.pipeline.matcher),
                broker=self.settings.broker.safe_url,
                queue=self.settings.broker.queue,
            )
            if not await self._start_servers():
                return 1
            if self._notifier is not None:
                supervisor = asyncio.create_task(self._supervise(self._notifier))
            await self.consumer.run(self.settings.shutdown_timeout_s)
        except BrokerError as exc:
            log.error("broker refused dispatcher's setup", error=str(exc))
            return 1
        finally:
            self.stop()  # STOPPING=1 when the broker ended the run rather than a signal
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            if supervisor is not None:
                supervisor.cancel()
                await asyncio.gather(supervisor, return_exceptions=True)
            if self._notifier is not None:
                self._notifier.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await asyncio.gather(*(server.stop() for server in self.servers))
            await asyncio.gather(*(c.close() for c in self.channels.values()))
            await self.limiter.close()
            await self.store.close()
        stats = self.pipeline.stats
        log.info(
            "dispatcher stopped",
            consumed=stats.consumed,
            delivered=stats.delivered,
            dead_lettered=stats.dead_lettered,
            invalid=stats.invalid,
            unmatched=stats.unmatched,
        )
        return 0

    async def _start_servers(self) -> bool:
        for server in self.servers:
            try:
                await server.start()
            except OSError as exc:
                why = exc.strerror or str(exc)
                log.error("cannot listen", server=server.name, listen=server.listen, error=why)
                return False
        return True

    async def _supervise(self, notifier: Notifier) -> None:
        status = StatusLine(
            ready=lambda: self.consumer.ready,
            consumed=lambda: self.pipeline.stats.consumed,
            pending=lambda: self.deliverer.in_flight,
        )
        await supervise(notifier, self.consumer.connected, status)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("stop requested", signal=sig.name)
        self.stop()
