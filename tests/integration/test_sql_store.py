"""The SQL store against a real SQLite file and a real PostgreSQL: the store contract, editing,
the change counter and notices, migrations, and secrets at rest."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.sql import (
    HEAD,
    DuplicateName,
    NotFound,
    SqlStore,
    StoredSubscription,
    UnreadableSubscription,
)
from dispatcher.subscriptions.sql_schema import metadata
from tests.sql_support import (
    KEY,
    OTHER_KEY,
    SqlHarness,
    execute,
    postgres_database,
    raw_rows,
    schema_differences,
)
from tests.unit import test_store as contract
from tests.unit.test_store import subscription

pytestmark = pytest.mark.integration

# the store contract, run here against SqlStore through the `make` fixture below
test_load_hands_over_the_whole_set_in_order = contract.test_load_hands_over_the_whole_set_in_order
test_a_change_is_seen_by_the_next_load = contract.test_a_change_is_seen_by_the_next_load

WEBHOOK_URL = "https://hooks.example.com/in/tok-7f3a9c"
SIGNING_KEY = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmn").decode()
HEADER_VALUE = "Bearer hdr-51e0aa"
SLACK_TOKEN = "xoxb-1111-2222-slacktok"
SLACK_HOOK = "https://hooks.slack.com/services/T0/B0/hooksecret"
SECRETS = (WEBHOOK_URL, SIGNING_KEY, HEADER_VALUE, SLACK_TOKEN, SLACK_HOOK)


def webhook(name: str = "payments-hook", **extra: Any) -> dict[str, Any]:
    target = {
        "type": "webhook",
        "url": WEBHOOK_URL,
        "secret": SIGNING_KEY,
        "headers": {"Authorization": HEADER_VALUE, "X-Team": "payments"},
    }
    return {"name": name, "events": ["deployment.*"], "target": target, **extra}


def slack(name: str = "deploys") -> dict[str, Any]:
    target = {"type": "slack", "token": SLACK_TOKEN, "channel": "#deploys"}
    return {"name": name, "events": ["deployment.failed"], "target": target}


def slack_webhook(name: str = "alerts") -> dict[str, Any]:
    return {
        "name": name,
        "events": ["*.failed"],
        "target": {"type": "slack_webhook", "url": SLACK_HOOK},
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dispatcher.db'}"
    else:
        async with postgres_database() as database:
            yield database


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with postgres_database() as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(url: str, clock: FakeClock) -> AsyncIterator[SqlStore]:
    store = SqlStore(url, secret_key=KEY, clock=clock)
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture
async def make(url: str) -> AsyncIterator[Callable[[list[dict[str, Any]]], SqlHarness]]:
    made: list[SqlHarness] = []

    def make(subscriptions: list[dict[str, Any]]) -> SqlHarness:
        made.append(SqlHarness(url, subscriptions))
        return made[-1]

    yield make
    for harness in made:
        await harness.store.close()


async def test_an_invalid_change_is_refused_with_the_reason(store: SqlStore) -> None:
    await store.create(subscription("a"))
    with pytest.raises(DuplicateName, match=r"(?=.*'a')(?=.*used)"):
        await store.create(subscription("a", "file.*"))
    with pytest.raises(ValidationError, match="events"):
        await store.create({"name": "b", "events": [], "target": {"type": "log"}})
    assert [(s.name, s.events) for s in await store.load()] == [("a", ["deployment.*"])]
    await store.create(subscription("b"))  # a valid change after invalid ones is taken
    assert [s.name for s in await store.load()] == ["a", "b"]


# -- editing


async def test_a_subscription_is_found_by_its_id_and_by_its_name(store: SqlStore) -> None:
    created = await store.create(webhook(), owner="team-payments", labels={"team": "payments"})
    assert created.subscription == Subscription.model_validate(webhook())
    assert (created.owner, created.labels) == ("team-payments", {"team": "payments"})
    assert await store.get(created.id) == created
    assert await store.get("payments-hook") == created
    assert await store.get("nobody") is None
    assert "hdr-51e0aa" not in repr(created)


async def test_times_are_utc_and_an_update_moves_only_updated_at(
    store: SqlStore, clock: FakeClock
) -> None:
    created_at = clock.now
    created = await store.create(subscription("a"))
    clock.now = created_at.astimezone(timezone(timedelta(hours=2))) + timedelta(minutes=5)
    updated = await store.update("a", {"description": "later"})
    found = await store.get("a")
    assert found is not None
    assert (found.created_at, found.updated_at) == (created_at, created_at + timedelta(minutes=5))
    assert found.created_at.tzinfo == UTC
    assert found.updated_at.tzinfo == UTC
    assert (created.created_at, updated.updated_at) == (found.created_at, found.updated_at)


async def test_list_filters_by_event_target_enabled_and_label(store: SqlStore) -> None:
    await store.create(webhook("a"), labels={"team": "payments"})
    await store.create(slack("b"), labels={"team": "web"})
    await store.create(slack_webhook("c"), labels={"team": "payments", "tier": "1"})
    await store.create({**subscription("d", "file.uploaded"), "enabled": False})

    async def names(**filters: Any) -> list[str]:
        page, _ = await store.list(**filters)
        return [item.subscription.name for item in page]

    assert await names() == ["a", "b", "c", "d"]
    assert await names(event_type="deployment.failed") == ["a", "b", "c"]
    assert await names(event_type="DEPLOYMENT_FAILURE") == ["a", "b", "c"]  # seeds' spelling
    assert await names(event_type="deployment.started") == ["a"]
    assert await names(event_type="FILE.uploaded") == ["d"]
    assert await names(target_type="slack") == ["b"]
    assert await names(enabled=False) == ["d"]
    assert await names(enabled=True, label=("team", "payments")) == ["a", "c"]
    assert await names(label=("tier", "1"), event_type="deployment.failed") == ["c"]
    assert await names(label=("team", "nobody")) == []


async def test_pages_follow_one_another_to_the_end(store: SqlStore) -> None:
    for index in range(9):
        await store.create(subscription(f"s{index}", "file.*" if index % 3 else "deployment.*"))

    async def pages(limit: int, **filters: Any) -> list[list[str]]:
        found, after = [], None
        for _ in range(20):
            page, after = await store.list(limit=limit, after=after, **filters)
            found.append([item.subscription.name for item in page])
            if after is None:
                return found
        raise AssertionError("the pages never ended")

    assert await pages(4) == [["s0", "s1", "s2", "s3"], ["s4", "s5", "s6", "s7"], ["s8"]]
    assert await pages(3) == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6", "s7", "s8"]]
    assert await pages(9) == [[f"s{i}" for i in range(9)]]
    # filtered in Python: read on past the rows that do not match, and end exactly
    assert await pages(1, event_type="deployment.x") == [["s0"], ["s3"], ["s6"]]
    assert await pages(2, event_type="file.x") == [["s1", "s2"], ["s4", "s5"], ["s7", "s8"]]

    first, after = await store.list(limit=2)
    assert await store.delete(first[-1].id)  # a cursor outlives the row it points after
    page, _ = await store.list(limit=2, after=after)
    assert [item.subscription.name for item in page] == ["s2", "s3"]
    with pytest.raises(ValueError, match="cursor"):
        await store.list(after="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.list(limit=0)


async def test_an_update_merges_the_patch_and_keeps_secrets_it_leaves_out(store: SqlStore) -> None:
    created = await store.create(webhook(), owner="payments", labels={"team": "payments"})
    patch = {"description": "new", "target": {"headers": {"X-Team": None}, "timeout_s": 5}}
    updated = await store.update(created.id, patch)
    target = updated.subscription.target
    assert target.type == "webhook"
    assert target.url.get_secret_value() == WEBHOOK_URL
    assert target.secret is not None
    assert target.secret.get_secret_value() == SIGNING_KEY
    assert (target.headers, target.timeout_s) == ({"Authorization": HEADER_VALUE}, 5)
    assert (updated.subscription.description, updated.owner) == ("new", "payments")
    assert updated.labels == {"team": "payments"}
    assert await store.get(created.id) == updated

    renamed = await store.update("payments-hook", {"name": "billing"}, owner=None, labels={})
    assert (renamed.subscription.name, renamed.owner, renamed.labels) == ("billing", None, {})
    removed = await store.update("billing", {"target": {"secret": None}})
    assert removed.subscription.target.type == "webhook"
    assert removed.subscription.target.secret is None


async def test_an_update_is_refused_for_a_taken_name_an_invalid_body_or_no_such_one(
    store: SqlStore,
) -> None:
    await store.create(webhook())
    await store.create(subscription("other"))
    with pytest.raises(DuplicateName, match="'other'"):
        await store.update("payments-hook", {"name": "other"})
    # switching the target's type leaves the webhook's fields in place: invalid, and the error
    # must not show the stored secrets it was given back
    with pytest.raises(ValidationError) as refused:
        await store.update("payments-hook", {"target": {"type": "slack", "channel": "#x"}})
    shown = f"{refused.value} {refused.value.errors()}"
    assert "target" in shown
    assert not [secret for secret in SECRETS if secret in shown]
    with pytest.raises(NotFound, match="'ghost'") as missing:
        await store.update("ghost", {"description": "x"})
    assert isinstance(missing.value, KeyError)
    loaded = await store.get("payments-hook")
    assert loaded is not None
    assert loaded.subscription == Subscription.model_validate(webhook())


async def test_delete_removes_the_subscription_and_its_labels(store: SqlStore, url: str) -> None:
    created = await store.create(subscription("a"), labels={"team": "x"})
    await store.create(subscription("b"), labels={"team": "y"})
    assert await store.delete("a")
    assert await store.get(created.id) is None
    assert not await store.delete("a")
    assert not await store.delete(created.id)
    assert [s.name for s in await store.load()] == ["b"]
    assert len(await raw_rows(url, "subscription_labels")) == 1


async def test_the_version_moves_once_per_change_and_never_for_a_refused_one(
    store: SqlStore,
) -> None:
    assert await store.version() == 0
    created = await store.create(subscription("a"))
    assert await store.version() == 1
    await store.update(created.id, {"description": "x"})
    assert await store.version() == 2
    with contextlib.suppress(DuplicateName):
        await store.create(subscription("a"))
    with contextlib.suppress(ValidationError):
        await store.update("a", {"events": []})
    with contextlib.suppress(NotFound):
        await store.update("ghost", {})
    assert not await store.delete("ghost")
    assert await store.version() == 2
    assert await store.delete("a")
    assert await store.version() == 3


async def test_load_hands_over_disabled_ones_too(store: SqlStore) -> None:
    await store.create(subscription("on"))
    await store.create({**subscription("off"), "enabled": False})
    assert [(s.name, s.enabled) for s in await store.load()] == [("on", True), ("off", False)]


# -- notices


@contextlib.contextmanager
def listening(store: SqlStore) -> Iterator[tuple[asyncio.Queue[None], asyncio.Task[None]]]:
    notices: asyncio.Queue[None] = asyncio.Queue()
    task = asyncio.create_task(store.listen(lambda: notices.put_nowait(None)))
    try:
        yield notices, task
    finally:
        task.cancel()


async def test_listen_hears_a_change_made_through_another_store(postgres_url: str) -> None:
    writer, listener = SqlStore(postgres_url), SqlStore(postgres_url)
    await writer.migrate()
    assert listener.notifies
    with listening(listener) as (notices, task):
        await asyncio.wait_for(notices.get(), 5)  # the first call: listening has begun
        await writer.create(subscription("a"))
        await asyncio.wait_for(notices.get(), 2)
        await writer.delete("a")
        await asyncio.wait_for(notices.get(), 2)
        assert notices.empty()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await writer.close()
    await listener.close()


async def test_listen_raises_when_its_connection_is_lost(postgres_url: str) -> None:
    listener = SqlStore(postgres_url)
    await listener.migrate()
    with listening(listener) as (notices, task):
        await asyncio.wait_for(notices.get(), 5)
        await execute(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        with pytest.raises(ConnectionError, match="lost"):
            await asyncio.wait_for(task, 5)
    await listener.close()


async def test_sqlite_does_not_listen(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'd.db'}")
    assert not store.notifies
    with pytest.raises(NotImplementedError, match="poll"):
        await store.listen(lambda: None)
    await store.close()


# -- migrations


async def test_migrate_builds_an_empty_database_and_again_changes_nothing(url: str) -> None:
    store = SqlStore(url)
    assert await store.current_revision() is None
    await store.migrate()
    assert await store.current_revision() == HEAD
    await store.create(subscription("kept"))
    await store.migrate()
    assert await store.current_revision() == HEAD
    assert [s.name for s in await store.load()] == ["kept"]
    assert await store.version() == 1
    await store.close()


async def test_a_database_at_the_previous_revision_upgrades_keeping_its_subscriptions(
    url: str,
) -> None:
    old = SqlStore(url, secret_key=KEY)
    await old.migrate("0001")  # the schema the first release created
    assert await old.current_revision() == "0001"
    kept = await old.create(webhook(), owner="payments", labels={"env": "prod"})
    await old.create(subscription("other"), owner="search")
    await old.close()

    store = SqlStore(url, secret_key=KEY)
    await store.migrate()
    assert await store.current_revision() == HEAD != "0001"
    assert await schema_differences(url, metadata) == []  # 0002's owner index is there
    found = await store.get(kept.id)
    assert found is not None
    assert (found.subscription, found.owner, found.labels) == (
        kept.subscription,
        "payments",
        {"env": "prod"},
    )
    page, _ = await store.list(owner="payments")
    assert [s.id for s in page] == [kept.id]
    assert await store.version() == 2  # the change counter survived the upgrade
    await store.close()


async def test_the_migrated_schema_is_the_one_the_store_uses(store: SqlStore, url: str) -> None:
    assert await schema_differences(url, metadata) == []


# -- secrets at rest


async def _create_one_of_each(store: SqlStore) -> list[StoredSubscription]:
    return [await store.create(body) for body in (webhook(), slack(), slack_webhook())]


def _secrets_of(subscriptions: list[Subscription]) -> set[str]:
    found = set()
    for sub in subscriptions:
        target = sub.target
        if target.type == "webhook":
            found |= {target.url.get_secret_value(), *target.headers.values()}
            found |= {target.secret.get_secret_value()} if target.secret else set()
        elif target.type == "slack":
            found.add(target.token.get_secret_value())
        elif target.type == "slack_webhook":
            found.add(target.url.get_secret_value())
    return found


async def test_with_a_key_no_secret_is_stored_readable_and_load_gives_them_back(
    store: SqlStore, url: str
) -> None:
    assert store.encrypted
    await _create_one_of_each(store)
    raw = "\n".join(await raw_rows(url, "subscriptions"))
    assert "fernet:" in raw
    assert [secret for secret in SECRETS if secret in raw] == []
    assert "payments" in raw  # what is not secret stays readable (X-Team's is a secret too)
    loaded = list(await store.load())
    assert _secrets_of(loaded) == {*SECRETS, "payments"}
    assert loaded == [Subscription.model_validate(b) for b in (webhook(), slack(), slack_webhook())]


async def test_without_a_key_secrets_are_stored_plain_and_read_back(url: str) -> None:
    store = SqlStore(url)
    await store.migrate()
    assert not store.encrypted
    await _create_one_of_each(store)
    assert WEBHOOK_URL in "\n".join(await raw_rows(url, "subscriptions"))
    assert _secrets_of(list(await store.load())) == {*SECRETS, "payments"}
    keyed = SqlStore(url, secret_key=KEY)  # a key set later still reads the plain rows
    assert _secrets_of(list(await keyed.load())) == {*SECRETS, "payments"}
    await keyed.close()
    await store.close()


async def test_a_row_sealed_with_another_key_is_refused_naming_the_subscription(
    store: SqlStore, url: str
) -> None:
    await store.create(webhook())
    for other in (SqlStore(url, secret_key=OTHER_KEY), SqlStore(url)):
        for read in (other.load, lambda other=other: other.get("payments-hook")):
            with pytest.raises(UnreadableSubscription, match="'payments-hook'") as refused:
                await read()
            said = str(refused.value)
            assert "another key" in said or "no secret key" in said
            assert [s for s in (*SECRETS, KEY, OTHER_KEY) if s in said] == []
            assert refused.value.__cause__ is None
            assert refused.value.__suppress_context__
        await other.close()
