"""The SQL subscription store: one code path for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Users write `sqlite:///path.db` or `postgresql://user:password@host:port/db`; `sql_engine.py`
picks the async driver. A row keeps a subscription's body as written with its secrets split out
(sealed when a key is given: `sealing.py`), and the columns `list` filters on. Every create,
update and delete first bumps the one-row counter `subscriptions_version` in its own transaction,
so writers queue on that row and the counter moves once per committed change; on PostgreSQL the
same transaction sends `NOTIFY dispatcher_subscriptions` (payload: the new version), delivered
at commit. Rows are listed and loaded in creation order (`seq`, a sequence number).

    DispatcherError
     +-- DuplicateName           a create or rename to a name another subscription has
     +-- NotFound (a KeyError)   an update of an id or name that is not stored
     +-- UnreadableSubscription  a row that cannot be read back: its secrets were sealed with
                                 another key, or its body no longer validates
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatcher import migrations
from dispatcher.errors import DispatcherError
from dispatcher.subscriptions import sql_schema as schema
from dispatcher.subscriptions.bodies import join_secrets, merge_patch, split_secrets
from dispatcher.subscriptions.editing import (
    MAX_PAGE,
    checked_labels,
    checked_owner,
    cursor_position,
    event_filter,
    page_cursor,
    validated,
)
from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.sealing import CannotUnseal, SecretBox
from dispatcher.subscriptions.sql_engine import async_url, engine_for
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget, validation_context

#: the newest schema revision, which `SqlStore.migrate()` brings a database to
HEAD = migrations.HEAD
#: the PostgreSQL channel every change is announced on
CHANNEL = "dispatcher_subscriptions"
_MIGRATION_LOCK = 0x64697370  # "disp": replicas starting together migrate one after the other


class DuplicateName(DispatcherError):
    """Another subscription already has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"subscription name {name!r} is already used")


class NotFound(DispatcherError, KeyError):
    """No subscription has this id or name."""

    def __init__(self, id_or_name: str) -> None:
        self.id_or_name = id_or_name
        super().__init__(f"no subscription has the id or name {id_or_name!r}")

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


class UnreadableSubscription(DispatcherError):
    """A stored subscription that cannot be read back; the message names it, never its secrets."""


class _Keep(enum.Enum):
    KEEP = "keep"


#: `update(owner=KEEP, labels=KEEP)`, the defaults: leave them as they are
KEEP = _Keep.KEEP


class _Unchanged(Exception):
    """Rolls back a change that turned out to change nothing, so the version stays."""


