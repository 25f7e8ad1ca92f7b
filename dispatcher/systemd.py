"""The systemd notify protocol (sd_notify(3)), spoken directly: one datagram per message to the
unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).

Without `NOTIFY_SOCKET` (not under systemd, or `Type=` is not `notify`) nothing is sent. A send
that fails is logged once and otherwise ignored: systemd's bookkeeping must never stop the
daemon. The watchdog interval comes from `WATCHDOG_USEC`; `WATCHDOG_PID`, when set, must be our
pid (else the watchdog belongs to another process).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

#: without a watchdog, how often STATUS= is refreshed
STATUS_PERIOD_S = 5.0


class Notifier:
    """Sends `KEY=value` lines to systemd's notify socket."""

    def __init__(self, address: str, *, watchdog_usec: int | None = None) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier | None:
        """The notifier systemd asked for, or None when not run by systemd with Type=notify."""
        address = environ.get("NOTIFY_SOCKET", "")
        if not address or address[0] not in "/@":
            return None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        watchdog = int(usec) if usec.isdigit() and int(usec) > 0 and ours else None
        return cls(address, watchdog_usec=watchdog)

    def send(self, *fields: str) -> None:
        message = "\n".join(fields).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:  # once: a missing socket would otherwise log every ping
                self._failed = True
                log.warning("cannot notify systemd", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class StatusLine:
    """The short STATUS= summary: readiness, events/s since the last call, deliveries pending."""

    def __init__(
        self,
        ready: Callable[[], bool],
        consumed: Callable[[], int],
        pending: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ready, self._consumed, self._pending, self._clock = ready, consumed, pending, clock
        self._last = (clock(), consumed())

    def __call__(self) -> str:
        now, count = self._clock(), self._consumed()
        then, before = self._last
        self._last = (now, count)
        rate = (count - before) / (now - then) if now > then else 0.0
        state = "consuming" if self._ready() else "not connected to the broker; retrying"
        return f"{state}: {rate:.1f} events/s, {self._pending()} deliveries pending"


async def supervise(notifier: Notifier, ready: asyncio.Event, status: StatusLine) -> None:
    """READY=1 once `ready` is set, then WATCHDOG=1 (when asked for) and STATUS= at half the
    watchdog interval from this event loop, so a wedged loop misses its pings. Cancel to end."""
    notifier.send("STATUS=connecting to the broker")
    await ready.wait()
    notifier.send("READY=1", f"STATUS={status()}")
    watchdog = notifier.watchdog_s
    period = watchdog / 2 if watchdog else STATUS_PERIOD_S
    while True:
        await asyncio.sleep(period)
        line = f"STATUS={status()}"
        notifier.send(*(("WATCHDOG=1", line) if watchdog else (line,)))
