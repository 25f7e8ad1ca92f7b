"""The broker objects dispatcher needs, declared as data and created idempotently at start.

    exchange (topic) --#--> queue (quorum) --dead letters--> dead exchange (fanout) --> dead queue

The work queue dead-letters (at least once) what the broker gives up on: a message redelivered
`delivery_limit` times (one that kills the process on every try) lands in the parking lot too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel

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


def topology(broker: BrokerSettings) -> Topology:
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}
    work = QueueSpec(
        broker.queue,
        {
            **quorum,
            "x-dead-letter-exchange": broker.dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
            "x-delivery-limit": broker.delivery_limit,
        },
    )
    return Topology(
        exchanges=(
            ExchangeSpec(broker.exchange, "topic"),
            ExchangeSpec(broker.dead_exchange, "fanout"),
        ),
        queues=(work, QueueSpec(broker.dead_letter_queue, quorum)),
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
        try:
            await channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise BrokerError(
                f"queue {queue.name!r} exists with other arguments than dispatcher declares "
                f"({queue.arguments}); delete it or point dispatcher at another queue name: "
                f"{exc.args[-1] if exc.args else exc}"
            ) from None
    for binding in spec.bindings:
        await channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
