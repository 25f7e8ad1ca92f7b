"""`-o json` on every command that prints data, read field by field; and the exit-code table:
0 ok, 1 a failure of what was asked, 2 usage or config error, 3 nothing matched or selected.
Each command runs as the real process against the real broker and loopback receivers."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import aiormq
import pytest

from dispatcher.events import encode, new_event
from tests.support import (
    LOOPBACK_NETWORKS,
    BrokerNames,
    Sink,
    run_cli,
    running,
    wait_for_depth,
    write_config,
)

pytestmark = pytest.mark.integration


def hook(sink: Sink, name: str = "hook", path: str = "/h") -> dict[str, Any]:
    return {"name": name, "events": ["*"], "target": {"type": "webhook", "url": sink.url(path)}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_check_config_json_and_its_error_document(tmp_path: Path, sink: Sink) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "delivery": {"allowed_networks": LOOPBACK_NETWORKS},
                "subscriptions": [hook(sink), {**hook(sink, "off"), "enabled": False}],
            }
        )
    )
    code, out, err = await run_cli("check-config", "-c", str(config), "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {
        "config": str(config),
        "ok": True,
        "subscriptions": 2,
        "enabled": 1,
        "targets": {"webhook": 2},
    }
    config.write_text("broker:\n  prefetch: lots\n")
    code, out, err = await run_cli("-o", "json", "check-config", "-c", str(config))
    assert code == 2
    error = json.loads(out)["error"]
    assert (error["code"], error["exit"], error["message"]) == (
        "config",
        2,
        "the config is not valid",
    )
    [problem] = error["problems"]
    assert problem.startswith(f"{config}:2: broker.prefetch:")
    assert problem in err  # the same words for a person, on stderr


async def test_status_publish_and_version_json(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = write_config(
        tmp_path / "c.yaml", names, [hook(sink)], delivery={"retry_delays": ["1m"]}
    )
    async with running(config):
        code, out, err = await run_cli("status", "-c", str(config), "-o", "json")
        assert code == 0, err
        status = json.loads(out)
        assert status["broker"] == "amqp://guest:***@127.0.0.1:5672/"
        queues = {q["name"]: q for q in status["queues"]}
        assert queues[names.queue] == {
            "name": names.queue,
            "role": "work",
            "messages": 0,
            "consumers": 1,
        }
        assert queues[f"{names.queue}.retry.1m"]["role"] == "retry tier 1m"
        assert queues[names.dead_letter_queue]["consumers"] == 0

        code, out, err = await run_cli(
            "publish", "-c", str(config), "-o", "json", "deployment.failed", "--project", "web"
        )
        assert code == 0, err
        published = json.loads(out)
        assert set(published) == {"id", "type", "exchange"}
        assert (published["type"], published["exchange"]) == ("deployment.failed", names.exchange)
        uuid.UUID(published["id"])
        await sink.wait_for(1)
    assert sink.received[0].json["id"] == published["id"]

    code, out, err = await run_cli("version", "-o", "json")
    assert code == 0, err
    version = json.loads(out)
    assert version["dispatcher"] == "0.1.0"
    assert version["python"].startswith("CPython 3.")
    assert version["event_loop"].split()[0] in ("uvloop", "asyncio")
    assert set(version["packages"]) >= {"aiormq", "aiohttp", "slack-sdk"}
    assert all(version["packages"][name] for name in ("aiormq", "aiohttp", "slack-sdk"))


async def test_test_target_and_render_json(tmp_path: Path, names: BrokerNames, sink: Sink) -> None:
    sink.status["/down"] = 503
    subscriptions = [hook(sink), hook(sink, "down", "/down")]
    config = write_config(tmp_path / "c.yaml", names, subscriptions)
    code, out, err = await run_cli("test-target", "hook", "-c", str(config), "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True
    assert (result["subscription"], result["target_type"]) == ("hook", "webhook")
    assert result["target"].startswith("webhook:")
    assert result["detail"].startswith("HTTP 2")
    assert result["enabled_in_running_processes"] is True
    assert result["event"]["id"] == sink.received[0].json["id"]
    assert "sending a sample" in err  # progress on stderr; stdout holds only the document

    code, out, err = await run_cli("test-target", "down", "-c", str(config), "-o", "json")
    assert code == 1
    failed = json.loads(out)
    assert (failed["ok"], failed["retryable"]) == (False, True)
    assert failed["error"]["code"] == "target_failed"
    assert failed["error"]["message"].startswith("HTTP 503")
    assert "/down" not in out  # the URL is a secret: only its origin is named

    event = new_event("deployment.failed", "test", project="web")
    code, out, err = await run_cli(
        "render", "hook", "-", "-c", str(config), "-o", "json", stdin=encode(event)
    )
    assert code == 0, err
    rendered = json.loads(out)
    assert rendered["event"] == {"id": event["id"], "type": "deployment.failed"}
    message = rendered["message"]
    assert (message["method"], message["url"]) == ("POST", "<webhook url>")
    assert message["headers"]["Content-Type"] == "application/cloudevents+json"
    assert message["body"]["id"] == event["id"]

    code, out, err = await run_cli("render", "hook", "-", "-c", str(config), stdin=b"{nope")
    assert code == 2
    assert "-: " in err


async def test_health_json_healthy_and_not(tmp_path: Path, names: BrokerNames, sink: Sink) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "c.yaml", names, [hook(sink)], admin={"listen": f"127.0.0.1:{port}"}
    )
    async with running(config):
        code, out, err = await run_cli("health", "-c", str(config), "-o", "json", "--ready")
    assert code == 0, err
    health = json.loads(out)
    assert health["healthy"] is True
    assert (health["url"], health["status"]) == (f"http://127.0.0.1:{port}/readyz", 200)
    assert health["body"]["ready"] is True
    code, out, err = await run_cli("health", "-c", str(config), "-o", "json")  # nothing runs
    assert code == 1
    down = json.loads(out)
    assert (down["healthy"], down["status"]) == (False, None)
    assert down["error"]["code"] == "unhealthy"


async def test_dead_letters_replay_json_and_nothing_selected(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    sink.status["/gone"] = 410
    config = write_config(tmp_path / "c.yaml", names, [hook(sink, "gone", "/gone")])
    async with running(config):
        code, out, err = await run_cli(
            "publish", "-c", str(config), "-o", "json", "deployment.failed"
        )
        event_id = json.loads(out)["id"]
        await wait_for_depth(amqp, names.dead_letter_queue, 1)
    sink.status["/gone"] = 204
    code, out, err = await run_cli(
        "dead-letters", "replay", "-c", str(config), "-o", "json", "--reason", "nothing-such"
    )
    assert code == 2  # argparse: not a reason
    code, out, err = await run_cli(
        "dead-letters", "replay", "-c", str(config), "-o", "json", "--subscription", "nobody", "-y"
    )
    assert code == 3
    nothing = json.loads(out)
    assert (nothing["matched"], nothing["chosen"], nothing["in_queue"]) == (0, [], 1)
    code, out, err = await run_cli("dead-letters", "replay", "-c", str(config), "-o", "json", "-y")
    assert code == 0, err
    report = json.loads(out)
    assert (report["action"], report["dry_run"], report["confirmed"]) == ("replay", False, True)
    assert (report["matched"], report["done"], report["failed"]) == (1, 1, [])
    assert report["to"] == {f"{names.queue}.deliveries": 1}
    [chosen] = report["chosen"]
    assert (chosen["event_id"], chosen["reason"]) == (event_id, "permanent_failure")


async def test_targets_enable_json(tmp_path: Path, names: BrokerNames, sink: Sink) -> None:
    config = write_config(tmp_path / "c.yaml", names, [hook(sink)])
    code, out, err = await run_cli(
        "targets", "enable", "--key", "webhook:abc", "-c", str(config), "-o", "json"
    )
    assert code == 0, err
    assert json.loads(out) == {"target": "webhook:abc", "sent": True}


async def test_interrupted_is_exit_130_with_its_document(tmp_path: Path, sink: Sink) -> None:
    # a "broker" that takes the connection and never answers: status waits on it until SIGINT
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(f"broker: {{url: 'amqp://guest:guest@127.0.0.1:{port}/'}}\n")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dispatcher", "status", "-c", str(config), "-o", "json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            await connected.wait()
            process.send_signal(signal.SIGINT)
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        server.close()
        await server.wait_closed()
    assert process.returncode == 130
    assert json.loads(out)["error"] == {
        "code": "interrupted",
        "exit": 130,
        "message": "interrupted",
    }
