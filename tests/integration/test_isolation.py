"""One bad target never holds up the others, through the real daemon and broker: a hanging
receiver beside a healthy one, a flooded Slack channel beside a webhook, and one Slack
channel's limit held across three processes sharing Redis (one of them killed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiohttp import web

from dispatcher.amqp import headers as h
from dispatcher.app import App
from dispatcher.events import new_event
from tests.integration.observe import DaemonProcess
from tests.integration.slack_standin import SlackApiStandin
from tests.support import (
    BrokerNames,
    Sink,
    drain_queue,
    publish_events,
    queue_depth,
    run_cli,
    running,
    settled,
    wait_for_depth,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

TOKEN = "xoxb-isolation-T0KEN"


def to_deploys(name: str) -> dict[str, Any]:
    """A subscription to every event, posting to the stand-in's #deploys with the bot token."""
    target = {"type": "slack", "token": TOKEN, "channel": "#deploys"}
    return {"name": name, "events": ["*"], "target": target}


@pytest.fixture
async def hanging() -> AsyncIterator[str]:
    """A receiver that takes requests and never answers (until the test ends)."""
    release = asyncio.Event()
    seen: list[int] = []

    async def hang(_request: web.Request) -> web.Response:
        seen.append(1)
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hang)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hang"
    release.set()
    await runner.cleanup()


async def test_a_hanging_receiver_does_not_hold_up_a_healthy_one(
    tmp_path: Path,
    names: BrokerNames,
    sink: Sink,
    hanging: str,
    amqp: aiormq.abc.AbstractChannel,
) -> None:
    subscriptions = [
        {"name": "healthy", "events": ["*"], "target": {"type": "webhook", "url": sink.url("/ok")}},
        {
            "name": "hangs",
            "events": ["*"],
            "target": {"type": "webhook", "url": hanging, "timeout_s": 1},
        },
    ]
    config = write_config(
        tmp_path / "c.yaml", names, subscriptions, delivery={"retry_delays": ["1m"]}
    )
    events = [new_event("deployment.started", "test", app=f"a{n}") for n in range(1000)]
    async with running(config) as app:
        await publish_events(amqp, names, events)
        await sink.wait_for(1000, timeout_s=60)
        await settled(app, 1000)
        tried = app.metrics.registry.get_sample_value(
            "dispatcher_delivery_attempt_seconds_count", {"target_type": "webhook"}
        )
        parked = sum(
            app.metrics.registry.get_sample_value(
                "dispatcher_deliveries_parked_total", {"target_type": "webhook", "why": why}
            )
            or 0
            for why in ("circuit_open", "target_busy")
        )
        breakers = app.isolation.states()
    assert len({r.json["id"] for r in sink.at("/ok")}) == 1000
    assert breakers["open"] == 1  # the hanging target's circuit
    assert tried is not None
    # Each delivery to the hanging target was tried once (a timeout goes to the tier at once),
    # or, once its circuit opened or its in-flight cap was reached, parked on the tier without
    # a try: the hanging target held at most a share of the prefetch, never all of it.
    assert (tried - 1000) + parked == 1000
    assert parked >= 500
    assert await queue_depth(amqp, f"{names.queue}.retry.1m") == 1000
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


async def dispatcher_cli(*args: str) -> str:
    """Run `dispatcher ARGS` to its end; what it printed (it must exit 0)."""
    code, out, err = await run_cli(*args)
    assert code == 0, err
    return out


def failing_target(tmp_path: Path, names: BrokerNames, sink: Sink) -> Path:
    """A config whose one subscription, `down`, posts to the sink's /down, which answers 503;
    two failures open its circuit for an hour (no probe during a test), and one second of
    failing disables it."""
    sink.status["/down"] = 503
    down = {
        "name": "down",
        "events": ["*"],
        "target": {"type": "webhook", "url": sink.url("/down")},
    }
    breaker = {"min_attempts": 2, "failure_ratio": 0.5, "open_for": "1h"}
    delivery = {"attempts": 1, "retry_delays": ["1m"], "disable_after": "1s"}
    return write_config(
        tmp_path / "c.yaml", names, [down], delivery={**delivery, "circuit_breaker": breaker}
    )


async def open_the_circuit(app: App, amqp: aiormq.abc.AbstractChannel, names: BrokerNames) -> None:
    """Two events to the failing target: two failures, and its circuit opens."""
    await publish_events(amqp, names, [new_event("deployment.failed", "t") for _ in range(2)])
    await wait_until(lambda: app.isolation.states()["open"] == 1, what="the circuit open")


