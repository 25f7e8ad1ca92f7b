"""Rate-limit arithmetic (GCRA), rate parsing, and the in-process limiter on a fake clock."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from dispatcher.delivery.ratelimit import LocalRateLimiter, Rate, RateLimiter, deferred_tat, gcra
from dispatcher.delivery.redis_limiter import RedisRateLimiter


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule(rate: Rate, count: int, now: float = 0.0, max_wait_s: float = math.inf) -> list[float]:
    """The waits of `count` requests made at the same instant on a fresh key."""
    tat: float | None = None
    waits = []
    for _ in range(count):
        granted = gcra(tat, now, rate, max_wait_s)
        assert granted is not None
        wait_s, tat = granted
        waits.append(wait_s)
    return waits


@pytest.mark.parametrize(
    ("rate", "count", "waits"),
    [
        (Rate(1.0, burst=3), 7, [0, 0, 0, 1, 2, 3, 4]),
        (Rate(1.0), 3, [0, 1, 2]),
        (Rate(2.0), 4, [0, 0.5, 1.0, 1.5]),
        (Rate(0.5, burst=2), 4, [0, 0, 2, 4]),
        (Rate(5.0, burst=5), 7, [0, 0, 0, 0, 0, 0.2, 0.4]),
    ],
)
def test_gcra_grants_the_burst_then_spaces_at_the_interval(
    rate: Rate, count: int, waits: list[float]
) -> None:
    assert schedule(rate, count) == pytest.approx(waits)


@pytest.mark.parametrize(
    ("tat", "now", "rate", "expected"),
    [
        (None, 10.0, Rate(1.0), (0.0, 11.0)),
        (5.0, 10.0, Rate(1.0, burst=3), (0.0, 11.0)),  # an old tat is no tat: quiet refills
        (12.0, 10.0, Rate(1.0, burst=3), (0.0, 13.0)),  # within the tolerance
        (13.0, 10.0, Rate(1.0, burst=3), (1.0, 14.0)),
        (10.5, 10.0, Rate(2.0), (0.5, 11.0)),
    ],
)
def test_gcra_single_steps(
    tat: float | None, now: float, rate: Rate, expected: tuple[float, float]
) -> None:
    assert gcra(tat, now, rate, max_wait_s=60) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("tat", "max_wait_s", "granted"),
    [
        (14.0, 1.0, False),  # the slot is 2 s away (14 - tolerance 2 - now 10)
        (14.0, 1.999, False),
        (14.0, 2.0, True),  # exactly max_wait_s is within it
        (11.0, 0.0, True),  # within the burst: goes now
        (13.5, 0.0, False),
    ],
)
def test_gcra_refuses_a_slot_past_max_wait(tat: float, max_wait_s: float, granted: bool) -> None:
    assert (gcra(tat, 10.0, Rate(1.0, burst=3), max_wait_s) is not None) == granted


@pytest.mark.parametrize("max_wait_s", [-1.0, math.nan])
def test_gcra_rejects_a_negative_max_wait(max_wait_s: float) -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        gcra(None, 0.0, Rate(1.0), max_wait_s)


@pytest.mark.parametrize(
    ("tat", "now", "rate", "delay_s", "expected"),
    [
        (None, 10.0, Rate(1.0), 5.0, 15.0),
        (None, 10.0, Rate(1.0, burst=3), 5.0, 17.0),  # tat - tolerance = first slot at 15
        (3.0, 10.0, Rate(1.0, burst=3), 5.0, 17.0),  # an old tat changes nothing
        (30.0, 10.0, Rate(1.0, burst=3), 5.0, 30.0),  # slots already taken beyond the pause stay
        (None, 10.0, Rate(1.0), 0.0, 10.0),
    ],
)
def test_deferred_tat(
    tat: float | None, now: float, rate: Rate, delay_s: float, expected: float
) -> None:
    assert deferred_tat(tat, now, rate, delay_s) == pytest.approx(expected)


def test_after_a_pause_the_first_slot_is_at_its_end_then_no_burst() -> None:
    rate = Rate(1.0, burst=3)
    tat: float | None = deferred_tat(None, 10.0, rate, 5.0)
    waits = []
    for _ in range(3):
        granted = gcra(tat, 10.0, rate, max_wait_s=60)
        assert granted is not None
        wait_s, tat = granted
        waits.append(wait_s)
    assert waits == pytest.approx([5.0, 6.0, 7.0])


@pytest.mark.parametrize("delay_s", [-1.0, math.inf, math.nan])
def test_deferred_tat_rejects_a_bad_delay(delay_s: float) -> None:
    with pytest.raises(ValueError, match="delay_s"):
        deferred_tat(None, 0.0, Rate(1.0), delay_s)


@pytest.mark.parametrize(
    ("text", "per_s", "interval_s"),
    [
        ("5/s", 5.0, 0.2),
        ("0.5/s", 0.5, 2.0),
        ("300/min", 5.0, 0.2),
        ("30/m", 0.5, 2.0),
        ("1/h", 1 / 3600, 3600.0),
        ("24/d", 1 / 3600, 3600.0),
        (" 2 / s ", 2.0, 0.5),
        (".5/s", 0.5, 2.0),
    ],
)
def test_rate_parse(text: str, per_s: float, interval_s: float) -> None:
    rate = Rate.parse(text, burst=4)
    assert rate.per_s == pytest.approx(per_s)
    assert rate.interval_s == pytest.approx(interval_s)
    assert rate.burst == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "not a rate"),
        ("5/", "not a rate"),
        ("/s", "not a rate"),
        ("5/sec", "not a rate"),
        ("5/ms", "not a rate"),
        ("-5/s", "not a rate"),
        ("five/s", "not a rate"),
        ("1e3/s", "not a rate"),
        ("nan/s", "not a rate"),
        ("", "not a rate"),
        ("0/s", "more than zero"),
        ("0.0/min", "more than zero"),
    ],
)
def test_rate_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        Rate.parse(text)
    assert "5/s, 300/min" in str(raised.value) or message == "more than zero"


@pytest.mark.parametrize(
    ("per_s", "burst"),
    [(0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0), (1.0, True), (1.0, 1.5)],
)
def test_rate_rejects_bad_values(per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        Rate(per_s, burst)


async def test_local_limiter_keeps_order_per_key_and_keys_apart() -> None:
    clock = FakeClock()
    limiter: RateLimiter = LocalRateLimiter(clock=clock)
    rate = Rate(1.0, burst=2)
    waits = [await limiter.reserve(key, rate, 60) for key in ["a", "a", "b", "a", "a", "b"]]
    assert waits == pytest.approx([0, 0, 0, 1, 2, 0])
    clock.now += 1.5  # half a slot freed on "a": its next is at +3 from the start
    assert await limiter.reserve("a", rate, 60) == pytest.approx(1.5)


async def test_local_limiter_refusal_takes_nothing() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    rate = Rate(1.0, burst=3)
    assert [await limiter.reserve("k", rate, 60) for _ in range(5)] == [0, 0, 0, 1, 2]
    assert await limiter.reserve("k", rate, max_wait_s=2.5) is None
    assert await limiter.reserve("k", rate, max_wait_s=0) is None
    assert await limiter.reserve("k", rate, max_wait_s=3) == pytest.approx(3.0)


async def test_local_limiter_defer_pushes_the_next_slot() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock)
    rate = Rate(1.0, burst=3)
    assert await limiter.reserve("k", rate, 60) == 0
    await limiter.defer("k", rate, 5.0)
    assert [await limiter.reserve("k", rate, 60) for _ in range(2)] == pytest.approx([5, 6])
    assert await limiter.reserve("other", rate, 60) == 0


async def test_local_limiter_forgets_the_least_recently_used_key_when_all_are_busy() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_keys=2)
    rate = Rate(1.0)
    await limiter.reserve("a", rate, 60)
    await limiter.reserve("b", rate, 60)
    await limiter.reserve("a", rate, 60)  # "a" is now the most recently used
    clock.now += 0.5
    await limiter.reserve("c", rate, 60)  # every tat is ahead: the LRU, "b", goes
    assert len(limiter) == 2
    assert await limiter.reserve("a", rate, 60) == pytest.approx(1.5)  # remembered
    assert await limiter.reserve("b", rate, 60) == 0  # forgotten: a fresh key


async def test_local_limiter_forgets_passed_keys_before_busy_ones() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_keys=2)
    await limiter.reserve("slow", Rate(0.1), 60)  # least recently used, tat +10 s
    await limiter.reserve("fast", Rate(1.0), 60)  # tat +1 s
    clock.now += 2
    await limiter.reserve("new", Rate(1.0), 60)  # "fast" has passed: it goes, not "slow"
    assert len(limiter) == 2
    assert await limiter.reserve("slow", Rate(0.1), 60) == pytest.approx(8.0)


async def test_local_limiter_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, max_keys=50)
    for i in range(1000):
        clock.now += 0.01
        await limiter.reserve(f"key-{i}", Rate(0.5, burst=2), 60)
        assert len(limiter) <= 50
    await limiter.close()
    assert len(limiter) == 0


async def test_a_slow_answer_from_before_a_failure_does_not_end_the_fallback() -> None:
    # The Redis state machine alone: its script calls stand in for a slow Redis that answers
    # one call late and times out the next (the real server is in tests/integration).
    limiter = RedisRateLimiter("redis://127.0.0.1:9/0", namespace="t", retry_after_s=0.0)
    release = asyncio.Event()
    answers: list[Any] = [release, RedisError("Timeout reading from socket"), None, None]

    async def script(keys: list[str], args: tuple[int, ...]) -> int:
        answer = answers.pop(0)
        if isinstance(answer, asyncio.Event):
            await answer.wait()
        elif isinstance(answer, Exception):
            raise answer
        return 0

    limiter._reserve = script
    with capture_logs() as logs:
        slow = asyncio.create_task(limiter.reserve("k", Rate(1.0), max_wait_s=60))
        await asyncio.sleep(0)  # it is waiting for its answer
        await limiter.reserve("k", Rate(1.0), max_wait_s=60)  # this one fails: the fallback
        release.set()
        assert await slow == 0
        assert limiter._retry_at is not None  # still falling back: that answer predates it
        await limiter.reserve("k", Rate(1.0), max_wait_s=60)  # a call after the failure
        assert limiter._retry_at is None
    await limiter.close()
    assert [log["event"] for log in logs] == [
        "rate limits are held per process until Redis answers",
        "Redis answers again: rate limits are shared",
    ]
