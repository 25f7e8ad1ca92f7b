"""When to try a failed delivery again: pure arithmetic, no I/O, time passed in as numbers."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.channels.base import SendFailed


def compute_backoff(attempt: int, *, initial_s: float, max_s: float, jitter: float) -> float:
    """Full-jitter exponential backoff: a delay in [0, min(max_s, initial_s * 2**(attempt-1))].

    `jitter` is a number in [0, 1) (random.random() in production, fixed in tests).
    """
    ceiling: float = min(max_s, initial_s * 2.0 ** max(attempt - 1, 0))
    return ceiling * jitter


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try in process, and how long to wait between tries."""

    attempts: int = 3
    initial_s: float = 0.5
    max_s: float = 10.0
    max_retry_after_s: float = 30.0

    def next_delay(self, attempt: int, failure: SendFailed, jitter: float) -> float | None:
        """The delay before try `attempt + 1`, or None when trying again in process is pointless
        (permanent failure, tries used up, a target that did not answer in time, or one that
        asked us to wait longer than we hold a delivery in memory): then the durable retry
        tiers take over."""
        if not failure.retryable or failure.timed_out or attempt >= self.attempts:
            return None
        if failure.retry_after_s is not None:
            if failure.retry_after_s > self.max_retry_after_s:
                return None
            return failure.retry_after_s
        return compute_backoff(attempt, initial_s=self.initial_s, max_s=self.max_s, jitter=jitter)
