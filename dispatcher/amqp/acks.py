"""Acks in batches: one `basic_ack(multiple=True)` for many events, never for one still running.

Events of one channel run concurrently and end in any order. `AckWindow` (pure) keeps their
delivery tags in delivery order and answers which acks may be sent: with `multiple=True`, the
highest tag below which every event has ended (acked events, and nacked ones, which the broker
no longer holds as outstanding, so a multiple ack passing over them does not touch them). An
event still running always stops the window, so it is never acked by another's ack. Events that
ended behind a running one are acked one by one once `hold` of them wait: held back, they would
count against the prefetch, and one slow delivery would stop the consumer.

`Acker` sends what the window allows, on the channel the events came from: at once when a batch
is full (a quarter of the prefetch), else after a few milliseconds, and in full on `flush()`
before the channel closes. Tags belong to one channel: a new channel (a reconnect) gets a new
Acker, and an Acker whose channel died sends nothing; its events are redelivered.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiormq
import structlog
from aiormq.abc import AbstractChannel

log = structlog.get_logger(__name__)

#: how long an ended event may wait for its ack to be sent with others'
ACK_DELAY_S = 0.005


class AckWindow:
    """Delivery tags of one channel, from its first delivery on, until their acks (no I/O)."""

    def __init__(self, hold: int = 50) -> None:
        self._hold = max(1, hold)  # ended events waiting behind a running one before single acks
        self._waiting = 0  # entries of _ended still to be acked
        self._running: deque[int] = deque()  # delivered tags in order, up to the first running
        self._ended: dict[int, bool] = {}  # tag -> ack it (True) or settled already (False)
        self._next = 1  # the tag the next delivery should carry: a channel's tags start at 1
        self._contiguous = True  # False once a tag was skipped: then only single acks are safe
        self._upto = 0  # multiple-ack up to here (0: nothing to ack)
        self._singles: list[int] = []
        self.ready = 0  # events whose ack can be sent now

    def delivered(self, tag: int) -> None:
        """An event arrived with this tag (tags arrive in increasing order)."""
        if tag != self._next:
            self._to_singles()  # a tag we never saw: a multiple ack could cover it
        self._next = tag + 1
        if self._contiguous:
            self._running.append(tag)

    def ended(self, tag: int, *, ack: bool) -> None:
        """The event ended: to be acked (`ack`), or settled already (nacked by the caller)."""
        if not self._contiguous:
            if ack:
                self._singles.append(tag)
                self.ready += 1
            return
        self._ended[tag] = ack
        self._waiting += ack
        running = self._running
        while running and running[0] in self._ended:
            passed = running.popleft()
            if self._ended.pop(passed):
                self._waiting -= 1
                self._upto = passed
                self.ready += 1
        if self._waiting >= self._hold:
            self._release_waiting()

    def take(self) -> list[tuple[int, bool]]:
        """The acks to send now, in this order, as (delivery tag, multiple), and forget them.
        Singles go first: the multiple ack may pass over them, and must find them acked."""
        acks = [(tag, False) for tag in self._singles]
        acks += [(self._upto, True)] if self._upto else []
        self._upto, self._singles, self.ready = 0, [], 0
        return acks

    def _release_waiting(self) -> None:
        """Ack one by one what ended behind a running event; the window passes over them."""
        for tag, ack in self._ended.items():
            if ack:
                self._singles.append(tag)
                self._ended[tag] = False
        self.ready += self._waiting
        self._waiting = 0

    def _to_singles(self) -> None:
        """From now on ack one tag at a time; what had ended behind a running event goes too."""
        self._contiguous = False
        for tag, ack in self._ended.items():
            if ack:
                self._singles.append(tag)
                self.ready += 1
        self._ended.clear()
        self._waiting = 0
        self._running.clear()


class Acker:
    """Sends the acks of one channel's events in batches (see the module docstring)."""

    def __init__(self, channel: AbstractChannel, *, batch: int, delay_s: float = ACK_DELAY_S):
        self._channel = channel
        self._batch = max(1, batch)
        self._window = AckWindow(hold=self._batch)
        self._delay_s = delay_s
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._last: asyncio.Future[None] | None = None  # the batch sent last: the next waits

    @property
    def channel(self) -> AbstractChannel:
        return self._channel

    def delivered(self, tag: int) -> None:
        self._window.delivered(tag)

    def ended(self, tag: int) -> None:
        """The event is done (its deliveries ended, its dead letters confirmed): ack it soon."""
        self._window.ended(tag, ack=True)
        if self._window.ready >= self._batch:
            self._send()
        elif self._window.ready and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._send)

    async def nack(self, tag: int) -> None:
        """Return the event to the queue now. Marked settled only once the nack is on its way,
        so no multiple ack can reach the broker before it."""
        await self._channel.basic_nack(tag, requeue=True)
        self._window.ended(tag, ack=False)

    def settled(self, tag: int) -> None:
        """The event will not be acked here (its nack failed with the channel): stop waiting."""
        self._window.ended(tag, ack=False)

    async def flush(self) -> None:
        """Send every ack the window allows and wait until they are written."""
        self._send()
        if self._sending:
            await asyncio.wait(set(self._sending))

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        acks = self._window.take()
        if acks:
            task = asyncio.ensure_future(self._ack(acks, self._last))
            self._last = task
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _ack(
        self, acks: list[tuple[int, bool]], previous: asyncio.Future[None] | None
    ) -> None:
        """Send these acks in order (see AckWindow.take), after the batch before them."""
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            for tag, multiple in acks:
                await self._channel.basic_ack(tag, multiple=multiple)
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError):  # a dead channel
            log.warning("ack lost with the channel; the broker will redeliver the events")
