"""Email: a subject a person can scan in an inbox list, and the same content as text and HTML.

All event text in the HTML is escaped (`html.escape`, quotes too); styles are inline because
mail clients drop style sheets.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from dispatcher.events import Event
from dispatcher.render.describe import Description, describe
from dispatcher.render.templates import render, source_of
from dispatcher.render.text import MAX_DETAILS, custom_text, email_text, footer
from dispatcher.render.values import one_line, shorten
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

if TYPE_CHECKING:
    from dispatcher.render import EmailMessage
    from dispatcher.subscriptions.models import Subscription

MAX_SUBJECT = 200
SUBJECT_PREFIX = "[dispatcher]"
_FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
_CELL = "padding:3px 12px 3px 0;vertical-align:top;text-align:left"
_LABEL = f"{_CELL};color:#616061;font-weight:600;white-space:nowrap"
_VALUE = f"{_CELL};white-space:pre-wrap;word-break:break-word"
_MUTED = "color:#868686;font-size:12px"


def email_message(
    event: Event, subscription: Subscription, budget: TemplateBudget = DEFAULT_BUDGET
) -> EmailMessage:
    """The email for an event: the subscription's templates where it has them."""
    from dispatcher.render import EmailMessage  # defined by the package, which imports us

    description = describe(event)
    text = custom_text(description, subscription, budget=budget)
    html = _custom_html(description, subscription, budget)
    return EmailMessage(
        subject=subject(description, subscription, budget),
        text=text or email_text(description, subscription),
        html=html or email_html(description, subscription),
    )


def subject(
    description: Description, subscription: Subscription, budget: TemplateBudget = DEFAULT_BUDGET
) -> str:
    """The target's `subject` template, else the subscription's `email_subject`, else
    "[dispatcher] Deployment failed: web / prod-eu (PRODUCTION)": one line, at most 200."""
    target = subscription.target
    source = target.subject if target.type == "email" else None
    source = source or source_of(subscription, "email_subject")
    rendered = render(source, "email_subject", description, subscription, budget=budget)
    rendered = one_line(rendered or "")
    if not rendered:
        where = f": {description.where}" if description.where else ""
        rendered = f"{SUBJECT_PREFIX} {description.title}{where}"
    return shorten(rendered, MAX_SUBJECT)


def _custom_html(
    description: Description, subscription: Subscription, budget: TemplateBudget
) -> str | None:
    source = source_of(subscription, "email_html")
    rendered = render(source, "email_html", description, subscription, budget=budget)
    return rendered if rendered and rendered.strip() else None


def email_html(description: Description, subscription: Subscription) -> str:
    """The default HTML part: the text part's content, escaped, with the status colour."""
    parts = [
        f'<h2 style="margin:0 0 6px;font-size:18px">{_e(description.title)}</h2>',
        f'<p style="margin:0 0 12px">{_e(description.headline)}</p>',
        _table(description.fields),
    ]
    if description.details:
        parts.append('<h3 style="margin:16px 0 6px;font-size:14px">Details</h3>')
        parts.append(_table(description.details[:MAX_DETAILS]))
        more = len(description.details) - MAX_DETAILS
        if more > 0:
            parts.append(f'<p style="{_MUTED}">\u2026 {more} more fields</p>')
    if description.link:
        parts.append(
            f'<p style="margin:16px 0 0"><a href="{_e(description.link)}" '
            f'style="color:{description.colour};font-weight:600">{_e(description.link)}</a></p>'
        )
    card = f"border-left:4px solid {description.colour};padding:4px 0 4px 14px"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body style="margin:0;padding:16px;{_FONT};color:#1d1c1d;font-size:14px">'
        f'<div style="{card}">{"".join(parts)}</div>'
        f'<p style="margin:16px 0 0;{_MUTED}">{_e(footer(description, subscription))}</p>'
        "</body></html>\n"
    )


def _table(pairs: tuple[tuple[str, str], ...]) -> str:
    rows = "".join(
        f'<tr><th style="{_LABEL}">{_e(label)}</th><td style="{_VALUE}">{_e(value)}</td></tr>'
        for label, value in pairs
    )
    return f'<table role="presentation" style="border-collapse:collapse">{rows}</table>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)
