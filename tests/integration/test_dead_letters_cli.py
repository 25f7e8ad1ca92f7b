"""`dispatcher dead-letters list|replay|purge` against the real broker: dead letters of the three
forms (a delivery, an invalid event, one the broker parked) put in the dead-letter queue, then
listed without being consumed, replayed each to where it belongs, or purged."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp.commands import Basic

from dispatcher.amqp import headers as h
from dispatcher.amqp.topology import declare, topology
from dispatcher.cli import main
from dispatcher.config import load_settings
from dispatcher.events import encode, new_event
from dispatcher.settings import BrokerSettings
from tests.support import AMQP_URL, BrokerNames, drain_queue, queue_depth, write_config

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


@dataclass
class World:
    config: Path
    broker: BrokerSettings
    amqp: aiormq.abc.AbstractChannel

    async def depth(self, queue: str) -> int:
        return await queue_depth(self.amqp, queue)

    async def settles(self, queue: str, expected: int, timeout_s: float = 30.0) -> None:
        """Wait (bounded) until `queue` holds `expected` messages: returns and dead-lettering
        of a quorum queue reach the count a moment after the command that caused them."""
        deadline = time.monotonic() + timeout_s
        while (depth := await self.depth(queue)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue} holds {depth} messages, not {expected}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def world(
    names: BrokerNames, amqp: aiormq.abc.AbstractChannel, tmp_path: Path
) -> AsyncIterator[World]:
    """Dispatcher's queues declared; a work queue that parks a message on its second return."""
    config = write_config(
        tmp_path / "dispatcher.yaml", names, [], broker=names.broker_config(delivery_limit=1)
    )
    broker = load_settings(config).broker
    spec = topology(broker)
    await declare(amqp, spec)
    yield World(config, broker, amqp)
    connection = await aiormq.connect(AMQP_URL)  # the test may have lost the fixture's channel
    channel = await connection.channel()
    for queue in {q.name for q in spec.queues} - {names.queue, names.dead_letter_queue}:
        await channel.queue_delete(queue)  # the deliveries queue and any retry tier
    for exchange in {e.name for e in spec.exchanges} - {names.exchange, names.dead_letter_queue}:
        await channel.exchange_delete(exchange)
    await connection.close()


async def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`dispatcher ARGS` in this process (off the loop: it runs its own); exit code, out, err."""
    capsys.readouterr()
    code = await asyncio.wait_for(asyncio.to_thread(main, list(args)), CLI_TIMEOUT_S)
    out, err = capsys.readouterr()
    return code, out, err


async def command(*args: str, stdin: int | None = None) -> tuple[int, str, str]:
    """`python -m dispatcher ARGS` as a process, stdin from `stdin` (default: /dev/null)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def publish(
    amqp: aiormq.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    headers: dict[str, Any],
    content_type: str | None = "application/cloudevents+json",
    message_id: str | None = None,
) -> None:
    confirmation = await amqp.basic_publish(
        body,
        exchange=exchange,
        routing_key=routing_key,
        properties=Basic.Properties(
            content_type=content_type, delivery_mode=2, headers=headers, message_id=message_id
        ),
        timeout=10,
    )
    assert isinstance(confirmation, Basic.Ack)


@dataclass
class Parked:
    delivery_id: str
    event: dict[str, Any]
    body: bytes


async def park_delivery(
    world: World, subscription: str, reason: str = h.RETRIES_EXHAUSTED
) -> Parked:
    """A `delivery` dead letter as the daemon writes it (to the dead-letter exchange)."""
    event = new_event("deployment.failed", "urn:test", data={"version": "1.2"})
    delivery_id = f"d-{uuid.uuid4().hex[:12]}"
    headers = {
        h.KIND: h.KIND_DELIVERY,
        h.REASON: reason,
        h.SUBSCRIPTION: subscription,
        h.TARGET_TYPE: "webhook",
        h.DELIVERY_ID: delivery_id,
        h.EVENT_ID: event["id"],
        h.ATTEMPTS: 7,
        h.RETRIES: 4,
        h.TIER: "1h",
        h.FIRST_ATTEMPT_AT: "2024-05-01T10:00:00.123Z",
        h.LAST_ATTEMPT_AT: "2024-05-01T12:00:00.456Z",
        h.LAST_ERROR: "HTTP 500 from https://hooks.example.test/deploys\nInternal Server Error",
        h.FAILED_AT: "2024-05-01T12:00:01.789Z",
    }
    body = encode(event)
    await publish(
        world.amqp, world.broker.dead_exchange, event["type"], body, headers, message_id=delivery_id
    )
    return Parked(delivery_id, event, body)


