"""Operators' commands to every running process, through the broker.

A command is a small JSON object published to the control exchange (`<queue>.control`, fanout).
Each running process listens on a queue of its own bound to it: server-named, exclusive and
auto-deleted, so it goes with the process and holds nothing worth keeping. A command reaches
the processes running when it is sent; one that starts later has nothing to change (breakers
and disabled targets live in process and start closed).

Commands name a target by its key (`channels.base.target_key`: a hash, never a URL or token).

    {"command": "enable_target", "target": "<key>"}   close its breaker, enable it again
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiormq
import orjson
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from dispatcher.amqp.connection import BROKER_FAILURES, open_connection, why
from dispatcher.errors import BrokerError
from dispatcher.settings import BrokerSettings

#: a command's body larger than this is not read
MAX_COMMAND_BYTES = 4096
_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class EnableTarget:
    """Close the target's circuit and enable it again, as a successful delivery would."""

    target: str


Command = EnableTarget


def encode(command: Command) -> bytes:
    return orjson.dumps({"command": "enable_target", "target": command.target})


def decode(body: bytes) -> Command | str:
    """The command, or why the body is not one (for a log line)."""
    if len(body) > MAX_COMMAND_BYTES:
        return f"a control message of {len(body)} bytes (at most {MAX_COMMAND_BYTES})"
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "a control message that is not JSON"
    if not isinstance(data, dict):
        return "a control message that is not a JSON object"
    command, target = data.get("command"), data.get("target")
    if command != "enable_target":
        return f"an unknown control command {str(command)[:40]!r}"
    if not isinstance(target, str) or not target:
        return "an enable_target command without a target"
    return EnableTarget(target)


async def listen(
    connection: AbstractConnection, broker: BrokerSettings, on_command: Callable[[bytes], None]
) -> AbstractChannel:
    """Bind a queue of this process's own to the control exchange (declared with the topology)
    and call `on_command(body)` for each message on it; the channel, to watch for its end."""
    channel = await connection.channel(publisher_confirms=False)
    ok = await channel.queue_declare("", exclusive=True, auto_delete=True)
    assert ok.queue is not None
    await channel.queue_bind(ok.queue, broker.control_exchange, routing_key="")

    async def on_message(message: DeliveredMessage) -> None:
        on_command(message.body)

    await channel.basic_consume(ok.queue, on_message, no_ack=True)
    return channel


async def send(broker: BrokerSettings, command: Command) -> None:
    """Publish a command to every running process (BrokerError when the broker does not take
    it). The exchange is declared first, so this works before any daemon ever ran."""
    connection = await open_connection(broker, name=f"{broker.connection_name}-control")
    try:
        async with asyncio.timeout(_TIMEOUT_S):
            channel = await connection.channel(publisher_confirms=True)
            await channel.exchange_declare(
                broker.control_exchange, exchange_type="fanout", durable=True
            )
            confirmation = await channel.basic_publish(
                encode(command),
                exchange=broker.control_exchange,
                routing_key="",
                properties=aiormq.spec.Basic.Properties(content_type="application/json"),
            )
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerError(f"the broker did not take the command to {broker.control_exchange}")
    except BROKER_FAILURES as exc:
        raise BrokerError(f"cannot send to {broker.control_exchange}: {why(exc, broker)}") from None
    finally:
        await asyncio.gather(asyncio.wait_for(connection.close(), 5), return_exceptions=True)
