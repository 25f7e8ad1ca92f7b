"""How a delivery ends: exactly one of delivered, retry later (on a durable tier), dead letter.

Every outcome carries the delivery's history as it stands after this round (`attempts` in all,
the first try's time, the last error), so the message that carries it on says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivered:
    attempts: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Wait on the durable tier of `delay_s`, then try again. `retries` is the count of tier
    waits after this one (it picks the next tier); a parked delivery (a rate limit's backlog,
    an open circuit) keeps its count."""

    delay_s: float
    reason: str
    attempts: int
    retries: int
    first_attempt_at: float
    last_attempt_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Give up: the delivery goes to the parking lot with this reason, for a person to replay.
    `code` is one of `dispatcher.amqp.headers.REASONS`; `reason` is the last error's text."""

    reason: str
    attempts: int
    code: str = "permanent_failure"
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None


Outcome = Delivered | RetryLater | DeadLetter