INVALID_BODY = b"\xff\xfe not an event"


async def park_invalid(world: World) -> None:
    """An `invalid-event` dead letter: the producer's message, its headers kept, reason added."""
    headers = {
        "x-producer": "legacy-app",
        h.KIND: h.KIND_INVALID,
        h.REASON: h.INVALID_EVENT,
        h.LAST_ERROR: "not JSON",
        h.FAILED_AT: "2024-05-02T08:00:00Z",
    }
    await publish(
        world.amqp, world.broker.dead_exchange, "legacy.thing", INVALID_BODY, headers, "text/plain"
    )


async def park_by_broker(world: World, expected_dead: int) -> dict[str, Any]:
    """An event the broker itself dead-letters: returned to the work queue past its delivery
    limit (1), as a message that crashes the daemon would be."""
    event = new_event("deployment.started", "urn:test")
    await publish(
        world.amqp, world.broker.exchange, event["type"], encode(event), {}, message_id=event["id"]
    )
    deadline = time.monotonic() + 15
    while await world.depth(world.broker.dead_letter_queue) < expected_dead:
        assert time.monotonic() < deadline, "the broker did not dead-letter the event"
        message = await world.amqp.basic_get(world.broker.queue, no_ack=False, timeout=10)
        if message.delivery_tag is not None:
            await world.amqp.basic_reject(message.delivery_tag, requeue=True)
        else:
            await asyncio.sleep(0.05)
    return event


async def park_all(world: World) -> tuple[Parked, Parked, dict[str, Any]]:
    """Four dead letters: deliveries for `ops` and `audit`, an invalid event, a broker one."""
    ops = await park_delivery(world, "ops")
    audit = await park_delivery(world, "audit", h.PERMANENT_FAILURE)
    await park_invalid(world)
    parked = await park_by_broker(world, expected_dead=4)
    await world.settles(world.broker.dead_letter_queue, 4)
    return ops, audit, parked


