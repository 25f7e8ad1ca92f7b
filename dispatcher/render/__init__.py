"""Rendering: one readable description of each event family, shaped for each target.

Pure: takes an Event and its Subscription, returns text. The channels send what this returns;
per-subscription templates (Jinja2, sandboxed, validated at config load) replace parts of it.

    describe(event) -> Description            what every target says
    slack_message(event, subscription)        Block Kit, escaped for mrkdwn, within Slack's limits
    email_message(event, subscription)        subject, text part and HTML part
    text_message(event, subscription)         plain text, for the log target
    compile_template / validate_template      config-time checks of the templates
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dispatcher.render.describe import COLOURS, Description, describe
from dispatcher.render.email import email_message
from dispatcher.render.facts import Status
from dispatcher.render.slack import slack_message
from dispatcher.render.templates import compile_template, validate_template
from dispatcher.render.text import text_message
from dispatcher.render.values import escape_mrkdwn

__all__ = [
    "COLOURS",
    "Description",
    "EmailMessage",
    "SlackMessage",
    "Status",
    "compile_template",
    "describe",
    "email_message",
    "escape_mrkdwn",
    "slack_message",
    "text_message",
    "validate_template",
]


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
