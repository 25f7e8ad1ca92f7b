"""`dispatcher status`: the depth and consumers of each of dispatcher's queues, read from the
broker over AMQP (passive declares), so it works without the management plugin.

The queues are the ones `topology()` declares for the config: the work queue, the deliveries
queue, the dead-letter queue and one retry tier (`<queue>.retry.<delay>`) per delay it names.
A passive declare of a queue that does not exist closes its channel, so each queue gets a fresh
channel and an absent queue is shown as such rather than failing the command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import aiormq

from dispatcher.amqp.connection import BROKER_FAILURES, open_connection
from dispatcher.amqp.topology import topology
from dispatcher.settings import BrokerSettings


@dataclass(frozen=True, slots=True)
class QueueStatus:
    name: str
    role: str
    messages: int | None  # ready to be delivered (not counting unacked ones); None: absent
    consumers: int | None


def role_of(name: str, broker: BrokerSettings) -> str:
    if name == broker.queue:
        return "work"
    if name == broker.dead_letter_queue:
        return "dead letters"
    if name == broker.deliveries_queue:
        return "deliveries"
    if name.startswith(f"{broker.queue}.retry."):
        return "retry tier " + name.removeprefix(f"{broker.queue}.retry.")
    return "other"


def role_label(name: str, broker: BrokerSettings) -> str:
    """`role_of` as a metric label: work, deliveries, dead_letters, retry (or other)."""
    role = role_of(name, broker)
    return "retry" if role.startswith("retry tier") else role.replace(" ", "_")


async def queue_status(broker: BrokerSettings, tiers_s: Iterable[float] = ()) -> list[QueueStatus]:
    """One row per queue of the topology; BrokerError when the broker cannot be reached."""
    connection = await open_connection(broker, name="dispatcher-status")
    try:
        return [await _one(connection, q.name, broker) for q in topology(broker, tiers_s).queues]
    finally:
        with contextlib.suppress(*BROKER_FAILURES):
            await asyncio.wait_for(connection.close(), 5)


async def _one(
    connection: aiormq.abc.AbstractConnection, name: str, broker: BrokerSettings
) -> QueueStatus:
    channel = await connection.channel()
    try:
        ok = await channel.queue_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return QueueStatus(name, role_of(name, broker), None, None)
    with contextlib.suppress(*BROKER_FAILURES):
        await channel.close()
    return QueueStatus(name, role_of(name, broker), ok.message_count or 0, ok.consumer_count or 0)


def format_status(broker: BrokerSettings, rows: list[QueueStatus]) -> str:
    """A table for a person at a terminal, with what deserves attention underneath."""
    width = max(len("QUEUE"), *(len(row.name) for row in rows))
    lines = [
        f"broker {broker.safe_url}",
        "",
        f"{'QUEUE':<{width}}  {'ROLE':<14}  {'MESSAGES':>8}  {'CONSUMERS':>9}",
    ]
    notes = []
    for row in rows:
        if row.messages is None:
            lines.append(f"{row.name:<{width}}  {row.role:<14}  {'absent':>8}  {'-':>9}")
            continue
        lines.append(f"{row.name:<{width}}  {row.role:<14}  {row.messages:>8}  {row.consumers:>9}")
        if row.role == "work" and row.consumers == 0:
            notes.append(f"no consumer on {row.name}: is dispatcher running?")
        if row.role == "dead letters" and row.messages:
            notes.append(f"{row.messages} message(s) in the dead-letter queue {row.name}")
    if any(row.role == "work" and row.messages is None for row in rows):
        notes.append("the work queue does not exist yet: dispatcher declares it when it starts")
    return "\n".join(lines + ([""] + [f"! {note}" for note in notes] if notes else []))
