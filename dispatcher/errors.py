"""The exception tree of dispatcher.

    DispatcherError
     +-- ConfigError          a config file that cannot be used; carries every problem found
     +-- BrokerError          the broker refused or lost something we needed (topology, confirms)
     +-- PublishError         a publish was not confirmed by the broker
     +-- UnknownSubscription  a command named a subscription the config does not have
     +-- TemplateBudgetExceeded  a template's render ran past its steps, time or size

Control-flow signals are not errors and live beside the code that raises them.
"""

from __future__ import annotations

from dataclasses import dataclass


class DispatcherError(Exception):
    """Base of every error dispatcher raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(DispatcherError):
    """A config that cannot be used. `problems` lists each one as `file:line: field: message`."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class BrokerError(DispatcherError):
    """The broker refused an operation dispatcher needs (declare, consume)."""


class PublishError(DispatcherError):
    """A message was not confirmed (nacked, returned as unroutable, or the channel died)."""


class UnknownSubscription(DispatcherError):
    """`test-target` or `render` named a subscription the config does not have."""


class TemplateBudgetExceeded(DispatcherError):
    """A template's render stopped: it took more steps or time, or built or wrote more text,
    than `delivery.template_budget` allows (see `dispatcher.template_budget`)."""
