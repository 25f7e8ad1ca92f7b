"""Pacer: one key's sends spaced `interval_s` apart in arrival order, held back by Retry-After."""

from __future__ import annotations

import asyncio

from dispatcher.delivery import pacing
from dispatcher.delivery.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slots_of_one_key_are_spaced_in_order_and_keys_are_independent() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock)
    assert [pacer.reserve("C1") for _ in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert pacer.reserve("C2") == 0.0
    clock.now += 2.5  # two slots went by: the next free one is at 104.0
    assert pacer.reserve("C1") == 1.5
    clock.now += 10
    assert pacer.reserve("C1") == 0.0  # a quiet key starts at once


def test_retry_after_holds_the_key_back_but_never_brings_it_forward() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock)
    pacer.reserve("C1")
    pacer.defer("C1", 30.0)
    assert pacer.reserve("C1") == 30.0
    assert pacer.reserve("C1") == 31.0
    pacer.defer("C1", 0.5)  # shorter than the queue already booked: changes nothing
    assert pacer.reserve("C1") == 32.0
    assert pacer.reserve("C2") == 0.0


def test_zero_interval_never_waits() -> None:
    pacer = Pacer(0.0, clock=Clock())
    assert {pacer.reserve("C1") for _ in range(100)} == {0.0}


async def test_wait_sleeps_for_the_slot_and_reports_it() -> None:
    clock = Clock()
    slept: list[float] = []
    waited: list[float] = []

    async def sleep(seconds: float) -> None:  # the three reserve before any time passes
        slept.append(seconds)

    pacer = Pacer(1.0, clock=clock, sleep=sleep, on_wait=waited.append)
    await asyncio.gather(*(pacer.wait("C1") for _ in range(3)))
    assert sorted(slept) == [1.0, 2.0]
    assert sorted(waited) == [1.0, 2.0]


def test_keys_remembered_are_bounded() -> None:
    clock = Clock()
    pacer = Pacer(1.0, clock=clock)
    for number in range(pacing.MAX_KEYS + 50):
        pacer.reserve(f"C{number}")
    assert len(pacer._next) == pacing.MAX_KEYS
    assert pacer.reserve(f"C{pacing.MAX_KEYS + 49}") == 1.0  # the newest keys are kept


async def test_the_interval_counts_from_when_the_previous_send_ended() -> None:
    clock = Clock()
    slept: list[float] = []
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    pacer = Pacer(1.0, clock=clock, sleep=sleep, on_wait=waited.append)
    await pacer.wait("C1")
    clock.now += 0.5  # the post took half a second
    pacer.sent("C1")
    await pacer.wait("C1")  # its slot was at 101.0; the send ended at 100.5, so 101.5
    assert slept == [1.0]
    assert waited == [1.0]
    assert clock.now == 101.5


async def test_retry_after_holds_back_a_send_already_waiting() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        if not deferred:
            deferred.append(True)
            pacer.defer("C1", 10.0)  # a 429 arrives while the second send sleeps
        clock.now += seconds

    deferred: list[bool] = []
    pacer = Pacer(1.0, clock=clock, sleep=sleep)
    await pacer.wait("C1")
    await pacer.wait("C1")
    assert clock.now == 110.0


def test_a_retry_after_is_honoured_only_up_to_the_cap() -> None:
    pacer = Pacer(1.0, clock=Clock(), max_hold_s=30.0)
    pacer.defer("C1", float("inf"))
    assert pacer.reserve("C1") == 30.0
