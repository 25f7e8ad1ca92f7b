"""The `dispatcher` command as a real process: signals, exit codes, what it prints."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiormq
import pytest

from dispatcher.events import encode, new_event
from tests.support import (
    BrokerNames,
    Sink,
    drain_queue,
    publish_raw,
    queue_depth,
    write_config,
)

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
URL_TOKEN = "T0KEN-in-the-path-8f2d"


async def start_daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_until(process: asyncio.subprocess.Process, text: str, lines: list[str]) -> None:
    """Read stderr lines into `lines` until one contains `text` (bounded by the caller)."""
    assert process.stderr is not None
    while True:
        raw = await process.stderr.readline()
        if not raw:
            raise AssertionError(f"process ended before printing {text!r}:\n" + "".join(lines))
        lines.append(raw.decode())
        if text in lines[-1]:
            return


async def finish(process: asyncio.subprocess.Process, lines: list[str]) -> int:
    assert process.stderr is not None
    rest = await asyncio.wait_for(process.stderr.read(), 30)
    lines.extend(rest.decode().splitlines(keepends=True))
    return await asyncio.wait_for(process.wait(), 30)


async def test_sigterm_with_events_in_flight_loses_nothing(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.hold = asyncio.Event()
    config = write_config(
        tmp_path / "c.yaml",
        names,
        [{"name": "all", "events": ["*"], "target": {"type": "webhook", "url": sink.url("/all")}}],
        shutdown_timeout_s=20,
    )
    process = await start_daemon(config)
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            await read_until(process, '"consuming"', lines)
        events = [new_event("deployment.started", "test", project="p") for _ in range(50)]
        for event in events:
            await publish_raw(amqp, names.exchange, event["type"], encode(event))
        await sink.wait_for(5)  # these are in flight: the receiver holds its answers
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await read_until(process, '"draining"', lines)
        sink.hold.set()
        code = await finish(process, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, "".join(lines)
    assert any('"dispatcher stopped"' in line for line in lines)
    delivered = {r.json["id"] for r in sink.received}
    left = {json.loads(m.body)["id"] for m in await drain_queue(amqp, names.queue)}
    assert delivered | left == {e["id"] for e in events}
    assert not delivered & left  # what was delivered was acked for good: no duplicate later
    assert len(delivered) >= 5
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


async def test_logs_are_json_carry_delivery_ids_and_no_secrets(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status[f"/hooks/{URL_TOKEN}"] = 503
    target = {
        "type": "webhook",
        "url": sink.url(f"/hooks/{URL_TOKEN}?token=qs-secret-991"),
        "secret": SECRET,
        "headers": {"Authorization": "Bearer header-secret-123"},
    }
    config = write_config(
        tmp_path / "c.yaml", names, [{"name": "flaky", "events": ["*"], "target": target}]
    )
    process = await start_daemon(config)
    lines: list[str] = []
    event = new_event("value.deleted", "test")
    try:
        async with asyncio.timeout(20):
            await read_until(process, '"consuming"', lines)
            await publish_raw(amqp, names.exchange, event["type"], encode(event))
            await read_until(process, '"delivery retry scheduled"', lines)
        process.send_signal(signal.SIGTERM)
        code = await finish(process, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    records: list[dict[str, Any]] = [json.loads(line) for line in lines if line.strip()]
    about_delivery = [r for r in records if r["event"].startswith("delivery")]
    assert len(about_delivery) == 4  # three failed attempts, then the first retry tier
    for record in about_delivery:
        assert record["event_id"] == event["id"]
        assert record["subscription"] == "flaky"
        assert record["delivery_id"].startswith("dlv_")
    output = "".join(lines)
    for secret in (URL_TOKEN, "qs-secret-991", SECRET, "header-secret-123", "guest:guest"):
        assert secret not in output
    waiting = await drain_queue(amqp, f"{names.queue}.retry.10s")
    assert len(waiting) == 1


def run_cli(*args: str) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


def test_check_config_accepts_the_shipped_config() -> None:
    code, out, err = run_cli("check-config", "--config", "config/dispatcher.yaml")
    assert code == 0, err
    assert out.strip() == "config/dispatcher.yaml: OK: 1 subscription (1 enabled): 1 log"


def test_check_config_and_run_refuse_a_bad_file_with_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "broker:\n"
        "  prefetch: lots\n"
        "subscriptions:\n"
        "  - name: a\n"
        '    events: ["x.*"]\n'
        "    target: {type: webhook, url: ftp://nope, secret: not-a-key}\n"
    )
    for command in ("check-config", "run"):
        code, out, err = run_cli(command, "--config", str(bad))
        assert code == 2
        assert out == ""
        problems = err.strip().splitlines()
        assert f"{bad}:2: broker.prefetch:" in problems[0]
        assert any(p.startswith(f"{bad}:6: subscriptions[a].target.url:") for p in problems)
        assert any(p.startswith(f"{bad}:6: subscriptions[a].target.secret:") for p in problems)
        assert "not-a-key" not in err


async def test_publish_command_prints_the_id_of_a_well_formed_event(
    tmp_path: Path, names: BrokerNames, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    await amqp.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    declared = await amqp.queue_declare(exclusive=True)
    assert declared.queue is not None
    await amqp.queue_bind(declared.queue, names.exchange, routing_key="#")
    code, out, err = await asyncio.to_thread(
        run_cli,
        "publish",
        "--config",
        str(config),
        "deployment.failed",
        "--project",
        "web",
        "--envtype",
        "PRODUCTION",
        "--subject",
        "v1.2",
        "--data",
        '{"n": 1}',
    )
    assert code == 0, err
    [message] = await drain_queue(amqp, declared.queue)
    event = json.loads(message.body)
    assert event["id"] == out.strip()
    assert message.routing_key == "deployment.failed"
    assert (event["type"], event["project"], event["envtype"], event["subject"], event["data"]) == (
        "deployment.failed",
        "web",
        "PRODUCTION",
        "v1.2",
        {"n": 1},
    )


async def test_unreachable_broker_is_retried_and_sigterm_still_exits_cleanly(
    tmp_path: Path, names: BrokerNames
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    text = config.read_text().replace("127.0.0.1:5672", "127.0.0.1:1")
    config.write_text(text.replace("guest:guest", "guest:s3cret-pw"))
    process = await start_daemon(config)
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            for _ in range(2):  # keeps trying, with backoff
                await read_until(process, '"broker connection lost"', lines)
        process.send_signal(signal.SIGTERM)
        code = await finish(process, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert "s3cret-pw" not in "".join(lines)
    assert '"broker": "amqp://guest:***@127.0.0.1:1/"' in "".join(lines)


async def test_sighup_reloads_subscriptions_and_refuses_a_broken_file(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    def sub(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "events": ["*"],
            "target": {"type": "webhook", "url": sink.url(f"/{name}")},
        }

    config = write_config(tmp_path / "c.yaml", names, [sub("first")])
    process = await start_daemon(config)
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            await read_until(process, '"consuming"', lines)
            write_config(config, names, [sub("first"), sub("second")])
            process.send_signal(signal.SIGHUP)
            await read_until(process, '"subscriptions reloaded"', lines)
            event = new_event("project.updated", "test")
            await publish_raw(amqp, names.exchange, event["type"], encode(event))
            await sink.wait_for(2)
            config.write_text("subscriptions: [oops\n")
            process.send_signal(signal.SIGHUP)
            await read_until(process, '"reload refused; keeping the running subscriptions"', lines)
            second = new_event("project.deleted", "test")
            await publish_raw(amqp, names.exchange, second["type"], encode(second))
            await sink.wait_for(4)
        process.send_signal(signal.SIGTERM)
        code = await finish(process, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert sorted(r.path for r in sink.received) == ["/first", "/first", "/second", "/second"]
    assert {r.json["id"] for r in sink.at("/second")} == {event["id"], second["id"]}
