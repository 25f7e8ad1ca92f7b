"""The consumer: one aiormq connection, kept alive across broker restarts, feeding the pipeline
from one or more queues (each with its own channel, prefetch, acks and handler).

Guarantees: an event is acked only after its pipeline run ended and every message its verdict
asked for (`dispatcher.amqp.messages`: dead letters) was confirmed by the broker. Acks go out in
batches (`dispatcher.amqp.acks`), and a batch never covers an event still running. Anything else
(a crash, a lost connection, a failed publish, a shutdown deadline) leaves the event unacked or
nacked, so the broker delivers it again.
Deliveries carry a stable id, so receivers can drop the duplicates that at-least-once implies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiormq
import structlog
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from dispatcher.amqp import control
from dispatcher.amqp.acks import Acker
from dispatcher.amqp.connection import CONNECTION_ERRORS, connect_node
from dispatcher.amqp.messages import Messages, Outgoing
from dispatcher.amqp.topology import Topology, declare, declare_queue
from dispatcher.errors import BrokerError, PublishError
from dispatcher.pipeline import Incoming, Verdict
from dispatcher.redaction import redact_url
from dispatcher.settings import BrokerSettings

log = structlog.get_logger(__name__)

Handler = Callable[[Incoming], Awaitable[Verdict]]


@dataclass(slots=True, eq=False)  # compared by identity: `in self._consuming` per message
class _Consuming:
    """One queue consumed in this session: its channel, acks and consumer tag."""

    queue: str
    handler: Handler
    channel: AbstractChannel
    acker: Acker
    tag: str = ""


class Consumer:
    """Consumes its queues until `stop()`; reconnects with backoff when the broker goes.

    `handlers` maps each queue to consume to the handler of its messages (the work queue's
    events, the deliveries queue's single deliveries); `on_control` hears operators' commands
    (`dispatcher.amqp.control`). With `depth_every_s`, `depths` holds the message count of each
    declared queue, read that often (for the metrics; off the delivery path)."""

    def __init__(
        self,
        broker: BrokerSettings,
        handlers: Mapping[str, Handler],
        messages: Messages,
        topology: Topology,
        *,
        on_control: Callable[[bytes], None] | None = None,
        depth_every_s: float | None = None,
    ) -> None:
        self._broker = broker
        self._depth_every_s = depth_every_s
        self.depths: dict[str, int] = {}  # queue name -> messages ready, as last read
        self._on_control = on_control
        self._control: AbstractChannel | None = None
        self._handlers = dict(handlers)
        self._messages = messages
        self._topology = topology
        self._declared: set[str] = set()  # queues declared in this session
        self._node_index = 0  # of broker.all_urls: the node to try first
        self.node = broker.safe_url  # the node connected to (password hidden)
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[object]] = set()
        self._publisher: AbstractChannel | None = None
        self._consuming: list[_Consuming] = []  # this session's, one per queue
        self._unroutable: asyncio.Future[None] | None = None
        self.connected = asyncio.Event()  # set while consuming
        self.reconnects = 0
        self._consumed_once = False

    @property
    def ready(self) -> bool:
        """Consuming now: connected, topology declared, our consumer registered and not
        cancelled by the broker, and not stopping."""
        return self.connected.is_set() and not self._stop.is_set()

    def stop(self) -> None:
        """Ask `run()` to stop consuming, drain in-flight events and return."""
        self._stop.set()

    async def run(self, shutdown_timeout_s: float) -> None:
        """Consume until stopped. Raises BrokerError when the broker refuses our topology
        (that needs a person, not a retry)."""
        initial = delay = self._broker.reconnect_initial_delay_s
        while not self._stop.is_set():
            self._consumed_once = False
            try:
                await self._session(shutdown_timeout_s)
            except BrokerError:
                raise
            except CONNECTION_ERRORS as exc:
                log.warning(
                    "broker connection lost",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=round(delay, 2),
                    broker=self.node,
                )
                if self._consumed_once:  # that node went away: the next one is tried first
                    self._node_index += 1
            except Exception:  # whatever else broke the session, the daemon carries on
                log.exception("broker session failed", retry_in_s=round(delay, 2))
            else:
                continue
            if self._consumed_once:  # a session that worked: start the backoff over
                delay = initial
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self._broker.reconnect_max_delay_s)
            self.reconnects += 1

    async def _connect(self) -> AbstractConnection:
        """A connection to the first node that answers, from the one last used (a cluster's
        nodes, `broker.url` as a list, are tried in turn); the last failure if none does."""
        connection, self._node_index = await connect_node(
            self._broker, name=self._broker.connection_name, first=self._node_index
        )
        self.node = redact_url(self._broker.all_urls[self._node_index])
        return connection

    async def _session(self, shutdown_timeout_s: float) -> None:
        connection = await self._connect()
        poller: asyncio.Task[None] | None = None
        try:
            self._publisher = await connection.channel(publisher_confirms=True)
            await declare(self._publisher, self._topology)
            self._declared = {queue.name for queue in self._topology.queues}
            cancelled = asyncio.get_running_loop().create_future()
            self._unroutable = asyncio.get_running_loop().create_future()

            def on_cancel(frame: object) -> None:
                if not cancelled.done():
                    cancelled.set_result(frame)

            for queue, handler in self._handlers.items():
                channel = await connection.channel(publisher_confirms=False)
                await channel.basic_qos(prefetch_count=self._broker.prefetch)
                channel.on_consumer_cancel_callbacks.add(on_cancel)
                sub = _Consuming(queue, handler, channel, Acker(channel, batch=self._batch))
                self._consuming.append(sub)
                ok = await channel.basic_consume(queue, self._consumer_for(sub), no_ack=False)
                sub.tag = ok.consumer_tag or ""
            if self._on_control is not None:
                self._control = await control.listen(connection, self._broker, self._on_control)
            self.connected.set()
            self._consumed_once = True
            log.info("consuming", queues=list(self._handlers), broker=self.node)
            if self._depth_every_s is not None:
                poller = asyncio.create_task(self._read_depths(connection, self._depth_every_s))
            await self._wait_for_end(connection, cancelled)
            if self._stop.is_set():
                await self._drain(shutdown_timeout_s)
            elif cancelled.done():
                raise aiormq.exceptions.ChannelClosed(None, "consumer cancelled by the broker")
            elif self._unroutable.done():
                raise aiormq.exceptions.ChannelClosed(None, "a queue we publish to is gone")
        finally:
            self.connected.clear()
            self._control = None
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            await self._abandon_inflight()
            await self._flush_acks()
            with contextlib.suppress(*CONNECTION_ERRORS, RuntimeError):
                await asyncio.wait_for(connection.close(), 5)

    async def _read_depths(self, connection: AbstractConnection, every_s: float) -> None:
        """Every `every_s`, the depth of each declared queue, by passive declares on a channel of
        its own. A queue that is gone closes that channel: it is left out and the next round
        opens another (the session learns of it when it publishes there). Ends with the
        connection."""
        channel: AbstractChannel | None = None
        while True:
            for queue in self._topology.queues:
                try:
                    if channel is None or channel.is_closed:
                        channel = await connection.channel(publisher_confirms=False)
                    ok = await channel.queue_declare(queue.name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    self.depths.pop(queue.name, None)
                    channel = None
                    continue
                except CONNECTION_ERRORS:
                    return
                self.depths[queue.name] = ok.message_count or 0
            await asyncio.sleep(every_s)

    @property
    def _batch(self) -> int:
        return self._broker.prefetch // 4

    async def _wait_for_end(
        self, connection: AbstractConnection, cancelled: asyncio.Future[object]
    ) -> None:
        assert self._publisher is not None
        stop = asyncio.ensure_future(self._stop.wait())
        assert self._unroutable is not None
        watched = [
            connection.closing,
            *(sub.channel.closing for sub in self._consuming),
            *([self._control.closing] if self._control is not None else []),
            self._publisher.closing,
            cancelled,
            self._unroutable,
            stop,
        ]
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for future in done:
            if any(future is why for why in (stop, cancelled, self._unroutable)):
                continue  # ends the session; the caller says why
            if not future.cancelled():
                exc = future.exception()
                raise exc if exc else aiormq.exceptions.ConnectionClosed(0, "closed")

    async def _drain(self, timeout_s: float) -> None:
        """Stop taking messages, let in-flight events finish within the deadline."""
        for sub in self._consuming:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await sub.channel.basic_cancel(sub.tag)
        pending = set(self._inflight)
        log.info("draining", in_flight=len(pending), timeout_s=timeout_s)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout_s)
            if late:
                log.warning(
                    "shutdown deadline passed; returning events to the queue", late=len(late)
                )

    async def _flush_acks(self) -> None:
        """Send the acks of the events that ended, before the channels go (bounded)."""
        consuming, self._consuming = self._consuming, []
        if consuming:
            with contextlib.suppress(TimeoutError):
                flushes = (sub.acker.flush() for sub in consuming)
                await asyncio.wait_for(asyncio.gather(*flushes), 5)

    async def _abandon_inflight(self) -> None:
        """Cancel what is still running; its events stay unacked and the broker redelivers them."""
        tasks = set(self._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _consumer_for(
        self, sub: _Consuming
    ) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        async def on_message(message: DeliveredMessage) -> None:
            acker, tag = sub.acker, message.delivery_tag
            assert tag is not None  # always set on Basic.Deliver
            if sub not in self._consuming:
                return  # from a session already given up: unacked, so the broker redelivers it
            acker.delivered(tag)  # before any await: tasks start in delivery order
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await self._process(message, sub.handler, acker, tag)
            finally:
                self._inflight.discard(task)

        return on_message

    async def _process(
        self, message: DeliveredMessage, handler: Handler, acker: Acker, tag: int
    ) -> None:
        props = message.header.properties
        incoming = Incoming(
            body=message.body,
            headers=props.headers or {},
            content_type=props.content_type,
            routing_key=message.routing_key or "",
            redelivered=bool(message.redelivered),
        )
        try:
            verdict = await handler(incoming)
            for out in self._messages.of(incoming, verdict):
                await self._publish(out)
        except Exception:  # not acked: the broker redelivers, then parks it at the limit
            log.exception("event processing failed; returning it to the queue")
            try:
                await acker.nack(tag)
            except CONNECTION_ERRORS:
                acker.settled(tag)
            return
        acker.ended(tag)  # acked with others soon, or at the latest before the channel closes

    async def _publish(self, out: Outgoing) -> None:
        publisher = self._publisher
        if publisher is None or publisher.is_closed:
            raise PublishError("no open channel to publish on")
        exchange = out.exchange
        if out.declare is not None and out.declare.name not in self._declared:
            await declare_queue(publisher, out.declare)  # a tier a reloaded config added
            self._declared.add(out.declare.name)
        try:
            confirmation = await publisher.basic_publish(
                out.body,
                exchange=exchange,
                routing_key=out.routing_key,
                mandatory=True,
                properties=aiormq.spec.Basic.Properties(
                    content_type=out.content_type,
                    delivery_mode=2,
                    headers=out.headers,
                    message_id=out.message_id,
                ),
            )
        except aiormq.exceptions.PublishError:
            # Nothing took it (queue deleted or unbound): reconnect, which declares it again.
            if self._unroutable is not None and not self._unroutable.done():
                self._unroutable.set_result(None)
            raise PublishError(
                f"the {out.route.value} to {out.routing_key!r} reached no queue"
            ) from None
        if not isinstance(confirmation, Basic.Ack):
            raise PublishError(
                f"broker did not confirm the {out.route.value} to {out.routing_key!r}"
            )
