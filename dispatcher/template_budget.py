"""What one render of a team's template may cost: steps, seconds and characters.

Jinja2's sandbox keeps a template away from unsafe attributes, and its documentation warns that
it is no solution for perfect security on its own: nothing in it stops a template from looping
for ever or building a gigabyte string, and a render runs on the event loop. So every render is
metered (`render/meter.py`, enforced by `render/sandbox.py`): it stops with
`TemplateBudgetExceeded` after `max_steps` steps (loop iterations, calls, filters, operators) or,
checked at each step, after `max_time_s`; no value it builds and not its output may pass
`max_output_chars`. A template is rendered under the budget when it is loaded (a config error)
and when it is sent (the default rendering is used instead, with a warning).

It lives outside `render/` and is plain data, so that the settings and the models can name it
without importing Jinja2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the key under which pydantic's validation context carries the budget to the models
_CONTEXT_KEY = "template_budget"


@dataclass(frozen=True, slots=True)
class TemplateBudget:
    """The limits of one render. The defaults are far above what a notification needs (a
    realistic template takes well under a hundred steps) and far below what hurts the daemon:
    100 000 steps take about 0.1 s."""

    max_steps: int = 100_000
    max_time_s: float = 0.25
    #: the longest output, and the longest string (or largest list) built on the way
    max_output_chars: int = 64 * 1024


DEFAULT_BUDGET = TemplateBudget()


def validation_context(budget: TemplateBudget) -> dict[str, Any]:
    """The pydantic validation context under which subscriptions' templates are checked."""
    return {_CONTEXT_KEY: budget}


def budget_in(context: Mapping[str, Any] | None) -> TemplateBudget:
    """The budget a validation context carries; the default when it carries none."""
    budget = (context or {}).get(_CONTEXT_KEY)
    return budget if isinstance(budget, TemplateBudget) else DEFAULT_BUDGET
