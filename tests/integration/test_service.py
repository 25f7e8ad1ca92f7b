"""The daemon as a service: the systemd notify protocol over a real datagram socket, and
/healthz and /readyz following the broker connection (through a gate we open and close)."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import aiormq
import pytest

from tests.integration.observe import DaemonProcess, NotifySocket, TcpGate, get
from tests.support import BrokerNames, write_config

pytestmark = pytest.mark.integration


def fields(message: str) -> list[str]:
    return message.splitlines()


async def test_notify_socket_gets_ready_watchdog_stopping_in_order(
    tmp_path: Path, names: BrokerNames, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    daemon = DaemonProcess.run(config, env)
    await daemon.start()
    try:
        await notify.wait_for(lambda m: "READY=1" in fields(m))
        declared = await amqp.queue_declare(names.queue, passive=True)
        assert declared.consumer_count == 1  # READY means consuming, not just started
        await notify.wait_for(lambda m: "WATCHDOG=1" in fields(m), count=2)
        code = await daemon.stop()
    finally:
        await daemon.kill()
        messages = notify.pending()
        notify.close()
    assert code == 0, daemon.output
    kinds = [f for m in messages for f in fields(m) if not f.startswith("STATUS=")]
    ready = kinds.index("READY=1")
    stopping = kinds.index("STOPPING=1")
    watchdogs = [i for i, kind in enumerate(kinds) if kind == "WATCHDOG=1"]
    assert ready < watchdogs[0], kinds  # no ping before start-up is complete
    assert len(watchdogs) >= 2
    assert watchdogs[-1] < stopping, kinds
    assert kinds.count("READY=1") == 1
    statuses = [f for m in messages for f in fields(m) if f.startswith("STATUS=")]
    assert statuses[0] == "STATUS=connecting to the broker"
    assert any(s.endswith("events/s, 0 deliveries pending") for s in statuses), statuses


async def test_readyz_follows_the_broker_connection_healthz_stays_up(
    tmp_path: Path, names: BrokerNames
) -> None:
    gate = TcpGate()
    port = await gate.start()
    config = write_config(tmp_path / "c.yaml", names, [])
    config.write_text(config.read_text().replace("127.0.0.1:5672", f"127.0.0.1:{port}"))
    notify = NotifySocket(f"@dispatcher-test-{uuid.uuid4().hex}")  # the abstract namespace
    daemon = DaemonProcess.run(config, {"NOTIFY_SOCKET": notify.address})
    await daemon.start()
    try:
        url = await daemon.admin_url()
        await daemon.logged("broker connection lost", 2)  # the broker is unreachable
        assert (await get(f"{url}/healthz"))[0] == 200
        status, body = await get(f"{url}/readyz")
        assert status == 503
        assert json.loads(body)["broker_connected"] is False
        assert "dispatcher_ready 0.0" in (await get(f"{url}/metrics"))[1]
        assert not any("READY=1" in fields(m) for m in notify.pending())

        gate.open = True
        await notify.wait_for(lambda m: "READY=1" in fields(m))
        status, body = await get(f"{url}/readyz")
        assert (status, json.loads(body)["ready"]) == (200, True)

        gate.open = False  # the broker goes away and stays away
        lost = sum(r["event"] == "broker connection lost" for r in daemon.records)
        gate.drop()
        await daemon.logged("broker connection lost", lost + 1)
        assert (await get(f"{url}/readyz"))[0] == 503
        assert (await get(f"{url}/healthz"))[0] == 200

        gate.open = True  # and comes back: consuming again, ready again
        await daemon.logged("consuming", 2)
        assert (await get(f"{url}/readyz"))[0] == 200
        metrics = (await get(f"{url}/metrics"))[1]
        reconnects = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("dispatcher_broker_reconnects_total ")
        )
        assert reconnects >= lost + 1
        assert await daemon.stop() == 0
    finally:
        await daemon.kill()
        await gate.stop()
        notify.close()


async def test_an_admin_port_in_use_stops_the_daemon_with_a_clear_error(
    tmp_path: Path, names: BrokerNames
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = write_config(tmp_path / "c.yaml", names, [], admin={"listen": listen})
        daemon = DaemonProcess.run(config)
        await daemon.start()
        try:
            record = await daemon.logged("cannot listen")
            code = await daemon.exit_status()
        finally:
            await daemon.kill()
    assert code == 1
    assert (record["server"], record["listen"]) == ("admin", listen)
