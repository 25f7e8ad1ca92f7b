"""Why an event reaches a subscription or not: the answer behind `dispatcher match EVENT.json`.

The `Matcher` only says which subscriptions want an event, and in an order chosen for speed (the
most selective constraint first). A person checking a config wants, for each subscription that
is not reached, the first rule that ruled it out, in an order they can read off the YAML:
`enabled`, then `events`, then the filter fields in the order the model declares them. The
outcome is a conjunction, so this order changes only which reason is given, never whether a
subscription is reached; tests hold `explain` to the `Matcher`'s answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.events import Event
from dispatcher.subscriptions.matcher import TYPE, compile_glob
from dispatcher.subscriptions.models import Subscription

#: The filter fields in the order `Filter` declares them, each with the event attribute it reads
#: (as `Filter.constraints` maps them; a test keeps the two in step).
FILTER_ATTRIBUTES = {
    "organization": "organization",
    "projects": "project",
    "environment_types": "envtype",
    "environments": "environment",
    "repositories": "repository",
    "apps": "app",
    "actors": "actor",
}
#: Values and patterns longer than this are cut in the one-line reason (never in `record`).
SHOW_CHARS = 80


@dataclass(frozen=True, slots=True)
class Explanation:
    """Whether one subscription is reached by an event and, if not, the first rule that failed.

    `ruled_out_by` names the rule as the config spells it: `enabled`, `events`, or
    `filter.<field>` (`filter.environments`). `attribute` is the event attribute that rule
    compared (`type` for `events`), `expected` its patterns (one had to match; `events` as the
    model normalised them), and `actual` the event's value, None when it had none. A reached
    subscription, or one ruled out by `enabled`, has no attribute, patterns or value.
    """

    subscription: str
    reached: bool
    ruled_out_by: str | None = None
    attribute: str | None = None
    expected: tuple[str, ...] = ()
    actual: str | None = None

    @property
    def reason(self) -> str:
        """The verdict in one line, without the subscription's name."""
        if self.reached:
            return "reached"
        if self.ruled_out_by == "enabled":
            return "enabled: false"
        return f"{self.ruled_out_by}: {self._mismatch()}"

    def describe(self) -> str:
        """`name: reason`, the line `dispatcher match` prints per subscription."""
        return f"{self.subscription}: {self.reason}"

    def __str__(self) -> str:
        return self.describe()

    def record(self) -> dict[str, Any]:
        """A plain dict for JSON output: every key always present, in a fixed order."""
        return {
            "subscription": self.subscription,
            "reached": self.reached,
            "ruled_out_by": self.ruled_out_by,
            "attribute": self.attribute,
            "expected": list(self.expected),
            "actual": self.actual,
            "reason": self.reason,
        }

    def _mismatch(self) -> str:
        wanted = ", ".join(_show(pattern) for pattern in self.expected)
        if self.actual is None:
            one_of = "" if len(self.expected) == 1 else "one of "
            return f"event has no {self.attribute}, expected {one_of}{wanted}"
        verb = "does not match" if len(self.expected) == 1 else "matches none of"
        return f"{self.attribute} {_show(self.actual)} {verb} {wanted}"


def explain(subscriptions: Iterable[Subscription], event: Event) -> list[Explanation]:
    """One `Explanation` per subscription, in their order; disabled ones included."""
    globs: dict[str, Callable[[str], bool]] = {}  # one compile per distinct pattern
    return [_explain_one(subscription, event, globs) for subscription in subscriptions]


def explain_one(subscription: Subscription, event: Event) -> Explanation:
    """The `Explanation` of one subscription for this event."""
    return _explain_one(subscription, event, {})


def _explain_one(
    subscription: Subscription, event: Event, globs: dict[str, Callable[[str], bool]]
) -> Explanation:
    name = subscription.name
    if not subscription.enabled:
        return Explanation(name, reached=False, ruled_out_by="enabled")
    for rule, attribute, patterns in _rules(subscription):
        # like the Matcher, a missing or non-string attribute matches no pattern, not even `*`
        value = event.type if attribute == TYPE else event.attr(attribute)
        if value is None or not _any_match(patterns, value, globs):
            return Explanation(name, False, rule, attribute, tuple(patterns), value)
    return Explanation(name, reached=True)


def _rules(subscription: Subscription) -> Iterator[tuple[str, str, Sequence[str]]]:
    """(rule, event attribute, patterns) for each constraint, in the order they are explained."""
    yield "events", TYPE, subscription.events
    for field, attribute in FILTER_ATTRIBUTES.items():
        patterns: list[str] = getattr(subscription.filter, field)
        if patterns:  # an empty field does not constrain
            yield f"filter.{field}", attribute, patterns


def _any_match(
    patterns: Sequence[str], value: str, globs: dict[str, Callable[[str], bool]]
) -> bool:
    for pattern in patterns:
        test = globs.get(pattern)
        if test is None:
            test = globs[pattern] = compile_glob(pattern)
        if test(value):
            return True
    return False


def _show(text: str) -> str:
    """Quoted and escaped like repr, cut to about `SHOW_CHARS`: event values can be long."""
    return repr(text if len(text) <= SHOW_CHARS else text[: SHOW_CHARS - 1] + "\u2026")
