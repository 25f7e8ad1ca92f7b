"""Connecting to the broker, or to the first node of a cluster that answers (`broker.url` may
be a list), for the daemon and the commands alike. Passwords never reach an error or a log."""

from __future__ import annotations

import asyncio

import aiormq
import structlog
from aiormq.abc import AbstractConnection
from yarl import URL

from dispatcher.errors import BrokerError
from dispatcher.redaction import Redactor, redact_url, secrets_of
from dispatcher.settings import BrokerSettings

log = structlog.get_logger(__name__)

#: failures of the connection that mean "reconnect and carry on"
CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelClosed,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
#: anything the broker or the network may raise during a command's work
BROKER_FAILURES = (*CONNECTION_ERRORS, aiormq.exceptions.AMQPError)


async def connect_node(
    broker: BrokerSettings, *, name: str, first: int = 0
) -> tuple[AbstractConnection, int]:
    """A connection to the first node that answers, trying them in turn from `all_urls[first]`,
    and the index of that node; the last node's failure (a CONNECTION_ERRORS) if none does."""
    urls = broker.all_urls
    failure: BaseException | None = None
    for offset in range(len(urls)):
        index = (first + offset) % len(urls)
        url = URL(urls[index])
        if "heartbeat" not in url.query:
            url = url.update_query(heartbeat=broker.heartbeat_s)
        try:
            connection = await asyncio.wait_for(
                aiormq.connect(url, client_properties={"connection_name": name}),
                broker.connect_timeout_s,
            )
        except CONNECTION_ERRORS as exc:
            failure = exc
            if len(urls) > 1:
                log.info("broker node not answering", broker=redact_url(urls[index]))
            continue
        return connection, index
    assert failure is not None
    raise failure


async def open_connection(broker: BrokerSettings, *, name: str) -> AbstractConnection:
    """For a command: a connection to the broker (any node), or a BrokerError that says why."""
    try:
        connection, _ = await connect_node(broker, name=name)
    except BROKER_FAILURES as exc:
        where = broker.safe_url
        raise BrokerError(f"cannot reach the broker at {where}: {why(exc, broker)}") from None
    return connection


def why(exc: BaseException, broker: BrokerSettings) -> str:
    """The exception as text, with every node's URL redacted and no password anywhere."""
    # any length: a message mangled is better than a short password shown
    return Redactor(secrets_of(broker), min_length=1).scrub(f"{type(exc).__name__}: {exc}")
