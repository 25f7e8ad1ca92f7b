"""Logging: structlog configured once by the CLI, console on a TTY and JSON lines otherwise.

Secrets never reach the output: `SecretRedactor` replaces every registered secret value (tokens,
signing keys, webhook URLs, broker passwords: what `redaction.secrets_of` finds) and any
`scheme://user:password@` credentials in every string of every event. Stdlib loggers (aiormq,
aiohttp) are routed through the same pipeline so their lines get the same format and redaction.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from dispatcher.redaction import Redactor


class SecretRedactor(Redactor):
    """A structlog processor that scrubs known secret values and URL passwords from log events."""

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        return {key: self._clean(value) for key, value in event_dict.items()}


def configure(
    level: str = "info",
    fmt: str = "auto",
    *,
    redactor: SecretRedactor | None = None,
    stream: TextIO | None = None,
) -> SecretRedactor:
    """Configure structlog and the stdlib root logger. Returns the redactor, so the caller can
    register secrets as it learns them (on config load and reload)."""
    stream = stream or sys.stderr
    redactor = redactor or SecretRedactor()
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared[:1],
            structlog.stdlib.add_logger_name,
            *shared[1:],
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Chatty libraries: their INFO lines are noise at our INFO level.
    for name in ("aiormq", "aiohttp.access", "kombu", "amqp"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    return redactor
