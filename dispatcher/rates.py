"""A rate as the config writes it ("5/s", "300/min", burst 3): data shared by the channels that
say their targets' default rates and the limiters that hold them. Pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*/\s*([a-z]+)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_s` tokens a second, of which `burst` may go at once after a quiet period."""

    per_s: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s > 0):
            raise ValueError(f"a rate must be a finite number above zero, not {self.per_s!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"a burst must be a whole number of at least 1, not {self.burst!r}")

    @classmethod
    def parse(cls, text: str, burst: int = 1) -> Rate:
        """A rate as written in the config: "5/s", "300/min", "1/h", "0.5/s" (units s, m|min,
        h, d); ValueError saying the accepted form otherwise."""
        found = _RATE.match(text) if isinstance(text, str) else None
        if found is None or found.group(2) not in _UNIT_S:
            raise ValueError(
                f"{text!r} is not a rate: write COUNT/UNIT, e.g. 5/s, 300/min, 1/h"
                " (units: s, m or min, h, d)"
            )
        count = float(found.group(1))
        if count <= 0:
            raise ValueError(f"{text!r}: a rate must be more than zero")
        return cls(per_s=count / _UNIT_S[found.group(2)], burst=burst)

    @property
    def interval_s(self) -> float:
        """Seconds between two tokens once the burst is spent."""
        return 1.0 / self.per_s

    @property
    def tolerance_s(self) -> float:
        """How far ahead of its tat a request may go: what lets `burst` go at once."""
        return (self.burst - 1) * self.interval_s
