"""Publish events to dispatcher in one line, from a threaded web app or from asyncio.

Flask, Django, scripts: one `Publisher` per process, shared by all threads::

    publisher = Publisher("amqp://app:secret@rabbitmq:5672//", source="urn:shop")  # at startup
    event_id = publisher.publish("deployment.failed", {"version": "1.2"}, project="shop")
    publisher.close()  # at shutdown (or use it as a context manager)

asyncio::

    async with AsyncPublisher("amqp://app:secret@rabbitmq:5672/", source="urn:shop") as pub:
        event_id = await pub.publish("deployment.failed", {"version": "1.2"}, project="shop")
        await pub.publish("deployment.succeeded", subject="v1.3", project="shop")

Both send CloudEvents 1.0 in structured JSON mode (`application/cloudevents+json`), persistent,
with `message_id` = event id, to a durable topic exchange with routing key = event type, and return
the event id only after the broker confirmed the message. Anything else raises `PublishError`: a
nack, a failed or unconfirmed publish, and, with `mandatory=True` (the default), an event that no
queue is bound for, which the broker would otherwise drop silently. A publish retried after a lost
connection may arrive twice; receivers drop duplicates by the stable event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self
from urllib.parse import urlsplit

import aiormq
import kombu.connection
import kombu.entity
import kombu.messaging
import kombu.pools
from aiormq.abc import AbstractChannel, AbstractConnection
from amqp.exceptions import MessageNacked  # type: ignore[import-untyped]  # py-amqp has no types
from kombu.exceptions import KombuError
from pamqp.commands import Basic

from dispatcher.errors import BrokerError, PublishError
from dispatcher.events import encode, new_event
from dispatcher.redaction import redact_url

CONTENT_TYPE = "application/cloudevents+json"
DEFAULT_SOURCE = "urn:dispatcher:publisher"
#: kombu `Connection.ensure` keywords: a few quick tries, never an endless wait in a web request
DEFAULT_RETRY_POLICY: Mapping[str, Any] = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}

# kombu ships py.typed but leaves these unannotated; as Any, mypy --strict accepts their calls
Connection: Any = kombu.connection.Connection
Exchange: Any = kombu.entity.Exchange
Producer: Any = kombu.messaging.Producer
ProducerPool: Any = kombu.pools.ProducerPool

#: aiormq errors meaning the connection or channel went away: worth one reconnect
_LOST = (
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
)


def _unroutable(reply: str) -> str:
    return f"no queue is bound for its routing key; the broker returned it ({reply})"


class _Base:
    """What both publishers share: the envelope, and error text that never shows the password."""

    def __init__(
        self, url: str, exchange: str, source: str, mandatory: bool, timeout_s: float
    ) -> None:
        self._safe_url = redact_url(url)
        self._password = urlsplit(url).password
        self._exchange_name = exchange
        self._source = source
        self._mandatory = mandatory
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._safe_url!r}, exchange={self._exchange_name!r})"

    def _event(
        self,
        type: str,
        data: Any,
        source: str | None,
        subject: str | None,
        id: str | None,
        time: datetime | None,
        extensions: Mapping[str, str | None],
    ) -> tuple[str, bytes]:
        """The event's id and its structured-mode JSON body."""
        given: dict[str, Any] = {
            key: value for key, value in extensions.items() if value is not None
        }
        event = new_event(
            type, source or self._source, data=data, subject=subject, id=id, time=time, **given
        )
        return str(event["id"]), encode(event)

    def _failure(self, type: str, event_id: str, why: str) -> str:
        where = f"{self._exchange_name!r} at {self._safe_url}"
        return f"event {event_id} ({type!r}) was not published to {where}: {why}"

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self._password, "***") if self._password else text


