"""Health, metrics and systemd plumbing that needs no broker: listen addresses, the notify
protocol over a real datagram socket, the STATUS= line, bounded metric labels."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from dispatcher.admin.metrics import KNOWN_TYPES, Metrics
from dispatcher.admin.probe import probe_url
from dispatcher.settings import Settings, parse_listen
from dispatcher.systemd import Notifier, StatusLine, supervise


@pytest.mark.parametrize(
    ("listen", "parsed"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses(listen: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(listen) == parsed


@pytest.mark.parametrize("listen", ["9464", ":9464", "::1:9464", "host:port", "h:70000", "[::1]"])
def test_malformed_listen_addresses(listen: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(listen)


def test_admin_and_metrics_listen_are_checked() -> None:
    assert Settings().admin.listen == "127.0.0.1:9464"
    assert Settings().metrics.listen is None
    with pytest.raises(ValidationError, match="must differ"):
        Settings.model_validate(
            {"admin": {"listen": "1.2.3.4:9"}, "metrics": {"listen": "1.2.3.4:9"}}
        )
    with pytest.raises(ValidationError, match="HOST:PORT"):
        Settings.model_validate({"metrics": {"listen": "9464"}})


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:9464", "http://127.0.0.1:9464/healthz"),
        ("[::]:9464", "http://[::1]:9464/healthz"),
        ("10.1.2.3:80", "http://10.1.2.3:80/healthz"),
        ("[fe80::1]:80", "http://[fe80::1]:80/healthz"),
    ],
)
def test_probe_urls(listen: str, url: str) -> None:
    assert probe_url(listen, "/healthz") == url


def test_notifier_reads_what_systemd_sets() -> None:
    pid = str(os.getpid())
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None
    plain = Notifier.from_environ({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert plain is not None
    assert plain.watchdog_s is None
    ours = Notifier.from_environ(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}
    )
    assert ours is not None
    assert ours.watchdog_s == 30.0
    theirs = Notifier.from_environ(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    )
    assert theirs is not None
    assert theirs.watchdog_s is None  # the watchdog is another process's


def test_notifier_sends_datagrams_to_an_abstract_socket() -> None:
    name = f"@dispatcher-unit-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name[1:])
        systemd.settimeout(5)
        notifier = Notifier(name)
        notifier.send("READY=1", "STATUS=consuming")
        notifier.send("STOPPING=1")
        notifier.close()
        assert systemd.recv(4096) == b"READY=1\nSTATUS=consuming"
        assert systemd.recv(4096) == b"STOPPING=1"


def test_a_missing_notify_socket_is_logged_once_and_never_raises(
    tmp_path: os.PathLike[str],
) -> None:
    notifier = Notifier(os.path.join(tmp_path, "nobody-listens"))
    with capture_logs() as logs:
        for _ in range(3):
            notifier.send("WATCHDOG=1")
    notifier.close()
    assert [entry["event"] for entry in logs] == ["cannot notify systemd"]


def test_status_line_reports_the_rate_since_the_last_call() -> None:
    now, consumed = [100.0], [0]
    line = StatusLine(lambda: True, lambda: consumed[0], lambda: 7, clock=lambda: now[0])
    now[0], consumed[0] = 102.0, 50
    assert line() == "consuming: 25.0 events/s, 7 deliveries pending"
    now[0] = 103.0
    assert line() == "consuming: 0.0 events/s, 7 deliveries pending"
    down = StatusLine(lambda: False, lambda: 0, lambda: 0, clock=lambda: 1.0)
    assert down().startswith("not connected to the broker")


class RecordingNotifier(Notifier):
    def __init__(self, watchdog_usec: int | None) -> None:
        super().__init__("@unused", watchdog_usec=watchdog_usec)
        self.sent: list[tuple[str, ...]] = []
        self.grew = asyncio.Event()

    def send(self, *fields: str) -> None:
        self.sent.append(fields)
        self.grew.set()


async def test_supervise_says_ready_once_then_pings_the_watchdog() -> None:
    notifier = RecordingNotifier(watchdog_usec=20_000)  # ping every 10 ms
    ready = asyncio.Event()
    task = asyncio.create_task(supervise(notifier, ready, StatusLine(lambda: True, int, int)))
    try:
        await asyncio.wait_for(notifier.grew.wait(), 5)
        assert notifier.sent == [("STATUS=connecting to the broker",)]
        ready.set()
        async with asyncio.timeout(5):
            while len(notifier.sent) < 4:
                notifier.grew.clear()
                await notifier.grew.wait()
    finally:
        task.cancel()
    kinds = [fields[0] for fields in notifier.sent]
    assert kinds[:4] == ["STATUS=connecting to the broker", "READY=1", "WATCHDOG=1", "WATCHDOG=1"]
    assert notifier.sent[1][1].startswith("STATUS=consuming: ")


def test_event_type_labels_stay_bounded() -> None:
    metrics = Metrics(process=False)
    for n in range(500):
        metrics.event_consumed(f"producer{n}.invented-type")
    for known in sorted(KNOWN_TYPES):
        metrics.event_consumed(known)
    metrics.event_invalid()
    labels = {
        sample.labels["type"]
        for family in metrics.registry.collect()
        if family.name == "dispatcher_events_consumed"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert labels == KNOWN_TYPES | {"other", "invalid"}
    assert len(labels) < 40
