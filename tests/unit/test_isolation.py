"""Isolation: when a delivery is tried, parked on a tier, or given up, per target key."""

from __future__ import annotations

from dispatcher.delivery.breaker import BreakerSettings, BreakerState
from dispatcher.delivery.isolation import Admission, Isolation, IsolationSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def isolation(clock: Clock, **settings: object) -> Isolation:
    breaker = BreakerSettings(min_attempts=4, failure_ratio=0.75, open_s=30.0)
    return Isolation(IsolationSettings(breaker=breaker, **settings), clock=clock)  # type: ignore[arg-type]


def fail(guard: Isolation, key: str, *, times: int) -> None:
    for _ in range(times):
        guard.admit(key)
        guard.record(key, 0.01, failed=True)
        guard.leave(key)


def test_a_fast_target_is_never_capped_however_many_run_at_once() -> None:
    guard = isolation(Clock(), max_in_flight=2)
    for _ in range(50):
        assert guard.admit("fast") is Admission.TRY
        guard.record("fast", 0.002, failed=False)


def test_a_slow_target_at_its_cap_is_parked_and_others_are_not() -> None:
    guard = isolation(Clock(), max_in_flight=2, slow_s=1.0)
    assert guard.admit("slow") is Admission.TRY
    guard.record("slow", 5.0, failed=False)  # slow, but it answers
    # the first still runs: one more may join it, then the cap of 2 is reached
    assert [guard.admit("slow") for _ in range(3)] == [
        Admission.TRY,
        Admission.PARK_BUSY,
        Admission.PARK_BUSY,
    ]
    assert guard.admit("other") is Admission.TRY
    guard.leave("slow")
    assert guard.admit("slow") is Admission.TRY  # a slot came free


def test_failures_open_the_circuit_and_a_successful_probe_closes_it() -> None:
    clock = Clock()
    changes: list[tuple[BreakerState, BreakerState]] = []
    guard = Isolation(
        IsolationSettings(breaker=BreakerSettings(min_attempts=4, open_s=30.0)),
        clock=clock,
        on_breaker=lambda _key, old, new: changes.append((old, new)),
    )
    for _ in range(4):
        assert guard.admit("down") is Admission.TRY
        guard.record("down", 0.01, failed=True)
        guard.leave("down")
    assert guard.admit("down") is Admission.PARK_OPEN
    assert guard.states()["open"] == 1
    clock.now += 30
    assert guard.admit("down") is Admission.TRY  # the probe
    assert guard.admit("down") is Admission.PARK_OPEN  # only one
    guard.record("down", 0.01, failed=False)
    guard.leave("down")
    assert guard.admit("down") is Admission.TRY
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_a_target_failing_for_days_is_disabled_until_a_probe_succeeds() -> None:
    clock = Clock()
    guard = isolation(clock, disable_after_s=86400.0)
    fail(guard, "dead", times=4)
    assert guard.admit("dead") is Admission.PARK_OPEN  # failing, but not for long yet
    clock.now += 86400 + 1
    assert guard.admit("dead") is Admission.TRY  # a probe is due: it may still be let through
    guard.record("dead", 0.01, failed=True)
    guard.leave("dead")
    assert guard.admit("dead") is Admission.DISABLED
    assert guard.states()["disabled"] == 1
    clock.now += 600
    assert guard.admit("dead") is Admission.TRY  # the next probe
    guard.record("dead", 0.01, failed=False)
    guard.leave("dead")
    assert guard.states()["disabled"] == 0
    assert guard.admit("dead") is Admission.TRY


def test_an_operator_enables_a_disabled_target_at_once() -> None:
    clock = Clock()
    guard = isolation(clock, disable_after_s=3600.0)
    fail(guard, "dead", times=4)
    clock.now += 3601
    assert guard.admit("dead") is Admission.TRY  # the probe
    guard.record("dead", 0.01, failed=True)
    guard.leave("dead")
    assert guard.admit("dead") is Admission.DISABLED
    assert guard.enable("dead") is True
    assert guard.states() == {"closed": 1, "open": 0, "half_open": 0, "disabled": 0}
    assert guard.admit("dead") is Admission.TRY  # no wait for the next probe
    guard.record("dead", 0.01, failed=True)
    guard.leave("dead")
    assert guard.admit("dead") is Admission.TRY  # its failures were forgotten: one is no trip
    assert guard.enable("dead") is False  # nothing to enable
    assert guard.enable("never-seen") is False