class _Returns:
    """The Basic.return callback of one pooled producer: was the message it waits for returned?

    py-amqp runs it in the thread that waits for the publish confirm, because RabbitMQ sends the
    return of an unroutable mandatory message before its ack, on the same channel.
    """

    def __init__(self) -> None:
        self.expected: str | None = None
        self.reply: str | None = None

    def __call__(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        # a channel keeps the callbacks of every producer that used it; only ours matches
        if self.expected is not None and message.properties.get("message_id") == self.expected:
            self.reply = str(exc)


def _new_producer(connection: Any) -> Any:
    return Producer(connection, on_return=_Returns())


class Publisher(_Base):
    """Publishes events with kombu (py-amqp), blocking until the broker confirms each one.

    Thread-safe: each `publish` takes a producer with its own connection from a pool of
    `pool_limit`, so a web server's worker threads can share one instance; a thread waits up to
    `timeout_s` for a free one. It connects on the first publish. After a lost connection or a
    nack, the publish is retried as `retry_policy` says; `timeout_s` also bounds connecting and
    the wait for each confirm. `mandatory` is reliable here: RabbitMQ sends the Basic.Return of an
    unroutable message before its ack, and py-amqp reads both inside `publish`.
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672//",
        exchange: str = "events",
        *,
        source: str = DEFAULT_SOURCE,
        mandatory: bool = True,
        retry_policy: Mapping[str, Any] | None = None,
        pool_limit: int = 10,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(url, exchange, source, mandatory, timeout_s)
        self._exchange = Exchange(exchange, type="topic", durable=True, delivery_mode=2)
        self._retry_policy = dict(DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy)
        # confirm_publish: py-amqp's basic_publish waits for the broker's ack (or nack)
        connection = Connection(
            url,
            connect_timeout=timeout_s,
            transport_options={"confirm_publish": True, **self._retry_policy},
        )
        self._errors: tuple[type[BaseException], ...] = (
            OSError,
            KombuError,
            MessageNacked,
            *connection.connection_errors,
            *connection.channel_errors,
        )
        self._connections = connection.Pool(limit=pool_limit)
        self._producers = ProducerPool(self._connections, limit=pool_limit, Producer=_new_producer)
        self._closed = False

    def publish(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        source: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        **extensions: str | None,
    ) -> str:
        """Publish one event and return its id once the broker confirmed it."""
        event_id, body = self._event(type, data, source, subject, id, time, extensions)
        if self._closed:
            raise PublishError(self._failure(type, event_id, "the publisher is closed"))
        try:
            with self._producers.acquire(block=True, timeout=self._timeout_s) as producer:
                returns: _Returns = producer.on_return
                returns.expected, returns.reply = event_id, None
                try:
                    producer.publish(
                        body,
                        exchange=self._exchange,
                        routing_key=type,
                        declare=[self._exchange],
                        mandatory=self._mandatory,
                        delivery_mode=2,
                        content_type=CONTENT_TYPE,
                        content_encoding="utf-8",
                        message_id=event_id,
                        retry=True,
                        retry_policy=self._retry_policy,
                        timeout=self._timeout_s,
                        confirm_timeout=self._timeout_s,
                    )
                finally:
                    reply, returns.expected = returns.reply, None
        except self._errors as exc:
            # kombu retries a nack (py-amqp deems it recoverable), then wraps it
            nacked = isinstance(exc, MessageNacked) or isinstance(exc.__cause__, MessageNacked)
            why = "the broker nacked it" if nacked else self._describe(exc)
            raise PublishError(self._failure(type, event_id, why)) from exc
        if reply is not None:
            raise PublishError(self._failure(type, event_id, _unroutable(reply)))
        return event_id

    def close(self) -> None:
        """Close every pooled connection, at shutdown; a later publish raises `PublishError`."""
        if not self._closed:
            self._closed = True
            self._producers.force_close_all()
            self._connections.force_close_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncPublisher(_Base):
    """Publishes events with aiormq: one connection, one channel with publisher confirms.

    Safe for concurrent tasks of one event loop. When the connection was closed since the last
    publish, `publish` re-opens it once, transparently; `timeout_s` bounds connecting and each
    confirm. `connect` raises `BrokerError`, `publish` only `PublishError`.
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        exchange: str = "events",
        *,
        source: str = DEFAULT_SOURCE,
        mandatory: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(url, exchange, source, mandatory, timeout_s)
        self._url = url
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def connect(self) -> None:
        """Open the connection and the channel and declare the exchange (topic, durable)."""
        await self._open()

    async def publish(
        self,
        type: str,
        data: Any = None,
        *,
        subject: str | None = None,
        source: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        **extensions: str | None,
    ) -> str:
        """Publish one event and return its id once the broker confirmed it."""
        event_id, body = self._event(type, data, source, subject, id, time, extensions)
        try:
            await self._deliver(type, event_id, body)
        except BrokerError as exc:
            raise PublishError(self._failure(type, event_id, str(exc))) from exc
        except aiormq.exceptions.PublishError as exc:  # a Basic.Return; before DeliveryError
            raise PublishError(self._failure(type, event_id, _unroutable(str(exc)))) from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishError(self._failure(type, event_id, "the broker nacked it")) from exc
        except TimeoutError as exc:
            why = f"not confirmed within {self._timeout_s}s"
            raise PublishError(self._failure(type, event_id, why)) from exc
        except (*_LOST, aiormq.exceptions.AMQPError) as exc:
            raise PublishError(self._failure(type, event_id, self._describe(exc))) from exc
        return event_id

    async def close(self) -> None:
        """Close the connection; a later publish raises `PublishError`."""
        async with self._lock:
            self._closed = True
            await self._drop()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _deliver(self, type: str, event_id: str, body: bytes) -> None:
        """Send; when a channel that worked before turns out lost, reconnect and send once more
        (the broker may then hold the message twice, with the same id)."""
        reused = self._channel is not None and not self._channel.is_closed
        channel = await self._open()
        try:
            await self._send(channel, type, event_id, body)
        except _LOST:
            if not reused:
                raise
            await self._send(await self._open(stale=channel), type, event_id, body)

    async def _send(self, channel: AbstractChannel, type: str, event_id: str, body: bytes) -> None:
        confirmation = await channel.basic_publish(
            body,
            exchange=self._exchange_name,
            routing_key=type,
            mandatory=self._mandatory,
            properties=Basic.Properties(
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=event_id,
            ),
            timeout=self._timeout_s,
        )
        if not isinstance(confirmation, Basic.Ack):
            why = f"the broker answered {confirmation!r}"
            raise PublishError(self._failure(type, event_id, why))

    async def _open(self, stale: AbstractChannel | None = None) -> AbstractChannel:
        """The open channel, connecting first when there is none or it is `stale`."""
        async with self._lock:
            if self._closed:
                raise BrokerError(f"{self!r} is closed")
            channel = self._channel
            if channel is not None and channel is not stale and not channel.is_closed:
                return channel
            await self._drop()
            try:
                async with asyncio.timeout(self._timeout_s):
                    self._connection = await aiormq.connect(self._url)
                    channel = await self._connection.channel(publisher_confirms=True)
                    await channel.exchange_declare(
                        self._exchange_name, exchange_type="topic", durable=True
                    )
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                await self._drop()
                why = f"cannot open exchange {self._exchange_name!r} at {self._safe_url}"
                raise BrokerError(f"{why}: {self._describe(exc)}") from exc
            self._channel = channel
            return channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            # a connection that is going away anyway may fail to close cleanly
            with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
                await connection.close()
