"""The daemon matches against what its `SubscriptionStore` holds, not the config's list: the
first set when it starts, the next one when it is told to look again (SIGHUP, or a store's own
change notice), swapped whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiormq
import pytest
from structlog.testing import capture_logs

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


async def test_an_edited_config_file_is_applied_without_a_signal_and_a_broken_one_is_not(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    def hook(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "events": ["*"],
            "target": {"type": "webhook", "url": sink.url(f"/{name}")},
        }

    store = {"poll_every": "100ms"}
    config = write_config(tmp_path / "c.yaml", names, [hook("first")], store=store)
    with capture_logs() as logs:
        async with running(config) as app:
            write_config(config, names, [hook("first"), hook("second")], store=store)
            await wait_until(lambda: len(app.pipeline.matcher) == 2, what="the edited file applied")
            assert not [log for log in logs if log["event"].startswith("only subscriptions")]
            # another section changed: the subscriptions are applied, and a warning says so
            delivery = {"allowed_networks": ["127.0.0.0/8"]}
            write_config(
                config, names, [hook("first"), hook("second")], store=store, delivery=delivery
            )
            await wait_until(
                lambda: any(log["event"].startswith("only subscriptions") for log in logs),
                what="the changed delivery section named",
            )
            [warning] = [log for log in logs if log["event"].startswith("only subscriptions")]
            assert (warning["log_level"], warning["changed"]) == ("warning", ["delivery"])
            config.write_text(config.read_text().replace("subscriptions:", "subscriptions: [oops"))
            await wait_until(
                lambda: any(log["event"].startswith("reload refused") for log in logs),
                what="the broken file refused",
            )
            await publish_events(amqp, names, [new_event("deployment.failed", "t")])
            await sink.wait_for(2)  # both subscriptions of the last good file still match
    assert sorted(r.path for r in sink.received) == ["/first", "/second"]
    [refused] = [log for log in logs if log["event"].startswith("reload refused")]
    assert f"{config}:" in refused["problems"]  # names the file and line


async def test_a_database_store_without_a_secret_key_warns_once_at_start(
    tmp_path: Path, names: BrokerNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPATCHER_SECRET_KEY", raising=False)
    store = {"url": f"sqlite:///{tmp_path / 'subs.db'}", "poll_every": "100ms"}
    config = write_config(tmp_path / "c.yaml", names, [], store=store)
    with capture_logs() as logs:
        async with running(config) as app:
            assert app.readiness().subscriptions_loaded
    warnings = [log for log in logs if "DISPATCHER_SECRET_KEY" in log["event"]]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["store"] == f"sqlite:///{tmp_path / 'subs.db'}"
