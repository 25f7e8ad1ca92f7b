"""Helpers for the service tests: the daemon as a process with its log read as it comes, a
systemd notify socket, and a TCP gate in front of RabbitMQ that can refuse and drop connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp


class DaemonProcess:
    """A `dispatcher run` process; its JSON log lines are collected as they arrive."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.records: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._logged = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._eof = False

    @classmethod
    def run(cls, config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        return cls([sys.executable, "-m", "dispatcher", "run", "--config", str(config)], env)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode()
            async with self._logged:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    self.records.append(json.loads(line))
                self._logged.notify_all()
        async with self._logged:
            self._eof = True
            self._logged.notify_all()

    async def logged(self, event: str, count: int = 1, timeout_s: float = 20) -> dict[str, Any]:
        """The `count`-th log record with this event name, once it is written."""

        def found() -> list[dict[str, Any]]:
            return [r for r in self.records if r.get("event") == event]

        async with asyncio.timeout(timeout_s), self._logged:
            await self._logged.wait_for(lambda: len(found()) >= count or self._eof)
        matches = found()
        assert len(matches) >= count, f"exited before logging {event!r}:\n{self.output}"
        return matches[count - 1]

    async def admin_url(self, server: str = "admin") -> str:
        for n in range(1, 3):
            record = await self.logged("http server listening", n)
            if record["server"] == server:
                return str(record["url"])
        raise AssertionError(f"no {server} server in the log:\n{self.output}")

    @property
    def output(self) -> str:
        return "".join(self.raw)

    async def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then the exit status (bounded); kills it if it does not exit in time."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout_s)
        finally:
            await self.kill()
        return code

    async def exit_status(self, timeout_s: float = 20) -> int:
        """The exit status of a process that ends by itself (bounded)."""
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)


class NotifySocket:
    """A unix datagram socket standing in for systemd's: collects what the daemon sends."""

    def __init__(self, address: str) -> None:
        self.address = address  # a path, or "@name" for the abstract namespace
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def wait_for(
        self, predicate: Callable[[str], bool], count: int = 1, timeout_s: float = 20
    ) -> str:
        """The `count`-th message (received or to come) for which `predicate` holds."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            while True:
                matches = [message for message in self.messages if predicate(message)]
                if len(matches) >= count:
                    return matches[count - 1]
                self.messages.append((await loop.sock_recv(self.sock, 65536)).decode())

    def pending(self) -> list[str]:
        """Messages that arrived and were not read yet (without waiting)."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(65536).decode())
        return self.messages

    def close(self) -> None:
        self.sock.close()


class TcpGate:
    """A TCP forwarder on 127.0.0.1 to RabbitMQ. Closed, it accepts and hangs up at once (the
    broker is unreachable); `drop()` cuts every forwarded connection (the broker went away)."""

    def __init__(self, upstream_port: int = 5672) -> None:
        self.upstream_port = upstream_port
        self.open = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()
