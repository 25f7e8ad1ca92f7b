"""The dead-letter queue as `dispatcher dead-letters` sees it: read without consuming, chosen by
a `Selection`, then replayed (each to where it came from) or purged.

Reading holds every message unacked on one channel (`basic_get`, at most the depth the queue
reported); a chosen one is acked only once done with (replay: after the broker confirmed its
replacement), and closing the channel returns the rest. RabbitMQ before 4.3 counts that return
toward a quorum queue's delivery limit (4.3 counts only a `basic.reject`), so the dead-letter
queue is declared with a limit never reached (`topology.DEAD_LETTER_DELIVERY_LIMIT`): reading
never drops a dead letter. Killed halfway, nothing is lost: at worst a replayed dead letter
stays, twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiormq
import orjson
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from dispatcher.amqp import headers as h
from dispatcher.amqp.connection import BROKER_FAILURES, open_connection, why
from dispatcher.amqp.topology import declare, topology
from dispatcher.errors import BrokerError
from dispatcher.settings import BrokerSettings

#: what the broker adds when it dead-letters or redelivers; a replay starts without them
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-acquired-count",  # RabbitMQ 4.3
        *(f"x-{end}-death-{what}" for end in ("first", "last") for what in ("queue", "reason")),
        "x-first-death-exchange",
        "x-last-death-exchange",
    }
)
#: each broker round trip (declare, get, publish confirm) gets this long
OP_TIMEOUT_S = 30.0
#: replacements published before waiting for their confirms (acks still go in queue order)
PUBLISH_WINDOW = 100


def plain(value: Any) -> Any:
    """An AMQP field value as JSON can hold it: bytes as text, timestamps as RFC 3339."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return None if value is None else str(plain(value))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the dead-letter queue, held unacked under `tag` on the reading channel."""

    tag: int
    body: bytes
    headers: Mapping[str, Any]
    properties: Basic.Properties
    exchange: str
    routing_key: str

    @property
    def kind(self) -> str | None:
        return _text(self.headers.get(h.KIND))

    @property
    def death(self) -> Mapping[str, Any] | None:
        """The newest `x-death` entry: set when the broker itself dead-lettered the message."""
        deaths = self.headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
            return deaths[0]
        return None

    @property
    def reason(self) -> str:
        if h.REASON in self.headers:
            return str(_text(self.headers[h.REASON]))
        death = self.death
        return f"broker:{_text(death.get('reason'))}" if death is not None else "unknown"

    @property
    def died_in(self) -> str | None:
        """The queue the broker dead-lettered it from (None: dispatcher did)."""
        return None if self.death is None else _text(self.death.get("queue"))

    @property
    def subscription(self) -> str | None:
        return _text(self.headers.get(h.SUBSCRIPTION))

    @property
    def attempts(self) -> int | None:
        value = self.headers.get(h.ATTEMPTS)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def failed_at(self) -> str | None:
        if h.FAILED_AT in self.headers:
            return _text(self.headers[h.FAILED_AT])
        death = self.death
        return None if death is None else _text(death.get("time"))

    @property
    def last_error(self) -> str | None:
        return _text(self.headers.get(h.LAST_ERROR))

    @property
    def id(self) -> str:
        """The delivery id, else the message id, else a short hash of the body."""
        found = _text(self.headers.get(h.DELIVERY_ID)) or self.properties.message_id
        return str(found) if found else hashlib.sha256(self.body).hexdigest()[:12]

    def json_body(self) -> tuple[bool, Any]:
        """(True, the parsed body) when the body is JSON, else (False, None)."""
        try:
            return True, orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return False, None

    @property
    def event_id(self) -> str | None:
        if h.EVENT_ID in self.headers:
            return _text(self.headers[h.EVENT_ID])
        is_json, data = self.json_body()
        return _text(data.get("id")) if is_json and isinstance(data, dict) else None

    @property
    def event_type(self) -> str | None:
        is_json, data = self.json_body()
        if is_json and isinstance(data, dict) and isinstance(data.get("type"), str):
            return str(data["type"])
        return self.routing_key if self.kind == h.KIND_DELIVERY else None

    def record(self) -> dict[str, Any]:
        """Everything about it, as one JSON object (`list --json`)."""
        is_json, data = self.json_body()
        props = self.properties
        fields = {
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "subscription": self.subscription,
            "target_type": _text(self.headers.get(h.TARGET_TYPE)),
            "delivery_id": _text(self.headers.get(h.DELIVERY_ID)),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "attempts": self.attempts,
            "first_attempt_at": _text(self.headers.get(h.FIRST_ATTEMPT_AT)),
            "last_attempt_at": _text(self.headers.get(h.LAST_ATTEMPT_AT)),
            "failed_at": self.failed_at,
            "last_error": self.last_error,
            "died_in": self.died_in,
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "content_type": props.content_type,
            "message_id": props.message_id,
            "headers": plain(self.headers),
        }
        if is_json:
            return {**fields, "body": data}
        return {**fields, "body_base64": base64.b64encode(self.body).decode("ascii")}


