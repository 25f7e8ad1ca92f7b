"""Rendering: one readable description of each event family, shaped for each target.

Pure: takes an Event and its Subscription, returns text. The channels send what this returns;
per-subscription templates (Jinja2, sandboxed, validated at config load) replace parts of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What a Slack channel posts: `text` is the notification fallback, `blocks` the Block Kit
    layout, already within Slack's limits and escaped for mrkdwn."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """What the email channel sends: a scannable subject and the same content twice."""

    subject: str
    text: str
    html: str
