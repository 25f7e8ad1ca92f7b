"""Slack Block Kit messages, within Slack's limits and escaped for mrkdwn.

Every piece of event text is escaped (&, <, >) before it is placed, so nothing in an event can
mention a channel or a person or forge a link. Text that does not fit is cut visibly, never
refused: a header of at most 150 characters, section texts of at most 3000, at most ten fields
of 2000 per section, at most 50 blocks. Lengths are counted in UTF-16 code units, as Slack may.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.events import Event
from dispatcher.render.describe import Description, describe
from dispatcher.render.templates import render_blocks
from dispatcher.render.text import custom_text
from dispatcher.render.values import escape_mrkdwn, one_line
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

if TYPE_CHECKING:
    from dispatcher.render import SlackMessage
    from dispatcher.subscriptions.models import Subscription

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_TEXT = 3000  # a section's text, a context element, the message's `text` as we send it
MAX_FIELD = 2000
MAX_FIELDS = 10  # per section
MAX_URL = 3000
MAX_DETAILS = 25  # data items listed; a long list is for the email or the event itself
_MAX_FIELD_SECTIONS = 2
_DETAIL_CHARS = 300  # one detail line's value
ELLIPSIS = "\u2026"
CUT = f"{ELLIPSIS}(truncated)"


def slack_message(
    event: Event, subscription: Subscription, budget: TemplateBudget = DEFAULT_BUDGET
) -> SlackMessage:
    """The Slack message for an event: the subscription's templates where it has them."""
    from dispatcher.render import SlackMessage  # defined by the package, which imports us

    description = describe(event)
    custom = custom_text(description, subscription, slack=True, budget=budget)
    # a template's text is written for Slack, with the event's strings escaped going in
    text = cut(custom, MAX_TEXT) if custom else fit(f"{description.emoji} {description.headline}")
    blocks = render_blocks(description, subscription, budget)
    return SlackMessage(
        text=text,
        blocks=clamp(blocks) if blocks else default_blocks(description, subscription),
    )


def default_blocks(description: Description, subscription: Subscription) -> list[Block]:
    """Header, headline, fields, details, link button, and a context line saying where from."""
    title = f"{description.emoji} {description.title}"
    blocks: list[Block] = [
        {"type": "header", "text": _plain(fit(title, MAX_HEADER, ELLIPSIS))},
        {"type": "section", "text": _mrkdwn(fit(description.headline))},
    ]
    blocks += _field_sections(description.fields)
    blocks += _detail_sections(description.details)
    link = description.link
    if link is not None and len(link) <= MAX_URL:  # `safe_url` left no <, >, | or spaces in it
        button = {"type": "button", "text": _plain("Open"), "url": link}
        blocks.append({"type": "actions", "elements": [button]})
    event = description.event
    context = [
        f"Source: {event.source}",
        f"Event: {event.id}",
        f"Subscription: {subscription.name}",
    ]
    blocks.append({"type": "context", "elements": [_mrkdwn(fit(one_line(x))) for x in context]})
    return blocks


def _field_sections(fields: tuple[tuple[str, str], ...]) -> list[Block]:
    shown = _MAX_FIELD_SECTIONS * MAX_FIELDS
    texts = [_field(label, value) for label, value in fields[:shown]]
    if len(fields) > shown:  # too many to show: the last one says how many are left
        texts[-1] = f"_\u2026 {len(fields) - shown + 1} more fields_"
    return [
        {"type": "section", "fields": [_mrkdwn(text) for text in texts[at : at + MAX_FIELDS]]}
        for at in range(0, len(texts), MAX_FIELDS)
    ]


def _field(label: str, value: str) -> str:
    head = f"*{fit(label, 200, ELLIPSIS)}*\n"
    return head + fit(value, MAX_FIELD - _units(head))


def _detail_sections(details: tuple[tuple[str, str], ...]) -> list[Block]:
    """The data no field shows, one "key: value" line each, packed into sections."""
    if not details:
        return []
    lines = [
        f"*{fit(key, 200, ELLIPSIS)}*: {fit(one_line(value), _DETAIL_CHARS)}"
        for key, value in details[:MAX_DETAILS]
    ]
    if len(details) > MAX_DETAILS:
        lines.append(f"_\u2026 {len(details) - MAX_DETAILS} more fields_")
    sections: list[list[str]] = [["*Details*"]]
    for line in lines:
        if _units("\n".join([*sections[-1], line])) > MAX_TEXT:
            sections.append([])
        sections[-1].append(line)
    return [{"type": "section", "text": _mrkdwn("\n".join(lines))} for lines in sections]


def fit(text: str, limit: int = MAX_TEXT, marker: str = CUT) -> str:
    """The text escaped for mrkdwn, cut to `limit` (with the marker) when longer."""
    return cut(escape_mrkdwn(text), limit, marker)


def cut(escaped: str, limit: int, marker: str = CUT) -> str:
    """Already escaped (or template-written) text cut to `limit`, never inside an entity."""
    if _units(escaped) <= limit:
        return escaped
    head = escaped[: max(0, limit - _units(marker))]
    while head and _units(head) + _units(marker) > limit:  # astral characters count twice
        head = head[:-1]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:  # every & of escaped text starts an entity
        head = head[:amp]
    return head + marker


def clamp(blocks: list[Block]) -> list[Block]:
    """A template's blocks held to Slack's limits: cut visibly, never refused."""
    kept = [_clamp_block(block) for block in blocks[:MAX_BLOCKS]]
    if len(blocks) > MAX_BLOCKS:
        note = _mrkdwn(f"_\u2026 {len(blocks) - MAX_BLOCKS + 1} more blocks_")
        kept[-1] = {"type": "context", "elements": [note]}
    return kept


def _clamp_block(block: Block) -> Block:
    block = dict(block)
    limit = MAX_HEADER if block.get("type") == "header" else MAX_TEXT
    block["text"] = _clamp_text(block.get("text"), limit)
    fields = block.get("fields")
    if isinstance(fields, list):
        block["fields"] = [_clamp_text(field, MAX_FIELD) for field in fields[:MAX_FIELDS]]
    elements = block.get("elements")
    if isinstance(elements, list) and block.get("type") == "context":
        block["elements"] = [_clamp_text(element, MAX_TEXT) for element in elements[:10]]
    return {key: value for key, value in block.items() if value is not None}


def _clamp_text(text: object, limit: int) -> object:
    if isinstance(text, dict) and isinstance(text.get("text"), str):
        return {**text, "text": cut(text["text"], limit, ELLIPSIS if limit < 200 else CUT)}
    return text


def _plain(text: str) -> Block:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def _units(text: str) -> int:
    """Length in UTF-16 code units: what a JavaScript or Java service counts."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)
