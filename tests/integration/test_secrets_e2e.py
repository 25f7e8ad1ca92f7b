"""Every kind of secret dispatcher holds, configured at once, with every target failing: the
daemon retries and dead-letters, the commands, /metrics and the API are asked about all of it,
and nothing any of them wrote holds a secret in any form (as written, URL-escaped, or as the
wire carries it). Hostile targets echo what they were sent back in their error answers."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import aiohttp
import aiormq
import pytest
import trustme
import yaml
from aiohttp import web
from cryptography.fernet import Fernet

from dispatcher.events import new_event
from tests.integration.observe import DaemonProcess, get
from tests.integration.slack_standin import SlackApiStandin, SlackWebhookStandin
from tests.integration.smtp_server import (  # noqa: F401  (pytest fixtures, found by name)
    SMTP_USER,
    SmtpServer,
    smtp_ca_fixture,
    smtp_tls_server_fixture,
)
from tests.sql_support import postgres_database
from tests.support import (
    BrokerNames,
    drain_queue,
    publish_events,
    run_cli,
    wait_for_depth,
    write_config,
)

pytestmark = pytest.mark.integration

BOT_TOKEN = "xoxb-e2e-7431-bot-token-value"
INCOMING_PATH = "/services/TE2E0001/BE2E0001/e2eIncomingWebhookSecret"
PATH_TOKEN = "e2e-path-token-8813"
QUERY_TOKEN = "e2e-query-token-5521"
SIGNING_KEY = "whsec_" + base64.b64encode(b"e2e-signing-key-24-bytes").decode()
HEADER_SECRET = "Bearer e2e-header-secret-3390"
BASIC_USER = "e2e-user"
BASIC_PASSWORD = "e2e-basic-pw/4417"
SMTP_PASSWORD = "e2e-smtp-pa55word-6020"
AMQP_PASSWORD = "e2e-amqp/pa55?#@-7789"
DB_PASSWORD = "e2e-db-pa55/word-1188"
REDIS_PASSWORD = "e2e-redis-pa55word-2277"
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
SECRET_KEY = Fernet.generate_key().decode()
EVENTS = 2
#: webhook (500), webhook with Basic credentials (401), Slack bot, Slack incoming webhook, email
SUBSCRIPTIONS = 5


def secret_forms() -> dict[str, set[str]]:
    """Each secret by name, with every form it might be written in."""
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    plain = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()  # AUTH PLAIN
    secrets = {
        "slack bot token": [BOT_TOKEN],
        "slack incoming webhook": [INCOMING_PATH, INCOMING_PATH.rsplit("/", 1)[1]],
        "webhook path token": [PATH_TOKEN],
        "webhook query token": [QUERY_TOKEN],
        "webhook signing key": [SIGNING_KEY, SIGNING_KEY.removeprefix("whsec_")],
        "webhook header": [HEADER_SECRET, HEADER_SECRET.removeprefix("Bearer ")],
        "webhook basic password": [BASIC_PASSWORD, basic],
        "smtp password": [SMTP_PASSWORD, base64.b64encode(SMTP_PASSWORD.encode()).decode(), plain],
        "amqp password": [AMQP_PASSWORD],
        "database password": [DB_PASSWORD],
        "redis password": [REDIS_PASSWORD],
        "admin token": [ADMIN_TOKEN],
        "secret key": [SECRET_KEY],
    }
    return {
        name: {
            form
            for value in values
            for form in (
                value,
                quote(value, safe=""),
                quote(value),
                quote_plus(value),
                unquote(value),
                json.dumps(value)[1:-1],
            )
        }
        for name, values in secrets.items()
    }


@asynccontextmanager
async def echoing_target(status: int) -> AsyncIterator[tuple[str, list[str]]]:
    """A hostile webhook receiver on loopback: it answers `status` with everything it was sent
    (path, query, headers) in its body. Yields its base URL and the paths it was asked."""
    asked: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        asked.append(request.path)
        sent = f"{request.path_qs} {dict(request.headers)} {await request.text()}"
        return web.Response(status=status, text=f"refused: {sent}")

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", asked
    finally:
        await runner.cleanup()


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()


@asynccontextmanager
async def broker_user() -> AsyncIterator[str]:
    """A RabbitMQ user of its own with AMQP_PASSWORD, deleted afterwards: its name."""
    user = f"dispatcher-e2e-{uuid.uuid4().hex[:8]}"
    await rabbitmqctl("add_user", user, AMQP_PASSWORD)
    try:
        await rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user
    finally:
        await rabbitmqctl("delete_user", user)


def subscriptions(hook: str, basic_hook: str, incoming: str) -> list[dict[str, Any]]:
    events = ["deployment.*"]
    return [
        {
            "name": "hook",
            "events": events,
            "target": {
                "type": "webhook",
                "url": f"{hook}/hook/{PATH_TOKEN}?token={QUERY_TOKEN}",
                "secret": SIGNING_KEY,
                "headers": {"Authorization": HEADER_SECRET},
                "timeout_s": 5,
            },
        },
        {
            "name": "bot",
            "events": events,
            "target": {"type": "slack", "token": BOT_TOKEN, "channel": "#ops", "timeout_s": 5},
        },
        {
            "name": "incoming",
            "events": events,
            "target": {"type": "slack_webhook", "url": incoming, "timeout_s": 5},
        },
        {"name": "mail", "events": events, "target": {"type": "email", "to": ["ops@example.com"]}},
        # created through the API (the others through the CLI)
        {
            "name": "basic",
            "events": events,
            "target": {
                "type": "webhook",
                "url": basic_hook.replace(
                    "://", f"://{BASIC_USER}:{quote(BASIC_PASSWORD, safe='')}@"
                )
                + "/basic",
                "timeout_s": 5,
            },
        },
    ]


def daemon_config(
    tmp_path: Path,
    names: BrokerNames,
    *,
    amqp_url: str,
    db_url: str,
    slack_api: str,
    smtp_port: int,
) -> Path:
    """The config: every secret it can hold, retries short enough to dead-letter in seconds."""
    return write_config(
        tmp_path / "dispatcher.yaml",
        names,
        [],
        broker=names.broker_config(url=amqp_url),
        delivery={
            "attempts": 1,
            "retry_delays": ["100ms", "200ms"],
            "max_age": "1s",
            # (write_config adds allowed_networks: the loopback peers, past the SSRF guard)
        },
        slack={"api_url": slack_api},
        smtp={
            "host": "127.0.0.1",
            "port": smtp_port,
            "tls": "starttls",
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "ca_file": str(tmp_path / "ca.pem"),
            "timeout_s": 5,
        },
        rate_limits={"redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"},
        store={"url": db_url, "poll_every": "200ms"},
        admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
    )


async def test_no_secret_leaves_the_daemon_its_commands_or_its_api(
    tmp_path: Path,
    names: BrokerNames,
    amqp: aiormq.abc.AbstractChannel,
    smtp_tls_server: SmtpServer,
    smtp_ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", SECRET_KEY)  # for the daemon and the commands
    smtp_ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    written: list[tuple[str, str]] = []  # (where, what): everything anything wrote
    async with (
        broker_user() as user,
        postgres_database() as database,
        echoing_target(500) as (hook, hook_asked),
        echoing_target(401) as (basic_hook, basic_asked),
        SlackApiStandin(tokens=["xoxb-another-token"]) as slack_api,
        SlackWebhookStandin() as slack_hooks,
    ):
        slack_api.answer(401, {"ok": False, "error": "invalid_auth", "echo": BOT_TOKEN})
        incoming = slack_hooks.hook(INCOMING_PATH)
        slack_hooks.fail(INCOMING_PATH, f"internal_error for {incoming}", status=500)
        *by_cli, by_api = subscriptions(hook, basic_hook, incoming)
        config = daemon_config(
            tmp_path,
            names,
            amqp_url=f"amqp://{user}:{quote(AMQP_PASSWORD, safe='')}@127.0.0.1:5672/",
            db_url=database.replace("postgres@", f"postgres:{quote(DB_PASSWORD, safe='')}@"),
            slack_api=slack_api.api_url,
            smtp_port=smtp_tls_server.port,
        )
        subs_file = tmp_path / "subscriptions.yaml"
        subs_file.write_text(yaml.safe_dump(by_cli))

        async def cli(*args: str) -> None:
            code, out, err = await run_cli(*args, "-c", str(config))
            written.append((f"dispatcher {' '.join(args)} (exit {code})", out + err))

        await cli("subscriptions", "add", str(subs_file))
        assert "(exit 0)" in written[-1][0], written[-1]

        # stdout joins stderr, so what the daemon prints anywhere is read
        argv = [sys.executable, "-m", "dispatcher", "run", "--config", str(config)]
        daemon = DaemonProcess(["sh", "-c", 'exec "$@" 1>&2', "sh", *argv])
        await daemon.start()
        try:
            admin = await daemon.admin_url()
            await daemon.logged("consuming")
            api = f"{admin}/api/v1"
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with aiohttp.ClientSession(
                headers=auth, timeout=aiohttp.ClientTimeout(total=30)
            ) as http:

                async def call(method: str, path: str, body: Any = None) -> Any:
                    async with http.request(method, f"{api}{path}", json=body) as response:
                        text = await response.text()
                    written.append((f"{method} {path} ({response.status})", text))
                    return json.loads(text)

                created = await call("POST", "/subscriptions", by_api)
                assert created["name"] == "basic", created
                for seen in itertools.count(1):  # the first, at start, has the CLI's four
                    if (await daemon.logged("subscriptions reloaded", seen))["subscriptions"] == 5:
                        break

                events = [new_event("deployment.failed", "e2e", project="p") for _ in range(EVENTS)]
                await publish_events(amqp, names, events)
                await wait_for_depth(amqp, names.dead_letter_queue, EVENTS * SUBSCRIPTIONS, 45)
                assert hook_asked
                assert basic_asked
                assert slack_api.received
                assert slack_hooks.posts

                listed = await call("GET", "/subscriptions")
                assert len(listed["items"]) == SUBSCRIPTIONS
                for item in listed["items"]:
                    await call("GET", f"/subscriptions/{item['id']}")
                    await call("POST", f"/subscriptions/{item['id']}/test")
                await call("PATCH", f"/subscriptions/{created['id']}", {"enabled": False})

            for path in ("/metrics", "/readyz", "/healthz"):
                status, body = await get(f"{admin}{path}")
                written.append((f"GET {path} ({status})", body))
            # one at a time: a listing holds the dead letters it reads until it is done
            await cli("dead-letters", "list", "-o", "json")
            await cli("dead-letters", "list")
            await asyncio.gather(
                cli("check-config"),
                cli("check-config", "-o", "json"),
                cli("config", "show"),
                cli("status"),
                cli("status", "-o", "json"),
                cli("subscriptions", "list", "-o", "json"),
                cli("subscriptions", "show", "hook"),
            )
            assert await daemon.stop() == 0, daemon.output
        finally:
            await daemon.kill()
        written.append(("the daemon's stdout and stderr", daemon.output))
        for message in await drain_queue(amqp, names.dead_letter_queue):
            headers = message.header.properties.headers
            written.append(("a dead letter", f"{headers!r} {message.body!r}"))

    dead_letters = [text for where, text in written if where == "a dead letter"]
    assert len(dead_letters) == EVENTS * SUBSCRIPTIONS
    assert any("HTTP 500" in text for text in dead_letters)  # the reasons are there, redacted
    assert any("HTTP 500" in text for where, text in written if where.startswith("dispatcher dead"))
    for name, forms in secret_forms().items():
        for where, text in written:
            for form in forms:
                assert form not in text, f"the {name} ({form!r}) shows in {where}:\n{text}"
