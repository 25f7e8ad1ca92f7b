"""The subscriptions API on the admin server, through real HTTP, with the daemon running on a
real SQLite file (and two daemons on one real PostgreSQL): CRUD, auth, validation, secrets never
returned, and a change reaching the running daemon's matching."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import pytest
from structlog.testing import capture_logs

from dispatcher.events import encode, new_event
from tests.sql_support import postgres_database
from tests.support import BrokerNames, Sink, publish_events, running, wait_until, write_config

pytestmark = pytest.mark.integration

TOKEN = "api-token-0123456789abcdef"
SIGNING_KEY = "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def daemon_config(tmp_path: Path, names: BrokerNames, url: str, name: str = "c.yaml") -> Path:
    return write_config(
        tmp_path / name,
        names,
        [],
        admin={"listen": "127.0.0.1:0", "token": TOKEN},
        store={"url": url},  # the default poll: a change must show within 2 s as shipped
    )


def webhook(sink: Sink, name: str, **extra: Any) -> dict[str, Any]:
    target = {"type": "webhook", "url": sink.url(f"/{name}?token=query-secret"), **extra}
    return {"name": name, "events": ["deployment.*"], "target": target}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = kwargs.pop("headers", AUTH)
    data = kwargs.pop("data", None if body is None else json.dumps(body))
    async with http.request(method, url, data=data, headers=headers, **kwargs) as response:
        text = await response.text()
        if response.content_type != "application/json":
            return response.status, text
        return response.status, json.loads(text)


async def test_crud_auth_validation_and_secrets(
    tmp_path: Path,
    names: BrokerNames,
    sink: Sink,
    amqp: aiormq.abc.AbstractChannel,
    http: aiohttp.ClientSession,
) -> None:
    config = daemon_config(tmp_path, names, f"sqlite:///{tmp_path / 'subs.db'}")
    with capture_logs() as logs:
        async with running(config) as app:
            api = f"{app.servers[0].url}/api/v1"
            # auth: none, wrong, right
            assert (await call(http, "GET", f"{api}/subscriptions", headers={}))[0] == 401
            wrong = {"Authorization": "Bearer nope-nope-nope-nope"}
            assert (await call(http, "GET", f"{api}/subscriptions", headers=wrong))[0] == 401
            status, page = await call(http, "GET", f"{api}/subscriptions")
            assert (status, page) == (200, {"items": [], "next_cursor": None})

            # create, with a secret, a label and an owner
            body = {
                **webhook(sink, "ops", secret=SIGNING_KEY),
                "owner": "team-a",
                "labels": {"env": "prod"},
            }
            status, created = await call(http, "POST", f"{api}/subscriptions", body)
            assert status == 201, created
            assert created["name"] == "ops"
            assert (created["owner"], created["labels"]) == ("team-a", {"env": "prod"})
            assert created["target"]["secret"] == "****" + SIGNING_KEY[-4:]
            assert created["target"]["url"].startswith("****")
            assert created["created_at"] <= created["updated_at"]

            # the running daemon matches it within 2 s (the default 1 s poll, plus a load)
            await wait_until(lambda: len(app.pipeline.matcher) == 1, 2.0, "the new subscription")
            await publish_events(amqp, names, [new_event("deployment.failed", "t")])
            await sink.wait_for(1)
            assert sink.received[0].path == "/ops"

            # 409, 422 with field paths, 413, 400, slack_webhook refused
            status, error = await call(http, "POST", f"{api}/subscriptions", webhook(sink, "ops"))
            assert (status, error["error"]["code"]) == (409, "conflict")
            bad = {"name": "bad", "events": [], "target": {"type": "webhook", "url": "ftp://x"}}
            status, error = await call(http, "POST", f"{api}/subscriptions", bad)
            assert status == 422
            fields = {p["field"] for p in error["error"]["problems"]}
            assert fields == {"events", "target.url"}
            status, error = await call(http, "POST", f"{api}/subscriptions", data="x" * 70_000)
            assert status == 413
            status, error = await call(http, "POST", f"{api}/subscriptions", data="{nope")
            assert (status, error["error"]["code"]) == (400, "bad_json")
            slack = {
                "name": "s",
                "events": ["*"],
                "target": {"type": "slack_webhook", "url": "https://evil.example/x"},
            }
            status, error = await call(http, "POST", f"{api}/subscriptions", slack)
            assert status == 422
            assert "hooks.slack.com" in error["error"]["message"]
            # no `smtp:` here: an email subscription would make every daemon refuse the set
            mail = {
                "name": "m",
                "events": ["*"],
                "target": {"type": "email", "to": ["a@b.example"]},
            }
            status, error = await call(http, "POST", f"{api}/subscriptions", mail)
            assert status == 422
            assert "no `smtp:` section" in error["error"]["message"]

            # get by id and by name; patch keeps the secret; list filters; match; delete
            sid = created["id"]
            assert (await call(http, "GET", f"{api}/subscriptions/{sid}"))[1]["name"] == "ops"
            assert (await call(http, "GET", f"{api}/subscriptions/ops"))[1]["id"] == sid
            status, patched = await call(
                http,
                "PATCH",
                f"{api}/subscriptions/{sid}",
                {"enabled": False, "target": {"timeout_s": 3}},
            )
            assert status == 200, patched
            assert patched["enabled"] is False
            assert patched["target"]["secret"] == created["target"]["secret"]  # kept
            status, page = await call(
                http, "GET", f"{api}/subscriptions?enabled=false&label=env=prod"
            )
            assert [s["name"] for s in page["items"]] == ["ops"]
            status, page = await call(http, "GET", f"{api}/subscriptions?enabled=true")
            assert page["items"] == []
            status, page = await call(http, "GET", f"{api}/subscriptions?owner={created['owner']}")
            assert [s["name"] for s in page["items"]] == ["ops"]
            status, page = await call(http, "GET", f"{api}/subscriptions?owner=nobody")
            assert page["items"] == []
            event = new_event("deployment.failed", "t")
            status, matched = await call(http, "POST", f"{api}/events/match", data=encode(event))
            assert status == 200
            assert matched["reached"] == []
            assert matched["subscriptions"][0]["ruled_out_by"] == "enabled"
            status, _ = await call(http, "DELETE", f"{api}/subscriptions/{sid}")
            assert status == 204
            assert (await call(http, "GET", f"{api}/subscriptions/{sid}"))[0] == 404
    everything = json.dumps(logs, default=str)
    for secret in (SIGNING_KEY, "query-secret", TOKEN):
        assert secret not in everything


async def test_the_test_endpoint_makes_one_real_attempt(
    tmp_path: Path, names: BrokerNames, sink: Sink, http: aiohttp.ClientSession
) -> None:
    config = daemon_config(tmp_path, names, f"sqlite:///{tmp_path / 'subs.db'}")
    async with running(config) as app:
        api = f"{app.servers[0].url}/api/v1"
        assert (await call(http, "POST", f"{api}/subscriptions", webhook(sink, "hook")))[0] == 201
        status, result = await call(http, "POST", f"{api}/subscriptions/hook/test")
        assert status == 200
        assert result["ok"] is True
        assert result["detail"].startswith("HTTP 2")
    assert [r.path for r in sink.received] == ["/hook"]


async def test_without_a_token_the_api_is_off(
    tmp_path: Path, names: BrokerNames, http: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    async with running(config) as app:
        status, _ = await call(http, "GET", f"{app.servers[0].url}/api/v1/subscriptions")
        assert status == 404
        async with http.get(f"{app.servers[0].url}/healthz") as response:
            assert response.status == 200


async def test_two_daemons_on_one_postgresql_see_the_same_change(
    tmp_path: Path,
    names: BrokerNames,
    sink: Sink,
    amqp: aiormq.abc.AbstractChannel,
    http: aiohttp.ClientSession,
) -> None:
    async with postgres_database() as url:
        first = daemon_config(tmp_path, names, url, "a.yaml")
        second = daemon_config(tmp_path, names, url, "b.yaml")
        async with running(first) as one, running(second) as two:
            api = f"{one.servers[0].url}/api/v1"
            assert (await call(http, "POST", f"{api}/subscriptions", webhook(sink, "pg")))[0] == 201
            # both see it within 2 s of the answer (PostgreSQL notifies; the poll is the fallback)
            both = (one.pipeline, two.pipeline)  # each swaps its matcher whole on a change
            await wait_until(lambda: [len(p.matcher) for p in both] == [1, 1], 2.0, "both daemons")
            status, _ = await call(http, "PATCH", f"{api}/subscriptions/pg", {"enabled": False})
            assert status == 200
            await wait_until(
                lambda: [len(p.matcher) for p in both] == [0, 0], 2.0, "disabled, in both"
            )
            await publish_events(amqp, names, [new_event("deployment.failed", "t")])
            await wait_until(
                lambda: one.pipeline.stats.unmatched + two.pipeline.stats.unmatched == 1,
                what="the event unmatched",
            )
        assert sink.received == []  # a disabled subscription receives nothing
