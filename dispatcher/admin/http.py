"""The admin HTTP server (aiohttp): /healthz, /readyz and /metrics, none of which needs a token.

- `/healthz`: the process and its event loop are alive (whoever answers runs on that loop).
- `/readyz`: consuming from the broker with subscriptions loaded; 503 with the reasons if not.
- `/metrics`: the Prometheus text format of the App's own registry.

`admin_app()` is the application the later subscriptions API mounts on
(`app.add_subapp("/api/v1/", api)` in the composition root, before `start()`); `metrics_app()`
is the same three routes alone, for `metrics.listen` (a port of their own). All handlers only
read in-memory state, so they answer in well under 50 ms even while the daemon is busy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatcher.admin.metrics import Metrics
from dispatcher.settings import parse_listen

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Readiness:
    broker_connected: bool
    subscriptions_loaded: bool
    subscriptions: int
    stopping: bool

    @property
    def ready(self) -> bool:
        return self.broker_connected and self.subscriptions_loaded and not self.stopping


class Health(Protocol):
    """What the health routes ask the daemon (the App answers)."""

    def readiness(self) -> Readiness: ...


class _Routes:
    def __init__(self, health: Health, metrics: Metrics) -> None:
        self._health, self._metrics = health, metrics

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        state = self._health.readiness()
        status = 200 if state.ready else 503
        return web.json_response({"ready": state.ready, **asdict(state)}, status=status)

    async def metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app(health: Health, metrics: Metrics) -> web.Application:
    """/healthz, /readyz and /metrics."""
    routes = _Routes(health, metrics)
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics)
    return app


def admin_app(health: Health, metrics: Metrics) -> web.Application:
    """The admin server's application: the health and metrics routes; the API mounts here."""
    return metrics_app(health, metrics)


class HttpServer:
    """One aiohttp application served on one `HOST:PORT` (port 0: any free port)."""

    def __init__(self, name: str, app: web.Application, listen: str) -> None:
        self.name = name
        self.listen = listen
        self._app = app
        self._host, self._port = parse_listen(listen)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Bind and serve; OSError (address in use, not ours) when the address cannot be bound.
        Returns the base URL, with the port actually bound."""
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{host}:{bound[1]}"
        log.info("http server listening", server=self.name, url=self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
