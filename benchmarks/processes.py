"""The processes a benchmark run starts: the real daemon (`dispatcher run`), the receiver, and the
bare ceiling/baseline programs. Every wait is bounded; every process is stopped on the way out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from benchmarks.broker import Broker, Names


class BenchmarkError(Exception):
    """A phase could not run (a process died, a wait passed its deadline)."""


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MB; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Daemon:
    """`dispatcher run` as a subprocess: default settings but for these broker names, the
    admin port, loopback targets allowed and these subscriptions."""

    def __init__(self, workdir: Path, names: Names, subscriptions: list[dict[str, Any]]) -> None:
        self.names = names
        self.config = workdir / f"{names.connection_name}.yaml"
        document = {
            "broker": names.broker_config(),
            # The admin server runs as by default, on a free port: a dispatcher already serving
            # here, or a test's, never clashes with the benchmark's.
            "admin": {"listen": "127.0.0.1:0"},
            # the receivers are on loopback, which webhook targets may reach only when allowed
            "delivery": {"allowed_networks": ["127.0.0.0/8"]},
            "subscriptions": subscriptions,
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    async def start(self, broker: Broker, timeout_s: float = 30.0) -> None:
        """Start it and wait until it consumes from its queue."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher",
            "run",
            "--config",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_stderr())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (await broker.depth(self.names.queue))[1] < 1:
            if self._process.returncode is not None or loop.time() > deadline:
                raise BenchmarkError(f"the daemon did not start consuming:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def _read_stderr(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        async for line in self._process.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def tail(self) -> str:
        return "".join(self._stderr)

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for the exit (SIGKILL past the deadline); the exit status."""
        process = self._process
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        return process.returncode or 0


class Receiver:
    """The receiver subprocess (benchmarks.receiver) and a client for its counters."""

    def __init__(self, ports: int) -> None:
        self._wanted = ports
        self.ports: list[int] = []
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Receiver:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.receiver",
            "--ports",
            str(self._wanted),
            stdin=asyncio.subprocess.PIPE,  # closing it (or our death) ends the receiver
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if not line:
            raise BenchmarkError("the receiver did not start")
        self.ports = orjson.loads(line)["ports"]
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    def url(self, path: str, port_index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[port_index]}{path}"

    async def reset(self) -> None:
        assert self._session is not None
        async with self._session.post(self.url("/_reset")) as answer:
            answer.raise_for_status()

    async def stats(self) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(self.url("/_stats")) as answer:
            answer.raise_for_status()
            stats: dict[str, Any] = orjson.loads(await answer.read())
            return stats

    async def wait_for(self, count: int, timeout_s: float) -> dict[str, Any]:
        """Poll until `count` requests arrived or the deadline passed; the last stats."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        stats = await self.stats()
        while stats["count"] < count and loop.time() < deadline:
            await asyncio.sleep(0.1)
            stats = await self.stats()
        return stats


async def run_bare(*args: str, timeout_s: float) -> dict[str, Any]:
    """Run `python -m benchmarks.bare ARGS`; its JSON report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.bare",
        *args,
        "--timeout-s",
        str(timeout_s),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s + 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchmarkError(f"benchmarks.bare {args[0]} did not finish") from None
    if process.returncode != 0:
        raise BenchmarkError(f"benchmarks.bare {args[0]} failed:\n{err.decode()[-2000:]}")
    report: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return report
