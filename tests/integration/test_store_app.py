"""The daemon matches against what its `SubscriptionStore` holds, not the config's list: the
first set when it starts, the next one when it is told to look again (SIGHUP, or a store's own
change notice), swapped whole."""

from __future__ import annotations

from pathlib import Path

import aiormq
import pytest

from dispatcher.events import new_event
from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.store import MemoryStore
from tests.support import BrokerNames, Sink, publish_events, running, wait_until, write_config

pytestmark = pytest.mark.integration


def to(sink: Sink, name: str) -> Subscription:
    target = {"type": "webhook", "url": sink.url(f"/{name}")}
    return Subscription.model_validate({"name": name, "events": ["*"], "target": target})


async def test_the_app_matches_what_the_store_holds_and_takes_a_new_set_whole(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = write_config(tmp_path / "c.yaml", names, [])  # the file names none
    store = MemoryStore([to(sink, "first")])
    async with running(config, store) as app:
        assert app.readiness().subscriptions_loaded
        await publish_events(amqp, names, [new_event("deployment.failed", "t", app="one")])
        await sink.wait_for(1)
        store.replace([to(sink, "second"), to(sink, "third")])
        await app.reload()
        await wait_until(lambda: len(app.pipeline.matcher) == 2, what="the new set")
        await publish_events(amqp, names, [new_event("deployment.failed", "t", app="two")])
        await sink.wait_for(3)
    paths = sorted((r.path, r.json["app"]) for r in sink.received)
    assert paths == [("/first", "one"), ("/second", "two"), ("/third", "two")]
