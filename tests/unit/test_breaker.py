"""Circuit breaker and bulkhead: tables on a fake clock, and the transitions as a property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.delivery.breaker import BreakerSettings, BreakerState, Bulkhead, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingChanges:
    def __init__(self) -> None:
        self.changes: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, key: str, old: BreakerState, new: BreakerState) -> None:
        self.changes.append((key, old, new))


def make(
    clock: FakeClock, changes: RecordingChanges | None = None, max_keys: int = 4096, **kw: Any
) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**kw), clock=clock, on_change=changes, max_keys=max_keys)


def record_all(breaker: CircuitBreaker, key: str, oks: int, failures: int) -> None:
    for _ in range(oks):
        breaker.record(key, True)
    for _ in range(failures):
        breaker.record(key, False)


def trip(breaker: CircuitBreaker, key: str) -> None:
    record_all(breaker, key, 0, 10)
    assert breaker.state(key) is OPEN


@pytest.mark.parametrize(
    "kw",
    [
        {"window_s": 0},
        {"window_s": float("inf")},
        {"open_s": -1},
        {"max_open_s": 10.0, "open_s": 30.0},
        {"min_attempts": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"failure_ratio": float("nan")},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|below"):
        BreakerSettings(**kw)


@pytest.mark.parametrize(
    ("oks", "failures", "expected"),
    [
        (0, 9, CLOSED),  # fewer than min_attempts, however bad
        (0, 10, OPEN),
        (3, 7, OPEN),  # exactly 70%
        (4, 6, CLOSED),
        (6, 14, OPEN),  # 70% of 20: opens on the 20th, not before
        (7, 13, CLOSED),
        (100, 9, CLOSED),
    ],
)
def test_opens_at_the_ratio_once_min_attempts_are_in(
    oks: int, failures: int, expected: BreakerState
) -> None:
    breaker = make(FakeClock())
    record_all(breaker, "t", oks, failures)
    assert breaker.state("t") is expected
    assert breaker.allow("t") is (expected is CLOSED)
    assert breaker.state("other") is CLOSED
    assert breaker.allow("other")


def test_opens_on_a_failure_only_and_exactly_when_the_ratio_is_reached() -> None:
    breaker = make(FakeClock())
    record_all(breaker, "t", 0, 9)
    breaker.record("t", True)  # 9 of 10 failed, but a success never opens it
    assert breaker.state("t") is CLOSED
    breaker.record("t", False)
    assert breaker.state("t") is OPEN


@pytest.mark.parametrize(
    ("gap_s", "expected"),
    [
        (0.0, OPEN),
        (150.0, OPEN),
        (269.0, OPEN),  # still inside the 300 s window (bucketed: 270 to 300 s)
        (300.0, CLOSED),  # the first five slid out
        (330.0, CLOSED),  # ... and their bucket was not reused, only left behind
        (10_000.0, CLOSED),  # buckets were reused for later epochs
    ],
)
def test_old_failures_slide_out_of_the_window(gap_s: float, expected: BreakerState) -> None:
    clock = FakeClock()
    breaker = make(clock)
    record_all(breaker, "t", 0, 5)
    clock.now += gap_s
    record_all(breaker, "t", 0, 5)
    assert breaker.state("t") is expected


def test_open_goes_half_open_after_open_s_with_exactly_one_probe() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker, "t")
    clock.now += 29.9
    assert not breaker.allow("t")
    assert breaker.state("t") is OPEN  # state() reads, it does not move time on
    clock.now += 0.1
    assert [breaker.allow("t") for _ in range(5)] == [True, False, False, False, False]
    assert breaker.state("t") is HALF_OPEN
    assert breaker.allow("healthy")


def test_a_probe_success_closes_with_a_fresh_window_and_the_period_reset() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker, "t")
    for period_s in (30.0, 60.0):  # two failed probes: the period is now 120 s
        clock.now += period_s
        assert breaker.allow("t")
        breaker.record("t", False)
    clock.now += 120.0
    assert breaker.allow("t")
    breaker.record("t", True)
    assert breaker.state("t") is CLOSED
    assert breaker.allow("t")
    record_all(breaker, "t", 0, 9)  # with the old window's failures this would open it
    assert breaker.state("t") is CLOSED
    breaker.record("t", False)
    assert breaker.state("t") is OPEN
    clock.now += 30.0  # back to open_s
    assert breaker.allow("t")


def test_a_failed_probe_reopens_with_the_period_doubled_and_capped() -> None:
    clock = FakeClock()
    breaker = make(clock, open_s=30.0, max_open_s=100.0)
    trip(breaker, "t")
    for period_s in (30.0, 60.0, 100.0, 100.0):
        clock.now += period_s - 0.01
        assert not breaker.allow("t"), period_s
        clock.now += 0.01
        assert breaker.allow("t"), period_s
        assert breaker.state("t") is HALF_OPEN
        breaker.record("t", False)
        assert breaker.state("t") is OPEN


def test_a_lost_probe_is_given_up_after_the_open_period() -> None:
    clock = FakeClock()
    changes = RecordingChanges()
    breaker = make(clock, changes)
    trip(breaker, "t")
    clock.now += 30.0
    assert breaker.allow("t")  # this probe never reports back
    clock.now += 29.9
    assert not breaker.allow("t")
    clock.now += 0.1
    assert [breaker.allow("t") for _ in range(3)] == [True, False, False]
    assert breaker.state("t") is HALF_OPEN
    assert changes.changes == [("t", CLOSED, OPEN), ("t", OPEN, HALF_OPEN)]
    breaker.record("t", True)
    assert breaker.state("t") is CLOSED


def test_late_results_while_open_neither_close_it_nor_count() -> None:
    clock = FakeClock()
    changes = RecordingChanges()
    breaker = make(clock, changes)
    trip(breaker, "t")
    since = breaker.failing_since("t")
    record_all(breaker, "t", 20, 5)
    assert breaker.state("t") is OPEN
    assert not breaker.allow("t")
    assert breaker.failing_since("t") == since
    clock.now += 30.0
    assert breaker.allow("t")  # the open period was not restarted by the late failures
    assert changes.changes == [("t", CLOSED, OPEN), ("t", OPEN, HALF_OPEN)]


def test_on_change_is_called_once_per_transition_never_per_delivery() -> None:
    clock = FakeClock()
    changes = RecordingChanges()
    breaker = make(clock, changes)
    record_all(breaker, "t", 50, 0)
    record_all(breaker, "t", 0, 200)
    for _ in range(10):
        assert not breaker.allow("t")
    clock.now += 30.0
    assert breaker.allow("t")
    breaker.record("t", False)
    clock.now += 60.0
    assert breaker.allow("t")
    breaker.record("t", True)
    record_all(breaker, "t", 10, 0)
    assert changes.changes == [
        ("t", CLOSED, OPEN),
        ("t", OPEN, HALF_OPEN),
        ("t", HALF_OPEN, OPEN),
        ("t", OPEN, HALF_OPEN),
        ("t", HALF_OPEN, CLOSED),
    ]


def test_counts_has_every_state() -> None:
    clock = FakeClock()
    breaker = make(clock)
    assert breaker.counts() == {CLOSED: 0, OPEN: 0, HALF_OPEN: 0}
    trip(breaker, "open")
    trip(breaker, "half")
    breaker.record("closed", True)
    breaker.record("closed2", False)
    clock.now += 30.0
    assert breaker.allow("half")
    assert breaker.counts() == {CLOSED: 2, OPEN: 1, HALF_OPEN: 1}


def test_failing_since_marks_the_start_of_the_current_run_of_failures() -> None:
    clock = FakeClock()
    breaker = make(clock)
    assert breaker.failing_since("t") is None
    breaker.record("t", True)
    assert breaker.failing_since("t") is None
    clock.now = 105.0
    breaker.record("t", False)
    clock.now = 107.0
    breaker.record("t", False)
    assert breaker.failing_since("t") == 105.0
    breaker.record("t", True)
    assert breaker.failing_since("t") is None
    clock.now = 200.0
    trip(breaker, "t")
    for _ in range(3):  # failed probes keep the run going
        clock.now += 1000.0
        assert breaker.allow("t")
        breaker.record("t", False)
    assert breaker.failing_since("t") == 200.0
    clock.now += 1000.0
    assert breaker.allow("t")
    breaker.record("t", True)
    assert breaker.failing_since("t") is None


def test_max_keys_forgets_the_least_recently_used_closed_key_first() -> None:
    breaker = make(FakeClock(), max_keys=3)
    trip(breaker, "a")
    breaker.record("b", False)
    breaker.record("c", False)
    assert breaker.allow("b")  # b is now more recently used than c
    breaker.record("d", True)
    assert len(breaker) == 3
    assert breaker.failing_since("b") is not None
    assert breaker.failing_since("c") is None  # forgotten
    assert breaker.state("a") is OPEN  # the oldest, but open: kept


def test_max_keys_forgets_the_least_recently_used_open_key_when_all_are_open() -> None:
    breaker = make(FakeClock(), max_keys=2)
    trip(breaker, "a")
    trip(breaker, "b")
    breaker.record("c", True)
    assert len(breaker) == 2
    assert breaker.state("a") is CLOSED  # forgotten: it starts over
    assert breaker.allow("a")
    assert breaker.state("b") is OPEN
    assert breaker.counts() == {CLOSED: 1, OPEN: 1, HALF_OPEN: 0}


def test_allow_alone_does_not_remember_a_key() -> None:
    breaker = make(FakeClock(), max_keys=1)
    assert all(breaker.allow(f"k{i}") for i in range(100))
    assert len(breaker) == 0
    with pytest.raises(ValueError, match="max_keys"):
        make(FakeClock(), max_keys=0)


VALID = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
        st.tuples(st.just("allow"), st.sampled_from("ab")),
        st.tuples(st.just("record"), st.sampled_from("ab"), st.booleans()),
    ),
    max_size=200,
)


@settings(deadline=None)
@given(operations)
def test_transitions_always_form_a_valid_sequence(ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    changes = RecordingChanges()
    breaker = make(
        clock, changes, window_s=10.0, min_attempts=2, failure_ratio=0.5, open_s=1.0, max_open_s=4.0
    )
    probes = {"a": 0, "b": 0}  # allow() == True while half-open, since the clock last moved
    for op in ops:
        if op[0] == "tick":
            clock.now += op[1]
            probes = {"a": 0, "b": 0}
        elif op[0] == "allow":
            before = breaker.state(op[1])
            if breaker.allow(op[1]) and before is not CLOSED:
                probes[op[1]] += 1
                assert probes[op[1]] == 1  # one probe at a time
        else:
            breaker.record(op[1], op[2])
    for key in "ab":
        seen = [(old, new) for k, old, new in changes.changes if k == key]
        assert all(pair in VALID for pair in seen)
        states = [CLOSED] + [new for _, new in seen]
        assert all(old == states[i] for i, (old, _) in enumerate(seen))
        assert breaker.state(key) is states[-1]
    assert sum(breaker.counts().values()) == len(breaker)


def test_bulkhead_caps_what_is_in_flight_per_key() -> None:
    bulkhead = Bulkhead(2)
    assert [bulkhead.try_enter("a") for _ in range(3)] == [True, True, False]
    assert bulkhead.try_enter("b")
    assert (bulkhead.in_flight("a"), bulkhead.in_flight("b"), bulkhead.keys) == (2, 1, 2)
    bulkhead.leave("a")
    assert bulkhead.try_enter("a")
    assert not bulkhead.try_enter("a")
    bulkhead.leave("b")
    assert (bulkhead.in_flight("b"), bulkhead.keys) == (0, 1)  # dropped at zero
    bulkhead.leave("a")
    bulkhead.leave("a")
    assert bulkhead.keys == 0
    with pytest.raises(ValueError, match="without a matching"):
        bulkhead.leave("a")


@pytest.mark.parametrize("limit", [0, -1])
def test_bulkhead_needs_a_limit_of_at_least_one(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Bulkhead(limit)