async def test_an_operator_closes_an_open_circuit_with_targets_enable(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = failing_target(tmp_path, names, sink)
    async with running(config) as app:
        await open_the_circuit(app, amqp, names)
        sink.status["/down"] = 204
        out = await dispatcher_cli("targets", "enable", "down", "--config", str(config))
        assert out.startswith("told running processes to enable webhook:")
        await wait_until(lambda: app.isolation.states()["open"] == 0, what="the circuit closed")
        after = new_event("deployment.failed", "t", app="after")
        await publish_events(amqp, names, [after])
        await sink.wait_for(3)  # two failed tries, then this one at once (no hour's wait)
    assert sink.at("/down")[-1].json["id"] == after["id"]


async def test_a_disabled_target_is_enabled_again_by_a_successful_test_target(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    config = failing_target(tmp_path, names, sink)
    async with running(config) as app:
        await open_the_circuit(app, amqp, names)
        await asyncio.sleep(1.1)  # time passing is the point: it must fail for `disable_after`
        disabled = new_event("deployment.failed", "t", app="while-disabled")
        await publish_events(amqp, names, [disabled])
        await wait_for_depth(amqp, names.dead_letter_queue, 1)
        assert app.isolation.disabled == 1

        sink.status["/down"] = 204  # the receiver is back; the breaker waits an hour for it
        out = await dispatcher_cli("test-target", "down", "--config", str(config))
        assert "told running processes to enable the target (webhook:" in out
        await wait_until(lambda: app.isolation.disabled == 0, what="the target enabled")
        assert app.isolation.states()["open"] == 0

        after = new_event("deployment.failed", "t", app="after")
        await publish_events(amqp, names, [after])
        await sink.wait_for(2 + 1 + 1)  # two failed tries, the sample, this one
    arrived = [r.json["id"] for r in sink.at("/down")]
    assert arrived[-1] == after["id"]
    [letter] = await drain_queue(amqp, names.dead_letter_queue)
    headers = letter.header.properties.headers or {}
    assert headers[h.REASON] == h.TARGET_DISABLED
    assert headers[h.EVENT_ID] == disabled["id"]
    assert await queue_depth(amqp, f"{names.queue}.retry.1m") == 2  # the first two still wait


async def test_a_flooded_slack_channel_waits_on_the_tiers_while_a_webhook_flows(
    tmp_path: Path, names: BrokerNames, sink: Sink, amqp: aiormq.abc.AbstractChannel
) -> None:
    # The stand-in refuses a second post within 0.5 s; the daemon paces #deploys at 1/s.
    async with SlackApiStandin(tokens=[TOKEN], channels=["deploys"], per_channel_s=0.5) as api:
        hook = {
            "name": "hook",
            "events": ["*"],
            "target": {"type": "webhook", "url": sink.url("/h")},
        }
        subscriptions = [hook, to_deploys("flood")]
        config = write_config(
            tmp_path / "c.yaml",
            names,
            subscriptions,
            slack={"api_url": api.api_url, "rate_limit": "1/s", "burst": 1},
            delivery={"max_rate_wait_s": 1.0, "retry_delays": ["2s", "2s", "2s", "2s"]},
        )
        events = [new_event("deployment.failed", "test", app=f"a{n}") for n in range(12)]
        async with running(config) as app:
            await publish_events(amqp, names, events)
            await sink.wait_for(12, timeout_s=15)
            assert len(api.posts) < 12  # the webhook did not wait for Slack's pace
            await api.wait_for_posts(12, timeout_s=60)
            parked = app.metrics.registry.get_sample_value(
                "dispatcher_deliveries_parked_total",
                {"target_type": "slack", "why": "rate_limited"},
            )
    assert parked is not None
    assert parked > 0  # the backlog waited on a tier, not in memory
    assert len(api.received) - len(api.posts) == 0  # paced: Slack refused none
    assert len({p.text for p in api.posts}) == 12
    assert await queue_depth(amqp, names.dead_letter_queue) == 0


async def test_three_processes_share_one_slack_channels_limit_through_redis(
    tmp_path: Path, names: BrokerNames, redis_url: str, amqp: aiormq.abc.AbstractChannel
) -> None:
    # Slack takes about one post a second per channel; the stand-in refuses a post that comes
    # within 0.9 s of the last one it took (a little tolerance, as a real server's clock has).
    async with SlackApiStandin(tokens=[TOKEN], channels=["deploys"], per_channel_s=0.9) as api:
        subscriptions = [to_deploys("deploys")]
        config = write_config(
            tmp_path / "c.yaml",
            names,
            subscriptions,
            slack={"api_url": api.api_url, "burst": 1},  # the stand-in allows no burst
            rate_limits={"redis_url": redis_url},
            delivery={"max_rate_wait_s": 30, "retry_delays": ["2s"] * 5},
        )
        daemons = [DaemonProcess.run(config) for _ in range(3)]
        for daemon in daemons:
            await daemon.start()
        try:
            for daemon in daemons:
                await daemon.logged("consuming")
            events: list[dict[str, Any]] = [
                new_event("deployment.succeeded", "test", app=f"a{n}") for n in range(10)
            ]
            await publish_events(amqp, names, events)
            await api.wait_for_posts(2, timeout_s=15)
            await daemons[0].kill()  # its events go back to the queue; the others take them
            await api.wait_for_posts(10, timeout_s=60)
        finally:
            codes = [await daemon.stop() for daemon in daemons[1:]]
            await daemons[0].kill()
        assert codes == [0, 0]
        refused = len(api.received) - len(api.posts)
    assert refused <= 3, f"{refused} posts answered 429"
    assert len({p.text for p in api.posts}) == 10  # every event, once or more (at least once)
