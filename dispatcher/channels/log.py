"""The `log` target: writes each notification to dispatcher's own log, for local use."""

from __future__ import annotations

import logging

import structlog

from dispatcher.channels.base import Delivery, SendOk, SendResult
from dispatcher.events import MATCH_ATTRIBUTES
from dispatcher.rates import Rate
from dispatcher.render import text_message
from dispatcher.subscriptions.models import LogTarget
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

log = structlog.get_logger(__name__)


class LogChannel:
    """Delivers by logging one `notification` line: the rendered text (what a person would read:
    the subscription's `text` template, else the default), then the event's facts as fields."""

    def __init__(self, template_budget: TemplateBudget = DEFAULT_BUDGET) -> None:
        self._budget = template_budget

    def target_key(self, delivery: Delivery) -> str:
        return "log"

    def default_rate(self, delivery: Delivery) -> Rate | None:
        return None

    async def send(self, delivery: Delivery) -> SendResult:
        target = delivery.subscription.target
        assert isinstance(target, LogTarget)
        event = delivery.event
        where = {name: event.attr(name) for name in MATCH_ATTRIBUTES if event.attr(name)}
        log.log(
            logging.getLevelNamesMapping()[target.level.upper()],
            "notification",
            text=text_message(event, delivery.subscription, self._budget),
            type=event.type,
            source=event.source,
            subject=event.subject,
            time=event.time,
            **({"data": event.data} if event.data is not None else {}),
            **where,
            event_id=event.id,
            subscription=delivery.subscription.name,
            delivery_id=delivery.id,
        )
        return SendOk("logged")

    async def close(self) -> None:
        return None
