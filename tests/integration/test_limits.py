"""Limits on what comes in, through the real broker and real HTTP: events over the attribute and
nesting limits dead-lettered as they came with the limit named, an event past
`delivery.max_fanout` delivered to the first subscriptions and dead-lettered for the rest (and
one of those replayed), and the API's body and page limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiormq
import orjson
import pytest

from dispatcher import cli
from dispatcher.events import encode, new_event
from tests.support import (
    BrokerNames,
    Sink,
    drain_queue,
    publish_events,
    publish_raw,
    queue_depth,
    run_cli,
    running,
    settled,
    wait_for_depth,
    write_config,
)

pytestmark = pytest.mark.integration

TOKEN = "limits-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _header(message: aiormq.abc.DeliveredMessage, name: str) -> str:
    value = (message.header.properties.headers or {})[name]
    return value.decode() if isinstance(value, bytes) else str(value)


def _webhook(sink: Sink, name: str) -> dict[str, Any]:
    target = {"type": "webhook", "url": sink.url(f"/{name}")}
    return {"name": name, "events": ["deployment.*"], "target": target}


async def test_events_over_the_limits_are_dead_lettered_as_they_came(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    limits = {"max_attributes": 16, "max_attribute_bytes": 1024, "max_data_depth": 8}
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [_webhook(sink, "all")],
        broker=names.broker_config(**limits),
    )
    base = new_event("deployment.failed", "/ci", project="web")
    many = encode({**base, **{f"x{i}": "v" for i in range(16)}})
    long = encode({**base, "subject": "s" * 1025})
    deep_data = b"[" * 9 + b"]" * 9
    deep_headers = {
        "ce-specversion": "1.0",
        "ce-id": "deep-1",
        "ce-source": "/ci",
        "ce-type": "deployment.failed",
    }
    within = new_event("deployment.failed", "/ci", data=json.loads(b"[" * 8 + b"]" * 8))
    async with running(config) as app:
        await publish_raw(amqp, names.exchange, "deployment.failed", many)
        await publish_raw(amqp, names.exchange, "deployment.failed", long)
        await publish_raw(
            amqp,
            names.exchange,
            "deployment.failed",
            deep_data,
            headers=deep_headers,
            content_type="application/json",
        )
        await publish_events(amqp, names, [within])
        await settled(app, 4)
        await sink.wait_for(1)
    assert [r.json["id"] for r in sink.received] == [within["id"]]
    dead = await drain_queue(amqp, names.dead_letter_queue)
    assert {m.body: _header(m, "x-dispatcher-last-error") for m in dead} == {
        many: "event has 22 attributes, the limit is 16 (broker.max_attributes)",
        long: "attribute 'subject' is 1025 bytes long, the limit is 1024 bytes"
        " (broker.max_attribute_bytes)",
        deep_data: "data is nested more than 8 levels deep (broker.max_data_depth)",
    }
    assert {_header(m, "x-dispatcher-reason") for m in dead} == {"invalid_event"}
    assert {_header(m, "x-dispatcher-kind") for m in dead} == {"invalid-event"}
    (binary,) = [m for m in dead if m.body == deep_data]
    assert _header(binary, "ce-id") == "deep-1"  # headers and all, so a replay is the original


async def test_past_max_fanout_the_rest_are_dead_lettered_and_one_is_replayed(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    subscriptions = [_webhook(sink, f"s{i}") for i in range(5)]
    config = write_config(
        tmp_path / "c.yaml",
        names,
        subscriptions,
        delivery={"attempts": 1, "max_fanout": 3},
    )
    event = new_event("deployment.failed", "/ci", project="web")
    async with running(config) as app:
        await publish_events(amqp, names, [event])
        await settled(app, 1)
        await sink.wait_for(3)
        await wait_for_depth(amqp, names.dead_letter_queue, 2)
        assert sorted(r.path for r in sink.received) == ["/s0", "/s1", "/s2"]
        assert app.pipeline.stats.fanout_exceeded == 1

        code, out, err = await run_cli("dead-letters", "list", "-c", str(config), "-o", "json")
        assert code == 0, err
        letters = [orjson.loads(line) for line in out.splitlines()]
        assert {(d["subscription"], d["reason"]) for d in letters} == {
            ("s3", "fanout_exceeded"),
            ("s4", "fanout_exceeded"),
        }
        assert all(d["body"]["id"] == event["id"] for d in letters)
        assert all("delivery.max_fanout is 3" in d["last_error"] for d in letters)

        code, out, err = await run_cli(
            "dead-letters", "replay", "-c", str(config), "--subscription", "s3", "-y"
        )
        assert code == 0, err
        await sink.wait_for(4)
        assert sink.received[3].path == "/s3"
        assert sink.received[3].json["id"] == event["id"]
        assert await queue_depth(amqp, names.dead_letter_queue) == 1
    assert len(sink.received) == 4  # s4 waits for a person


async def test_the_api_refuses_a_large_body_and_a_large_page(
    tmp_path: Path, names: BrokerNames, sink: Sink
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [_webhook(sink, f"s{i}") for i in range(3)],
        admin={
            "listen": "127.0.0.1:0",
            "token": TOKEN,
            "max_body_bytes": 100_000,  # above the admin server's own 64 KiB
            "max_page_size": 2,
        },
        broker=names.broker_config(max_data_depth=4),
    )
    timeout = aiohttp.ClientTimeout(total=30)
    async with running(config) as app, aiohttp.ClientSession(timeout=timeout) as http:
        api = f"{app.servers[0].url}/api/v1"

        async def call(method: str, path: str, data: Any = None) -> tuple[int, Any]:
            async with http.request(method, f"{api}{path}", data=data, headers=AUTH) as answer:
                return answer.status, await answer.json()

        status, page = await call("GET", "/subscriptions?limit=2")
        assert status == 200
        assert [item["name"] for item in page["items"]] == ["s0", "s1"]
        assert page["next_cursor"] is not None
        status, error = await call("GET", "/subscriptions?limit=3")
        assert (status, error["error"]["code"]) == (422, "invalid")
        assert error["error"]["message"] == "limit must be 1 to 2 (admin.max_page_size)"
        status, document = await call("GET", "/openapi.json")  # says the same
        listing = document["paths"]["/subscriptions"]["get"]["parameters"]
        [limit] = [parameter for parameter in listing if parameter["name"] == "limit"]
        assert (status, limit["schema"]["maximum"]) == (200, 2)

        event = encode(new_event("deployment.failed", "/ci", data={"pad": "x" * 70_000}))
        status, found = await call("POST", "/events/match", event)
        assert (status, found["reached"]) == (200, ["s0", "s1", "s2"])
        too_large = "the body is larger than 100000 bytes (admin.max_body_bytes)"
        big = encode(new_event("deployment.failed", "/ci", data={"pad": "x" * 100_000}))
        status, error = await call("POST", "/events/match", big)
        assert (status, error["error"]) == (413, {"code": "too_large", "message": too_large})

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until too much
            for _ in range(20):
                yield b" " * 10_000

        status, error = await call("POST", "/events/match", chunks())
        assert (status, error["error"]) == (413, {"code": "too_large", "message": too_large})
        deep = encode(new_event("deployment.failed", "/ci", data=[[[[[1]]]]]))
        status, error = await call("POST", "/events/match", deep)
        assert (status, error["error"]["code"]) == (422, "invalid_event")
        assert "broker.max_data_depth" in error["error"]["message"]


def test_subscriptions_add_refuses_yaml_nested_past_the_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found here: `yaml.safe_load` composes recursively, and a file of 5,000 nested lists
    ended `dispatcher subscriptions add` with a RecursionError traceback."""
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("- " + "[" * 5000 + "]" * 5000 + "\n")
    assert cli.main(["subscriptions", "add", str(deep), "-c", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"dispatcher subscriptions: {deep}:1: nested more than 100 levels deep"
    )
