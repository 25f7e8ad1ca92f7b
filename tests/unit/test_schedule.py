"""The durable retry schedule and duration names: pure tables."""

from __future__ import annotations

import pytest

from dispatcher.delivery.schedule import EXPIRED, RETRIES_EXHAUSTED, Schedule, Tier
from dispatcher.durations import duration_name, parse_duration

DEFAULT = Schedule.of(["10s", "1m", "10m", "1h", "6h", "12h"], "24h")


@pytest.mark.parametrize(
    ("text", "seconds", "name"),
    [
        ("500ms", 0.5, "500ms"),
        ("15s", 15.0, "15s"),
        ("90s", 90.0, "90s"),
        ("10m", 600.0, "10m"),
        ("1h", 3600.0, "1h"),
        ("2d", 172800.0, "2d"),
        ("1.5h", 5400.0, "90m"),
        (" 60m ", 3600.0, "1h"),
    ],
)
def test_durations_parse_and_name_themselves(text: str, seconds: float, name: str) -> None:
    assert parse_duration(text) == seconds
    assert duration_name(seconds) == name


@pytest.mark.parametrize("text", ["", "10", "s", "-1s", "0s", "1w", "1 hour", "1e3s"])
def test_bad_durations_say_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("retries", "age_s", "retry_after_s", "expected"),
    [
        (0, 0, None, Tier(10, 1)),
        (1, 15, None, Tier(60, 2)),
        (5, 3 * 3600, None, Tier(43200, 6)),
        (6, 3 * 3600, None, RETRIES_EXHAUSTED),  # past the last tier
        (5, 13 * 3600, None, EXPIRED),  # 13h + 12h would pass 24h
        (0, 86400, None, EXPIRED),
        (0, 0, 45, Tier(60, 2)),  # Retry-After 45s: the first tier at least that long
        (0, 0, 10**6, Tier(43200, 6)),  # longer than every tier: the last one
    ],
)
def test_next_tier(
    retries: int, age_s: float, retry_after_s: float | None, expected: Tier | str
) -> None:
    assert DEFAULT.next(retries, age_s, retry_after_s) == expected


def test_tiers_are_named_after_their_delay_not_their_place() -> None:
    assert DEFAULT.names == ("10s", "1m", "10m", "1h", "6h", "12h")
    assert Schedule.of(["1m", "10s"], "1h").names == ("1m", "10s")


def test_override_keeps_what_the_subscription_leaves_out() -> None:
    assert DEFAULT.override(["5s"], None) == Schedule((5.0,), 86400.0)
    assert DEFAULT.override(None, "1h").delays_s == DEFAULT.delays_s
    assert DEFAULT.override(None, "1h").max_age_s == 3600.0


@pytest.mark.parametrize(
    ("wait_s", "expected"), [(3, Tier(10, 2)), (30, Tier(60, 2)), (10**6, Tier(43200, 2))]
)
def test_park_picks_the_shortest_tier_long_enough_and_keeps_the_retry_count(
    wait_s: float, expected: Tier
) -> None:
    assert DEFAULT.park(wait_s, retries=2) == expected