async def test_list_shows_the_three_forms_and_leaves_them_in_the_queue(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ops, audit, parked = await park_all(world)
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for every last error
    code, out, err = await run(capsys, "dead-letters", "list", "--config", str(world.config))
    assert code == 0, err
    lines = out.splitlines()
    heads = ["ID", "SUBSCRIPTION", "REASON", "ATTEMPTS", "FAILED", "AT", "LAST", "ERROR"]
    assert lines[0].split() == heads
    assert lines[-1] == "4 dead letters shown of 4 in queue"
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert len(rows) == 4
    assert rows[ops.delivery_id].split()[1:7] == [
        "ops",
        "retries_exhausted",
        "7",
        "2024-05-01",
        "12:00:01Z",
        "HTTP",
    ]
    assert "Internal Server Error" in rows[ops.delivery_id]  # the newline made a space
    assert "permanent_failure" in rows[audit.delivery_id]
    assert "broker:delivery_limit         -  " in rows[parked["id"]]
    assert f"died in queue {world.broker.queue}" in rows[parked["id"]]
    [invalid] = [row for key, row in rows.items() if "invalid_event" in row]
    assert "not JSON" in invalid

    await world.settles(world.broker.dead_letter_queue, 4)
    monkeypatch.setenv("COLUMNS", "140")
    code, again, err = await run(capsys, "dead-letters", "list", "--config", str(world.config))
    assert code == 0, err
    assert again.splitlines()[-1] == "4 dead letters shown of 4 in queue"
    [row] = [line for line in again.splitlines() if line.startswith(ops.delivery_id)]
    assert len(row) == 140
    assert row.endswith("…")  # the last error cut to fit
    await world.settles(world.broker.dead_letter_queue, 4)


async def test_list_json_has_every_field_decoded(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ops, _, parked = await park_all(world)
    code, out, err = await run(
        capsys, "dead-letters", "list", "--config", str(world.config), "--json"
    )
    assert code == 0, err
    assert "4 dead letters shown of 4 in queue" in err
    records = {record["reason"]: record for record in map(json.loads, out.splitlines())}
    assert set(records) == {"retries_exhausted", "permanent_failure", "invalid_event"} | {
        "broker:delivery_limit"
    }

    delivery = records["retries_exhausted"]
    assert delivery["id"] == delivery["delivery_id"] == delivery["message_id"] == ops.delivery_id
    assert (delivery["kind"], delivery["subscription"], delivery["target_type"]) == (
        "delivery",
        "ops",
        "webhook",
    )
    assert (delivery["event_id"], delivery["event_type"]) == (ops.event["id"], "deployment.failed")
    assert delivery["attempts"] == 7
    assert delivery["failed_at"] == "2024-05-01T12:00:01.789Z"
    assert delivery["first_attempt_at"] == "2024-05-01T10:00:00.123Z"
    assert delivery["last_error"].startswith("HTTP 500")
    assert delivery["body"] == ops.event
    assert delivery["headers"][h.TIER] == "1h"
    assert delivery["content_type"] == "application/cloudevents+json"

    invalid = records["invalid_event"]
    assert base64.b64decode(invalid["body_base64"]) == INVALID_BODY
    assert "body" not in invalid
    assert invalid["headers"]["x-producer"] == "legacy-app"
    assert (invalid["content_type"], invalid["routing_key"]) == ("text/plain", "legacy.thing")
    assert invalid["event_id"] is None

    broker = records["broker:delivery_limit"]
    assert broker["kind"] is None
    assert broker["died_in"] == world.broker.queue
    assert (broker["id"], broker["event_id"]) == (parked["id"], parked["id"])
    assert broker["event_type"] == "deployment.started"
    [death] = broker["headers"]["x-death"]
    assert (death["reason"], death["queue"]) == ("delivery_limit", world.broker.queue)
    assert death["time"].endswith("Z")
    assert broker["failed_at"] == death["time"]
    await world.settles(world.broker.dead_letter_queue, 4)


async def test_list_filters_and_limits(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    ops, audit, parked = await park_all(world)
    base = ("dead-letters", "list", "--config", str(world.config), "--json")

    async def ids(*extra: str) -> list[str]:
        code, out, err = await run(capsys, *base, *extra)
        assert code == 0, err
        return [json.loads(line)["id"] for line in out.splitlines()]

    assert await ids("--subscription", "audit") == [audit.delivery_id]
    assert sorted(await ids("--subscription", "audit", "--subscription", "ops")) == sorted(
        [audit.delivery_id, ops.delivery_id]
    )
    assert await ids("--reason", "broker:delivery_limit") == [parked["id"]]
    assert await ids("--reason", "permanent_failure", "--subscription", "ops") == []
    assert await ids("--id", ops.delivery_id) == [ops.delivery_id]
    assert await ids("--id", audit.event["id"]) == [audit.delivery_id]  # an event id matches too
    assert len(await ids("--limit", "2")) == 2
    assert len(await ids("--limit", "0")) == 4

    code, out, _ = await run(capsys, *base[:-1], "--limit", "1")
    assert code == 0
    assert (
        out.splitlines()[-1] == "1 dead letter shown of 4 in queue (--limit 1; --limit 0 shows all)"
    )
    assert main([*base, "--reason", "flaky"]) == 2  # refused before any broker work
    assert "'flaky': not one of invalid_event" in capsys.readouterr().err
    await world.settles(world.broker.dead_letter_queue, 4)


async def test_replay_sends_one_delivery_to_the_deliveries_queue_with_fresh_headers(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ops, audit, _ = await park_all(world)
    code, out, err = await run(
        capsys,
        "dead-letters",
        "replay",
        "--config",
        str(world.config),
        "--id",
        ops.delivery_id,
        "--yes",
    )
    assert code == 0, err
    assert f"replayed 1 dead letter (1 to {world.broker.deliveries_queue})" in out

    [replayed] = await drain_queue(world.amqp, world.broker.deliveries_queue)
    properties = replayed.header.properties
    assert replayed.body == ops.body
    assert (properties.content_type, properties.message_id, properties.delivery_mode) == (
        "application/cloudevents+json",
        ops.delivery_id,
        2,
    )
    headers = dict(properties.headers or {})
    headers.pop("x-delivery-count", None)  # the deliveries queue adds it when it delivers
    replayed_at = headers.pop(h.REPLAYED_AT)
    assert isinstance(replayed_at, str)
    assert abs(datetime.fromisoformat(replayed_at) - datetime.now(UTC)).total_seconds() < 60
    assert headers == {
        h.KIND: h.KIND_DELIVERY,
        h.SUBSCRIPTION: "ops",
        h.TARGET_TYPE: "webhook",
        h.DELIVERY_ID: ops.delivery_id,
        h.EVENT_ID: ops.event["id"],
        h.ATTEMPTS: 0,
        h.RETRIES: 0,
    }
    await world.settles(world.broker.dead_letter_queue, 3)
    code, out, err = await run(
        capsys, "dead-letters", "list", "--config", str(world.config), "--json"
    )
    assert ops.delivery_id not in out
    assert audit.delivery_id in out
    assert await world.depth(world.broker.queue) == 0


async def test_replay_sends_an_invalid_event_back_to_the_work_queue_as_it_came(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    await park_all(world)
    code, out, err = await run(
        capsys, "dead-letters", "replay", "-c", str(world.config), "--reason", "invalid_event", "-y"
    )
    assert code == 0, err
    assert f"replayed 1 dead letter (1 to {world.broker.queue})" in out
    [replayed] = await drain_queue(world.amqp, world.broker.queue)
    assert replayed.body == INVALID_BODY
    assert replayed.header.properties.content_type == "text/plain"
    headers = dict(replayed.header.properties.headers or {})
    headers.pop("x-delivery-count", None)  # the work queue adds it when it delivers
    assert headers == {"x-producer": "legacy-app"}
    await world.settles(world.broker.dead_letter_queue, 3)
    assert await world.depth(world.broker.deliveries_queue) == 0


async def test_replay_sends_a_broker_dead_letter_back_to_its_queue_and_skips_a_foreign_one(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    parked = await park_by_broker(world, expected_dead=1)
    death = {
        "queue": "someone.elses.queue",
        "reason": "rejected",
        "count": 1,
        "exchange": "",
        "routing-keys": ["someone.elses.queue"],
        "time": datetime.now(UTC),
    }
    await publish(
        world.amqp, world.broker.dead_exchange, "x", b"{}", {"x-death": [death]}, "application/json"
    )
    await world.settles(world.broker.dead_letter_queue, 2)
    code, out, err = await run(capsys, "dead-letters", "replay", "-c", str(world.config), "-y")
    assert code == 0, err
    assert "not one of dispatcher's queues" in err
    assert f"replayed 1 dead letter (1 to {world.broker.queue})" in out
    [replayed] = await drain_queue(world.amqp, world.broker.queue)
    assert replayed.header.properties.message_id == parked["id"]
    assert json.loads(replayed.body) == parked
    leftover = replayed.header.properties.headers or {}
    assert not [key for key in leftover if key.startswith(("x-death", "x-dispatcher-"))]
    await world.settles(world.broker.dead_letter_queue, 1)  # the foreign one stays


async def test_dry_run_changes_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    ops, audit, _ = await park_all(world)
    code, out, err = await run(
        capsys, "dead-letters", "replay", "-c", str(world.config), "--dry-run"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "would replay 4 dead letters of 4 in queue:"
    assert world.broker.deliveries_queue in out
    assert ops.delivery_id in out
    code, out, err = await run(
        capsys,
        "dead-letters",
        "purge",
        "-c",
        str(world.config),
        "--dry-run",
        "--subscription",
        "audit",
    )
    assert code == 0, err
    assert out.splitlines()[0] == "would purge 1 dead letter of 4 in queue:"
    assert audit.delivery_id in out
    await world.settles(world.broker.dead_letter_queue, 4)
    assert await world.depth(world.broker.deliveries_queue) == 0
    assert await world.depth(world.broker.queue) == 0


@pytest.mark.parametrize("action", ["replay", "purge"])
async def test_without_yes_and_without_a_terminal_it_refuses(world: World, action: str) -> None:
    await park_delivery(world, "ops")
    await world.settles(world.broker.dead_letter_queue, 1)
    code, out, err = await command("dead-letters", action, "--config", str(world.config))
    assert (code, out) == (2, "")
    assert "--yes" in err
    await world.settles(world.broker.dead_letter_queue, 1)
    assert await world.depth(world.broker.deliveries_queue) == 0


async def test_on_a_terminal_it_asks_first(world: World) -> None:
    ops = await park_delivery(world, "ops")
    await park_delivery(world, "audit")
    await world.settles(world.broker.dead_letter_queue, 2)
    for answer, left in ((b"n\n", 2), (b"y\n", 1)):
        controller, terminal = pty.openpty()
        try:
            os.write(controller, answer)  # typed ahead: the terminal holds it for the prompt
            code, out, err = await command(
                "dead-letters",
                "purge",
                "-c",
                str(world.config),
                "--id",
                ops.delivery_id,
                stdin=terminal,
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert code == 0, err
        assert "purge 1 dead letter? [y/N]" in err
        await world.settles(world.broker.dead_letter_queue, left)
    assert "purged 1 dead letter" in out


async def test_purge_removes_only_the_chosen(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ops, audit, parked = await park_all(world)
    code, out, err = await run(
        capsys, "dead-letters", "purge", "-c", str(world.config), "--subscription", "ops", "-y"
    )
    assert code == 0, err
    assert "purged 1 dead letter" in out
    await world.settles(world.broker.dead_letter_queue, 3)
    code, out, err = await run(capsys, "dead-letters", "list", "-c", str(world.config), "--json")
    ids = {json.loads(line)["id"] for line in out.splitlines()}
    assert ops.delivery_id not in ids
    assert {audit.delivery_id, parked["id"]} <= ids
    assert len(ids) == 3
    code, out, err = await run(
        capsys, "dead-letters", "purge", "-c", str(world.config), "--subscription", "nobody", "-y"
    )
    assert (code, out) == (3, "no dead letters match (3 dead letters in queue)\n")  # nothing chosen


async def test_purge_with_a_limit_takes_the_first_n_in_queue_order(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    await park_all(world)
    code, out, err = await run(capsys, "dead-letters", "list", "-c", str(world.config), "--json")
    _first, *rest = [json.loads(line)["id"] for line in out.splitlines()]  # in queue order
    code, out, err = await run(
        capsys, "dead-letters", "purge", "-c", str(world.config), "--limit", "1", "-y"
    )
    assert code == 0, err
    assert "purged 1 dead letter" in out
    assert "the first 1 that match (--limit); more may match" in err
    await world.settles(world.broker.dead_letter_queue, len(rest))
    code, out, err = await run(capsys, "dead-letters", "list", "-c", str(world.config), "--json")
    # the first was purged; the others stay (the order may change: see DeadLetterQueue.settled)
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(rest)


async def test_replay_of_many_reports_progress(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 1050
    body = encode(new_event("deployment.failed", "urn:test"))
    for start in range(0, count, 150):
        await asyncio.gather(
            *(
                publish(
                    world.amqp,
                    world.broker.dead_exchange,
                    "deployment.failed",
                    body,
                    {
                        h.KIND: h.KIND_DELIVERY,
                        h.REASON: h.EXPIRED,
                        h.SUBSCRIPTION: "ops",
                        h.DELIVERY_ID: f"d-{n}",
                        h.ATTEMPTS: 3,
                    },
                    message_id=f"d-{n}",
                )
                for n in range(start, min(start + 150, count))
            )
        )
    await world.settles(world.broker.dead_letter_queue, count)
    code, out, err = await run(capsys, "dead-letters", "replay", "-c", str(world.config), "-y")
    assert code == 0, err
    assert err.splitlines() == ["replayed 1000 of 1050", "replayed 1050 of 1050"]
    assert f"replayed 1050 dead letters (1050 to {world.broker.deliveries_queue})" in out
    await world.settles(world.broker.dead_letter_queue, 0)
    await world.settles(world.broker.deliveries_queue, count)
    ids = [
        m.header.properties.message_id
        for m in await drain_queue(world.amqp, world.broker.deliveries_queue)
    ]
    assert ids == [f"d-{n}" for n in range(count)]  # in queue order


async def test_an_unreachable_broker_is_exit_1_without_the_password(
    names: BrokerNames, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [],
        broker=names.broker_config(url="amqp://guest:s3cret-pw@127.0.0.1:1/", connect_timeout_s=5),
    )
    code, out, err = await command("dead-letters", "list", "--config", str(config))
    assert code == 1
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1/" in err
    assert "s3cret-pw" not in out + err


async def test_before_dispatcher_ever_ran_there_is_nothing_and_nothing_is_created(
    names: BrokerNames, amqp: aiormq.abc.AbstractChannel, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    code, out, err = await command("dead-letters", "list", "--config", str(config))
    assert (code, out) == (0, "0 dead letters shown of 0 in queue\n")
    assert f"the dead-letter queue {names.dead_letter_queue!r} does not exist yet" in err
    code, out, err = await command("dead-letters", "replay", "-c", str(config), "--dry-run")
    assert (code, out) == (3, "no dead letters match (0 dead letters in queue)\n"), err
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await queue_depth(amqp, names.dead_letter_queue)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, timeout=60, check=True)


async def test_a_replacement_the_broker_refuses_leaves_its_dead_letter_in_place(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deliveries queue full (a max-length 0 policy, and probes in it: a quorum queue takes
    one message past its limit): the broker nacks the replacement, so the dead letter must
    stay, and the command says so with exit 1."""
    ops = await park_delivery(world, "ops")
    await world.settles(world.broker.dead_letter_queue, 1)
    policy = f"test-full-{world.broker.deliveries_queue}"
    pattern = f"^{re.escape(world.broker.deliveries_queue)}$"
    definition = '{"max-length": 0, "overflow": "reject-publish"}'
    await asyncio.to_thread(
        rabbitmqctl,
        "set_policy",
        "--apply-to",
        "queues",
        "--priority",
        "100",
        policy,
        pattern,
        definition,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the policy reaches the queue a moment after rabbitmqctl returns
            try:
                await world.amqp.basic_publish(
                    b"probe", routing_key=world.broker.deliveries_queue, timeout=10
                )
            except aiormq.exceptions.DeliveryError:  # nacked: the queue is full now
                break
            assert time.monotonic() < deadline, "the max-length policy never took effect"
            await asyncio.sleep(0.2)
        code, out, err = await run(capsys, "dead-letters", "replay", "-c", str(world.config), "-y")
    finally:
        await asyncio.to_thread(rabbitmqctl, "clear_policy", policy)
    assert code == 1
    assert f"not replayed, left in place: {ops.delivery_id}: the broker nacked it" in err
    assert "1 dead letter could not be replayed" in err
    assert "replayed 0 dead letters" in out
    await world.settles(world.broker.dead_letter_queue, 1)
