"""Plain text: the log target's message and the text part of an email.

No emoji and no markup: one headline line, then "Label: value" lines. A value that spans lines
is indented after its first line, so no data can forge a line of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.events import Event
from dispatcher.render.describe import Description, describe
from dispatcher.render.templates import render, source_of
from dispatcher.render.values import one_line
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

if TYPE_CHECKING:
    from dispatcher.subscriptions.models import Subscription

MAX_DETAILS = 500  # data items listed in plain text and email; more are counted, not listed
_INDENT = "    "


def text_message(
    event: Event, subscription: Subscription, budget: TemplateBudget = DEFAULT_BUDGET
) -> str:
    """The plain text notification: the subscription's `text` template, else the default."""
    description = describe(event)
    return custom_text(description, subscription, budget=budget) or default_text(description)


def custom_text(
    description: Description,
    subscription: Subscription,
    *,
    slack: bool = False,
    budget: TemplateBudget = DEFAULT_BUDGET,
) -> str | None:
    """The rendered `text` template, or None when there is none, it fails or renders blank.
    With `slack`, rendered for Slack: the event's strings escaped for mrkdwn."""
    source = source_of(subscription, "text")
    rendered = render(source, "text", description, subscription, slack=slack, budget=budget)
    return rendered if rendered and rendered.strip() else None


def default_text(description: Description) -> str:
    """The headline, then a "Label: value" line for each field, detail and the link."""
    lines = [description.headline, *label_lines(description.fields)]
    lines += label_lines(description.details[:MAX_DETAILS])
    lines += more_line(description)
    if description.link:
        lines.append(f"Link: {description.link}")
    return "\n".join(lines)


def email_text(description: Description, subscription: Subscription) -> str:
    """An email's text part: title, headline, fields, details, link and footer."""
    sections = [
        f"{description.title}\n{description.headline}",
        "\n".join(label_lines(description.fields)),
    ]
    if description.details:
        details = label_lines(description.details[:MAX_DETAILS]) + more_line(description)
        sections.append("Details\n" + "\n".join(details))
    if description.link:
        sections.append(f"Link: {description.link}")
    sections.append(f"-- \n{footer(description, subscription)}")
    return "\n\n".join(section for section in sections if section) + "\n"


def label_lines(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"{label}: {indented(value)}" for label, value in pairs]


def indented(value: str) -> str:
    return f"\n{_INDENT}".join(value.splitlines()) or value


def more_line(description: Description) -> list[str]:
    more = len(description.details) - MAX_DETAILS
    return [f"\u2026 {more} more fields"] if more > 0 else []


def footer(description: Description, subscription: Subscription) -> str:
    """Who sent this and why: the subscription, the event's source and id."""
    event = description.event
    return one_line(
        f"Sent by dispatcher for subscription {subscription.name}"
        f" | source {event.source} | event {event.id}"
    )
