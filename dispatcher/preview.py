"""`dispatcher render` and `dispatcher test-target`: what a subscription would send, and a real
send of a sample event, for a person checking a target before relying on it."""

from __future__ import annotations

import json
from typing import Any

from dispatcher.channels.base import Channel, Delivery, SendFailed, SendResult
from dispatcher.errors import UnknownSubscription
from dispatcher.render import email_message, slack_message, text_message
from dispatcher.settings import Settings
from dispatcher.subscriptions.models import (
    EmailTarget,
    LogTarget,
    SlackTarget,
    SlackWebhookTarget,
    Subscription,
    WebhookTarget,
)


def find(settings: Settings, name: str) -> Subscription:
    for sub in settings.subscriptions:
        if sub.name == name:
            return sub
    known = ", ".join(sorted(s.name for s in settings.subscriptions)) or "none"
    raise UnknownSubscription(f"no subscription named {name!r} (known: {known})")


def preview(delivery: Delivery, settings: Settings) -> dict[str, Any]:
    """What would be sent for this delivery, as data (`render -o json`). Secrets are not shown:
    the webhook URL, the signature and custom header values are placeholders."""
    sub, event = delivery.subscription, delivery.event
    target = sub.target
    budget = settings.delivery.template_budget.budget
    if isinstance(target, WebhookTarget):
        headers = {
            "Content-Type": "application/cloudevents+json",
            "webhook-id": delivery.id,
            "webhook-timestamp": "<the time of sending>",
            **({"webhook-signature": "v1,<HMAC-SHA256>"} if target.secret else {}),
            **dict.fromkeys(target.headers, "<set>"),
        }
        return {
            "method": "POST",
            "url": "<webhook url>",
            "headers": headers,
            "body": json.loads(event.body),
        }
    if isinstance(target, SlackTarget | SlackWebhookTarget):
        message = slack_message(event, sub, budget)
        payload: dict[str, Any] = {"text": message.text, "blocks": message.blocks}
        if isinstance(target, SlackTarget):
            payload = {"channel": target.channel, "username": target.username, **payload}
        return {"payload": payload}
    if isinstance(target, EmailTarget):
        mail = email_message(event, sub, budget)
        return {
            "from": settings.smtp.sender if settings.smtp else "<smtp.from>",
            "to": list(target.to),
            "cc": list(target.cc),
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
        }
    assert isinstance(target, LogTarget)
    return {"text": text_message(event, sub, budget)}


def render(delivery: Delivery, settings: Settings) -> str:
    """What would be sent for this delivery, as a person reads it. Secrets are not shown."""
    data = preview(delivery, settings)
    target = delivery.subscription.target
    if isinstance(target, WebhookTarget):
        head = "\n".join(f"{k}: {v}" for k, v in data["headers"].items())
        body = json.dumps(data["body"], indent=2, ensure_ascii=False)
        return f"POST <webhook url>\n{head}\n\n{body}"
    if isinstance(target, SlackTarget | SlackWebhookTarget):
        return json.dumps(data["payload"], indent=2, ensure_ascii=False)
    if isinstance(target, EmailTarget):
        lines = [f"From: {data['from']}", f"To: {', '.join(data['to'])}"]
        if data["cc"]:
            lines.append(f"Cc: {', '.join(data['cc'])}")
        lines += [f"Subject: {data['subject']}", "", data["text"], "", "--- HTML part ---"]
        return "\n".join([*lines, data["html"]])
    text: str = data["text"]
    return text


async def send_once(channel: Channel, delivery: Delivery) -> SendResult:
    """One real attempt, with no retries, so the answer is the target's own."""
    try:
        return await channel.send(delivery)
    finally:
        await channel.close()


def describe_result(result: SendResult, subscription: Subscription) -> str:
    kind = subscription.target.type
    if isinstance(result, SendFailed):
        retry = "retryable" if result.retryable else "permanent"
        return f"{subscription.name} ({kind}): FAILED ({retry}): {result.reason}"
    return f"{subscription.name} ({kind}): OK: {result.detail}"
