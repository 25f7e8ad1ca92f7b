"""Durations as people write them in the config ("500ms", "15s", "10m", "1h", "2d"): parsing,
and the short canonical name a retry tier's queue is named after. Pure."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `text`, e.g. "10m" -> 600.0; ValueError saying the accepted form otherwise."""
    found = _DURATION.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 500ms, 15s, 10m, 1h, 2d"
        )
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return seconds


def duration_name(seconds: float) -> str:
    """The shortest exact name of a duration: 600 -> "10m", 0.5 -> "500ms", 90 -> "90s".

    Retry tier queues are named after their delay, so a tier keeps its name (and the broker
    keeps its messages) whatever its place in the list."""
    ms = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