@dataclass(frozen=True, repr=False)
class StoredSubscription:
    """A subscription as stored: its id, who owns it, its labels, and when it was written."""

    id: str
    subscription: Subscription
    owner: str | None
    labels: Mapping[str, str]
    created_at: datetime  # UTC, aware
    updated_at: datetime

    def __repr__(self) -> str:  # the subscription's own repr shows a webhook's header values
        name = self.subscription.name
        return f"StoredSubscription(id={self.id!r}, name={name!r}, owner={self.owner!r})"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Subscriptions in SQLite or PostgreSQL, edited one at a time and loaded as a whole.

    `secret_key` (a Fernet key, from DISPATCHER_SECRET_KEY) seals secrets at rest; without one
    they are stored in plain text and `encrypted` is False. `clock` gives aware times. Templates
    are checked under `template_budget` when written and when read.
    """

    def __init__(
        self,
        url: str,
        *,
        secret_key: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        template_budget: TemplateBudget = DEFAULT_BUDGET,
    ) -> None:
        self._budget = template_budget
        self._box = SecretBox(secret_key)
        engine_url = async_url(url)
        self.description = make_url(url).render_as_string(hide_password=True)
        self._postgres = engine_url.get_backend_name() == "postgresql"
        self._clock = clock
        self._engine = engine_for(engine_url)

    @property
    def encrypted(self) -> bool:
        """Whether secrets are sealed at rest (a secret key was given)."""
        return self._box.encrypted

    @property
    def notifies(self) -> bool:
        """Whether `listen` works here (PostgreSQL); otherwise poll `version()`."""
        return self._postgres

    async def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema to `HEAD` (or an older `revision`), in one transaction
        where the database allows."""
        async with self._engine.begin() as conn:
            if self._postgres:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            await conn.run_sync(migrations.upgrade, revision)

    async def current_revision(self) -> str | None:
        async with self._engine.connect() as conn:
            return await conn.run_sync(migrations.current)

    async def version(self) -> int:
        """The change counter: moves by one with each committed create, update or delete."""
        async with self._engine.connect() as conn:
            query = sa.select(schema.version.c.version).where(
                schema.version.c.id == schema.VERSION_ROW
            )
            return int((await conn.execute(query)).scalar_one())

    async def listen(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` once listening has begun (so a change made while no one listened is
        not missed), then after each committed change, until cancelled.

        PostgreSQL: LISTENs on a connection of its own and raises ConnectionError when that
        connection is lost (listen again; poll `version()` meanwhile). SQLite cannot tell other
        processes: raises NotImplementedError at once (`notifies` says which to expect).
        """
        if not self._postgres:
            raise NotImplementedError("SQLite sends no change notifications: poll version()")
        async with self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg's own
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def notified(*_: object) -> None:
                on_change()

            def terminated(*_: object) -> None:
                if not lost.done():
                    lost.set_result(None)

            driver.add_termination_listener(terminated)
            await driver.add_listener(CHANNEL, notified)
            try:
                on_change()
                await lost
            finally:
                driver.remove_termination_listener(terminated)
                if not driver.is_closed():
                    await driver.remove_listener(CHANNEL, notified)
        raise ConnectionError("lost the PostgreSQL connection listening for subscription changes")

    async def create(
        self,
        body: Mapping[str, Any],
        *,
        owner: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> StoredSubscription:
        """Store a new subscription. ValidationError (without input values) for a bad body."""
        subscription = validated(body, self._budget)
        owner = checked_owner(owner)
        label_map = checked_labels(labels or {})
        now = self._now()
        stored = StoredSubscription(str(uuid.uuid4()), subscription, owner, label_map, now, now)
        async with self._change() as conn:
            try:
                await conn.execute(
                    sa.insert(schema.subscriptions).values(
                        id=stored.id,
                        owner=owner,
                        created_at=now,
                        updated_at=now,
                        **self._columns(subscription),
                    )
                )
            except IntegrityError:
                raise DuplicateName(subscription.name) from None
            await schema.write_labels(conn, stored.id, label_map)
        return stored

    async def get(self, id_or_name: str) -> StoredSubscription | None:
        async with self._engine.connect() as conn:
            row = await schema.find_row(conn, id_or_name)
            if row is None:
                return None
            found = await schema.labels_of(conn, [row.id])
        return self._stored(row, found.get(row.id, {}))

    async def list(
        self,
        *,
        event_type: str | None = None,
        target_type: str | None = None,
        enabled: bool | None = None,
        label: tuple[str, str] | None = None,
        owner: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[builtins.list[StoredSubscription], str | None]:
        """One page of subscriptions in creation order, and the cursor of the next (or None).

        `event_type` keeps those whose `events` patterns match it; `label` is (key, value);
        `owner` keeps one team's.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE}")
        query = schema.listing(target_type=target_type, enabled=enabled, label=label, owner=owner)
        wanted = event_filter(event_type)
        position = 0 if after is None else cursor_position(after)
        found: builtins.list[Row[Any]] = []
        batch = limit + 1  # one more than a page tells whether another page follows
        async with self._engine.connect() as conn:
            while len(found) <= limit:  # the event filter is applied here, so read on
                rows = (
                    await conn.execute(
                        query.where(schema.subscriptions.c.seq > position).limit(batch)
                    )
                ).all()
                found.extend(row for row in rows if wanted(row.events))
                if len(rows) < batch:
                    break
                position = rows[-1].seq
                batch = min(batch * 2, MAX_PAGE)
            page = found[:limit]
            label_maps = await schema.labels_of(conn, [row.id for row in page])
        following = page_cursor(page[-1].seq) if len(found) > limit else None
        return [self._stored(row, label_maps.get(row.id, {})) for row in page], following

    async def update(
        self,
        id_or_name: str,
        patch: Mapping[str, Any],
        *,
        owner: str | _Keep | None = KEEP,
        labels: Mapping[str, str] | _Keep | None = KEEP,
    ) -> StoredSubscription:
        """Apply a JSON merge patch (RFC 7386) to the body and validate the result whole; a
        secret the patch leaves out keeps its stored value. `labels` replaces them all (None: none);
        `owner=None` clears the owner."""
        new_owner = owner if isinstance(owner, _Keep) else checked_owner(owner)
        new_labels = labels if isinstance(labels, _Keep) else checked_labels(labels or {})
        async with self._change() as conn:
            row = await schema.find_row(conn, id_or_name)
            if row is None:
                raise NotFound(id_or_name)
            subscription = validated(merge_patch(self._body(row), patch), self._budget)
            kept_owner: str | None = row.owner if isinstance(new_owner, _Keep) else new_owner
            now = self._now()
            try:
                await conn.execute(
                    sa.update(schema.subscriptions)
                    .where(schema.subscriptions.c.id == row.id)
                    .values(owner=kept_owner, updated_at=now, **self._columns(subscription))
                )
            except IntegrityError:
                raise DuplicateName(subscription.name) from None
            if isinstance(new_labels, _Keep):
                new_labels = (await schema.labels_of(conn, [row.id])).get(row.id, {})
            else:
                await schema.write_labels(conn, row.id, new_labels)
        return StoredSubscription(row.id, subscription, kept_owner, new_labels, row.created_at, now)

    async def delete(self, id_or_name: str) -> bool:
        """Remove a subscription; False (and no change counted) when there is none such."""
        try:
            async with self._change() as conn:
                row = await schema.find_row(conn, id_or_name)
                if row is None:
                    raise _Unchanged
                await schema.delete_row(conn, row.id)
        except _Unchanged:
            return False
        return True

    async def load(self) -> Sequence[Subscription]:
        """Every subscription, enabled or not, in creation order, read in one statement."""
        query = sa.select(schema.subscriptions).order_by(schema.subscriptions.c.seq)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return tuple(self._subscription(row) for row in rows)

    async def close(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def _change(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that counts as one change: bumps the version first, then yields."""
        async with self._engine.begin() as conn:
            bumped = await conn.execute(
                sa.update(schema.version)
                .where(schema.version.c.id == schema.VERSION_ROW)
                .values(version=schema.version.c.version + 1)
                .returning(schema.version.c.version)
            )
            counted = bumped.scalar_one()  # also proves the schema has its counter row
            if self._postgres:
                await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, str(counted))))
            yield conn

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must give timezone-aware times")
        return now.astimezone(UTC)

    def _columns(self, subscription: Subscription) -> dict[str, Any]:
        body, secrets = split_secrets(subscription)
        return {
            "name": subscription.name,
            "enabled": subscription.enabled,
            "target_type": subscription.target.type,
            "events": list(subscription.events),
            "body": body,
            "secrets": {pointer: self._box.seal(value) for pointer, value in secrets.items()},
        }

    def _body(self, row: Row[Any]) -> dict[str, Any]:
        try:
            secrets = {pointer: self._box.open(value) for pointer, value in row.secrets.items()}
            return join_secrets(row.body, secrets)
        except (CannotUnseal, ValueError) as error:  # neither message shows a secret
            raise UnreadableSubscription(
                f"subscription {row.name!r} (id {row.id}): {error}"
            ) from None

    def _subscription(self, row: Row[Any]) -> Subscription:
        try:
            context = validation_context(self._budget)
            return Subscription.model_validate(self._body(row), context=context)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                for problem in error.errors(include_url=False, include_input=False)
            )
            raise UnreadableSubscription(
                f"subscription {row.name!r} (id {row.id}) no longer validates: {problems}"
            ) from None

    def _stored(self, row: Row[Any], label_map: Mapping[str, str]) -> StoredSubscription:
        return StoredSubscription(
            row.id, self._subscription(row), row.owner, label_map, row.created_at, row.updated_at
        )
