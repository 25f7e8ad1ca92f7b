"""`dispatcher health`: ask a running daemon's /healthz (or /readyz) and exit 0 or 1, for
container HEALTHCHECKs and scripts. Reads the address from the same config file as the daemon.
Stdlib only and apart from http.py, so a probe every few seconds imports no aiohttp."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from dispatcher.settings import Settings, parse_listen

TIMEOUT_S = 3.0


def probe_url(listen: str, path: str) -> str:
    """The URL that reaches a server bound to `listen` from this host: a wildcard address is
    reached through the loopback of its family."""
    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


@dataclass(frozen=True, slots=True)
class Probe:
    """What the daemon answered: `status` and `body` when it answered at all, else `reason`."""

    healthy: bool
    url: str | None
    status: int | None = None
    body: str = ""
    reason: str | None = None

    @property
    def text(self) -> str:
        where = f"{self.url}: " if self.url else ""
        if self.status is not None:
            return f"{where}{self.status} {self.body}"
        return f"{where}{self.reason}"


def probe(settings: Settings, *, ready: bool) -> Probe:
    """Ask the admin server, else the metrics server."""
    listen = settings.admin.listen or settings.metrics.listen
    if listen is None:
        reason = "neither admin.listen nor metrics.listen is set: nothing to ask"
        return Probe(False, None, reason=reason)
    if parse_listen(listen)[1] == 0:
        reason = f"{listen}: port 0 (any free port) cannot be probed; configure a port"
        return Probe(False, None, reason=reason)
    url = probe_url(listen, "/readyz" if ready else "/healthz")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 -- http only
            return Probe(True, url, answer.status, answer.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Probe(False, url, exc.code, exc.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError) as exc:
        return Probe(False, url, reason=str(getattr(exc, "reason", exc)))
