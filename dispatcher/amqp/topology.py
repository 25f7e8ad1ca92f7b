"""The broker objects dispatcher needs, declared as data and created idempotently at start.

    exchange (topic) --#--> <queue> (quorum) --dead letters--> dead exchange (fanout) --> dead queue
    <queue>.retry.<delay> (quorum, fixed TTL) --expired--> <queue>.deliveries (quorum) --^

The work queue holds events; the deliveries queue holds single deliveries (one event for one
subscription) coming back from a retry tier or a replay. Both dead-letter (at least once) what
the broker gives up on: a message redelivered `delivery_limit` times (one that kills the process
on every try) lands in the parking lot too. A retry tier is a queue with a fixed `x-message-ttl`
(per-message TTLs expire only at a queue's head, so one queue per delay), dead-lettering through
the default exchange into the deliveries queue. The control exchange (fanout) carries operators'
commands to every running process, each listening on a queue of its own that goes with it
(`dispatcher.amqp.control`). Every name derives from `broker.queue`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel

from dispatcher.durations import duration_name
from dispatcher.errors import BrokerError
from dispatcher.settings import BrokerSettings


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BindingSpec:
    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Topology:
    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    bindings: tuple[BindingSpec, ...]


_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
#: the dead-letter queue's delivery limit: never reached. RabbitMQ 4 otherwise sets 20 and then
#: drops a message (that queue dead-letters nowhere), and before 4.3 every return counts,
#: including the ones `dispatcher dead-letters list` makes by closing its channel. (-1, "no
#: limit" on RabbitMQ 4, is not that on 3.x.)
DEAD_LETTER_DELIVERY_LIMIT = 2**31 - 1


def work_queue(name: str, broker: BrokerSettings) -> QueueSpec:
    """A queue dispatcher consumes: dead letters go to the parking lot, at least once."""
    return QueueSpec(
        name,
        {
            **_QUORUM,
            "x-dead-letter-exchange": broker.dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
            "x-delivery-limit": broker.delivery_limit,
        },
    )


def retry_queue(broker: BrokerSettings, delay_s: float) -> QueueSpec:
    """The tier of one delay: its messages expire into the deliveries queue after `delay_s`."""
    return QueueSpec(
        broker.retry_queue(duration_name(delay_s)),
        {
            **_QUORUM,
            "x-message-ttl": max(1, round(delay_s * 1000)),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": broker.deliveries_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": broker.delivery_limit,  # never consumed; explicit all the same
        },
    )


def topology(broker: BrokerSettings, tiers_s: Iterable[float] = ()) -> Topology:
    """Everything dispatcher declares; `tiers_s` are the retry delays the config names (a tier
    a reloaded config adds later is declared when first used)."""
    tiers = {duration_name(delay_s): delay_s for delay_s in tiers_s}
    return Topology(
        exchanges=(
            ExchangeSpec(broker.exchange, "topic"),
            ExchangeSpec(broker.dead_exchange, "fanout"),
            ExchangeSpec(broker.control_exchange, "fanout"),
        ),
        queues=(
            work_queue(broker.queue, broker),
            work_queue(broker.deliveries_queue, broker),
            QueueSpec(
                broker.dead_letter_queue,
                {**_QUORUM, "x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT},
            ),
            *(retry_queue(broker, delay_s) for delay_s in sorted(tiers.values())),
        ),
        bindings=(
            BindingSpec(broker.queue, broker.exchange, "#"),
            BindingSpec(broker.dead_letter_queue, broker.dead_exchange, ""),
        ),
    )


async def declare(channel: AbstractChannel, spec: Topology) -> None:
    """Declare everything (idempotent). A queue that exists with other arguments is a
    BrokerError naming it: the channel is closed by the broker in that case."""
    for exchange in spec.exchanges:
        try:
            await channel.exchange_declare(exchange.name, exchange_type=exchange.type, durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise BrokerError(
                f"exchange {exchange.name!r} exists with another type or options than "
                f"{exchange.type}, durable: {exc.args[-1] if exc.args else exc}"
            ) from None
    for queue in spec.queues:
        await declare_queue(channel, queue)
    for binding in spec.bindings:
        await channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)


async def declare_queue(channel: AbstractChannel, queue: QueueSpec) -> None:
    try:
        await channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise BrokerError(
            f"queue {queue.name!r} exists with other arguments than dispatcher declares "
            f"({queue.arguments}); delete it or point dispatcher at another queue name: "
            f"{exc.args[-1] if exc.args else exc}"
        ) from None