def dead_letter(message: DeliveredMessage) -> DeadLetter | None:
    """The DeadLetter a `basic_get` answered; None for Basic.GetEmpty."""
    if message.delivery_tag is None:
        return None
    properties = message.header.properties
    return DeadLetter(
        tag=message.delivery_tag,
        body=bytes(message.body),
        headers=dict(properties.headers or {}),
        properties=properties,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on: each given set must contain the letter's value
    (ids match the shown id or the event id); empty sets choose all."""

    subscriptions: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (not self.subscriptions or letter.subscription in self.subscriptions)
            and (not self.reasons or letter.reason in self.reasons)
            and (not self.ids or letter.id in self.ids or letter.event_id in self.ids)
        )


@dataclass(frozen=True, slots=True)
class Replacement:
    """What replaying `letter` publishes: to `queue`, through the default exchange."""

    letter: DeadLetter
    queue: str
    headers: dict[str, Any]

    def properties(self) -> Basic.Properties:
        kept = self.letter.properties  # user_id and expiration are left out: a replay is new
        return Basic.Properties(
            content_type=kept.content_type,
            content_encoding=kept.content_encoding,
            headers=self.headers,
            delivery_mode=2,
            priority=kept.priority,
            correlation_id=kept.correlation_id,
            message_id=kept.message_id,
            timestamp=kept.timestamp,
            message_type=kept.message_type,
            app_id=kept.app_id,
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    why: str


def replacement(letter: DeadLetter, broker: BrokerSettings, now: datetime) -> Replacement | Skipped:
    """Where replaying `letter` sends it, with which headers; or why it cannot be replayed.

    A delivery goes to the deliveries queue for its one subscription, its tries forgotten; an
    invalid event to the work queue as it was first published; a message the broker
    dead-lettered back to the queue it died in, when that queue is one of dispatcher's.
    """
    foreign = {
        key: h.republishable(value)  # a parked message may hold what pamqp reads, not writes
        for key, value in letter.headers.items()
        if not key.startswith(h.OWN_PREFIX) and key not in BROKER_HEADERS
    }
    if letter.kind == h.KIND_DELIVERY:
        if letter.subscription is None:
            return Skipped(letter, "a delivery dead letter without a subscription header")
        kept = (h.KIND, h.SUBSCRIPTION, h.TARGET_TYPE, h.DELIVERY_ID, h.EVENT_ID)
        fresh = {key: letter.headers[key] for key in kept if key in letter.headers}
        fresh.update({h.ATTEMPTS: 0, h.RETRIES: 0, h.REPLAYED_AT: rfc3339(now)})
        return Replacement(letter, broker.deliveries_queue, {**foreign, **fresh})
    if letter.kind == h.KIND_INVALID:
        return Replacement(letter, broker.queue, foreign)
    if letter.kind is not None:
        return Skipped(letter, f"unknown {h.KIND} {letter.kind!r}")
    if letter.died_in is None:
        return Skipped(letter, f"neither {h.KIND} nor x-death: where it came from is unknown")
    if letter.died_in not in (broker.queue, broker.deliveries_queue):
        return Skipped(letter, f"it died in {letter.died_in!r}, not one of dispatcher's queues")
    return Replacement(letter, letter.died_in, foreign)


@dataclass(frozen=True, slots=True)
class Failed:
    letter: DeadLetter
    why: str


Progress = Callable[[int, int], None]  # (done, total), after each dead letter removed


class DeadLetterQueue:
    """The dead-letter queue read through one channel (with publisher confirms); `opened`
    makes one. `depth` is the number of messages it reported when opened (None: absent)."""

    def __init__(self, broker: BrokerSettings, channel: AbstractChannel, depth: int | None) -> None:
        self._broker = broker
        self._channel = channel
        self.name = broker.dead_letter_queue
        self.depth = depth
        self.acked = 0  # dead letters removed on this channel

    async def settled(self) -> None:
        """Wait until the broker has applied this channel's acks. An ack has no answer, and a
        quorum queue that sees the channel close before it applied the acks sent just before
        returns those messages (seen on RabbitMQ 3.10 with a delivery limit: a replayed dead
        letter stayed). A `basic.get` on the same channel and queue is answered only once the
        queue applied what the channel sent before it; what it fetches goes back on close."""
        await self._channel.basic_get(self.name, no_ack=False, timeout=OP_TIMEOUT_S)

    async def read(self, selection: Selection, limit: int = 0) -> AsyncIterator[DeadLetter]:
        """The dead letters `selection` chooses, in queue order, each held until the channel
        closes or it is acked; at most `limit` of them (0: no limit)."""
        found = 0
        for _ in range(self.depth or 0):
            message = await self._channel.basic_get(self.name, no_ack=False, timeout=OP_TIMEOUT_S)
            letter = dead_letter(message)
            if letter is None:  # Basic.GetEmpty: someone else took the rest
                return
            if selection.matches(letter):
                yield letter
                found += 1
                if found == limit:
                    return

    async def purge(self, letters: Sequence[DeadLetter], progress: Progress | None = None) -> int:
        """Remove `letters` from the queue; the number removed."""
        for done, letter in enumerate(letters, 1):
            await self._channel.basic_ack(letter.tag)
            self.acked += 1
            if progress is not None:
                progress(done, len(letters))
        return len(letters)

    async def replay(
        self, replacements: Sequence[Replacement], progress: Progress | None = None
    ) -> list[Failed]:
        """Publish each replacement (mandatory, persistent, confirmed), then remove its dead
        letter. One the broker returns or nacks stays in the queue and is in the answer."""
        failed: list[Failed] = []
        done = 0
        for start in range(0, len(replacements), PUBLISH_WINDOW):
            window = replacements[start : start + PUBLISH_WINDOW]
            answers = await asyncio.gather(
                *(self._publish(r) for r in window), return_exceptions=True
            )
            lost: BaseException | None = None
            for sent, answer in zip(window, answers, strict=True):
                if isinstance(answer, BaseException):
                    lost = lost or answer  # unconfirmed: leave the dead letter where it is
                elif answer is not None:
                    failed.append(Failed(sent.letter, answer))
                elif lost is None:  # acks after a lost channel would fail anyway
                    await self._channel.basic_ack(sent.letter.tag)
                    self.acked += 1
                    done += 1
                    if progress is not None:
                        progress(done, len(replacements))
            if lost is not None:
                raise lost
        return failed

    async def _publish(self, replacement: Replacement) -> str | None:
        """None once confirmed; why not when the broker returned or nacked it."""
        try:
            confirmation = await self._channel.basic_publish(
                replacement.letter.body,
                exchange="",
                routing_key=replacement.queue,
                mandatory=True,
                properties=replacement.properties(),
                timeout=OP_TIMEOUT_S,
            )
        except aiormq.exceptions.PublishError:  # a Basic.Return; a subclass of DeliveryError
            return f"the broker returned it: is there a queue {replacement.queue!r}?"
        except aiormq.exceptions.DeliveryError:
            return "the broker nacked it"
        if not isinstance(confirmation, Basic.Ack):
            return f"the broker answered {type(confirmation).__name__}"
        return None


@contextlib.asynccontextmanager
async def opened(
    broker: BrokerSettings, *, declare_topology: bool = False
) -> AsyncIterator[DeadLetterQueue]:
    """The dead-letter queue for the body of the `async with`; whatever was read and not acked
    returns to it at the end. `declare_topology` first declares dispatcher's queues (replay
    needs them). Any broker failure, here or in the body, is a `BrokerError` without the
    password."""
    connection = await open_connection(broker, name=f"{broker.connection_name}-dead-letters")
    try:
        if declare_topology:
            setup = await connection.channel()
            await declare(setup, topology(broker))
            await setup.close()
        channel = await connection.channel(publisher_confirms=True)
        try:
            ok = await channel.queue_declare(
                broker.dead_letter_queue, passive=True, timeout=OP_TIMEOUT_S
            )
            depth: int | None = int(ok.message_count or 0)
        except aiormq.exceptions.ChannelNotFoundEntity:  # the broker closed that channel
            depth = None
            channel = await connection.channel(publisher_confirms=True)
        queue = DeadLetterQueue(broker, channel, depth)
        yield queue
        if queue.acked and depth is not None:
            await queue.settled()
        await asyncio.wait_for(channel.close(), OP_TIMEOUT_S)  # not a nack: see the docstring
    except BROKER_FAILURES as exc:
        where = f"the dead-letter queue {broker.dead_letter_queue!r} at {broker.safe_url}"
        raise BrokerError(f"{where}: {why(exc, broker)}") from None
    finally:
        with contextlib.suppress(*BROKER_FAILURES):
            await asyncio.wait_for(connection.close(), 5)
