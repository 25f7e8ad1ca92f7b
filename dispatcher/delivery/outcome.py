"""How a delivery ends: exactly one of delivered, retry later (on a durable tier), dead letter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivered:
    attempts: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Park the delivery on a durable delay tier and try again when it expires."""

    tier: int
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Give up: the delivery goes to the parking lot with this reason, for a person to replay."""

    reason: str
    attempts: int


Outcome = Delivered | RetryLater | DeadLetter
