"""Where subscriptions live: the seam the running daemon reads them through.

The App asks a `SubscriptionStore` for the set it matches events against, when it starts and
whenever it is told to look again (SIGHUP today; a file watch, a database notification or a
polled change counter with the stores to come). A store hands over a whole set at a time, so a
change never half-applies: matching uses the old set or the new one, never a mix.

- `YamlStore`: the subscriptions of the config file (inline or `subscriptions_file`), read
  with the same `file:line: field: message` errors as the rest of the config. The default.
- `MemoryStore`: a set held in memory, for tests and for embedding.

A store that cannot produce a valid set raises (`ConfigError` for a file); the App then keeps
the set it has. Stores that people edit through an API (the SQL store) add create, update and
delete to this protocol; what every store must do is held by one contract test suite
(`tests/unit/test_store.py`), run against each implementation.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from dispatcher.config import load_settings
from dispatcher.settings import Settings
from dispatcher.subscriptions.models import Subscription

log = structlog.get_logger(__name__)


class SubscriptionStore(Protocol):
    #: names the store in logs, without secrets: `yaml:/etc/dispatcher/dispatcher.yaml`
    description: str

    async def load(self) -> Sequence[Subscription]:
        """The current set, whole and valid (names unique), or an exception saying why not."""
        ...

    async def version(self) -> Hashable:
        """A token that changes whenever the set may have changed (cheap: polled every second
        or so by every running process); `watch()` compares it between polls."""
        ...

    async def close(self) -> None: ...


class YamlStore:
    """The subscriptions of a config file, read anew on each `load()`.

    `settings` are the ones the daemon started with: a file whose other sections changed since
    is still read (only the subscriptions are applied), with one warning that those changes
    need a restart.
    """

    def __init__(self, path: str | os.PathLike[str], settings: Settings) -> None:
        self._path = os.fspath(path)
        self._settings = settings
        self.description = f"yaml:{self._path}"

    async def version(self) -> Hashable:
        """The config file's and the subscriptions file's size and modification time."""
        files = [self._path]
        if self._settings.subscriptions_file:
            here = os.path.dirname(self._path)
            files.append(os.path.join(here, self._settings.subscriptions_file))
        return tuple(_stat(file) for file in files)

    async def load(self) -> Sequence[Subscription]:
        fresh = load_settings(self._path)
        if changed := _changed_sections(self._settings, fresh):
            log.warning("only subscriptions are reloaded; restart to apply", changed=changed)
        return tuple(fresh.subscriptions)

    async def close(self) -> None:
        return None


class MemoryStore:
    """A set held in memory; `replace()` swaps it, as an edit through an API would."""

    description = "memory"

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        self._subscriptions = _checked(subscriptions)
        self._version = 0

    def replace(self, subscriptions: Iterable[Subscription]) -> None:
        self._subscriptions = _checked(subscriptions)
        self._version += 1

    async def version(self) -> Hashable:
        return self._version

    async def load(self) -> Sequence[Subscription]:
        return self._subscriptions

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class FileSubscription:
    """A config-file subscription seen as a stored one (API, `dispatcher subscriptions`): its
    name is its id, and it has no owner, labels or times."""

    subscription: Subscription
    owner: None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.subscription.name


def _changed_sections(running: Settings, fresh: Settings) -> list[str]:
    """The sections of the file, other than its subscriptions, that differ from the running
    ones (`delivery.allowed_networks`, `smtp:`, the broker...): a reload does not apply them."""
    kept = ("subscriptions", "subscriptions_file")
    return [
        name
        for name in type(running).model_fields
        if name not in kept and getattr(running, name) != getattr(fresh, name)
    ]


def _stat(file: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


async def watch(
    store: SubscriptionStore,
    on_change: Callable[[], object],
    every_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call `on_change()` each time the store's `version()` changes, polling every `every_s`,
    until cancelled. A failing poll is logged once and tried again (the running set stays)."""
    last = await store.version()
    failing = False
    while True:
        await sleep(every_s)
        try:
            now = await store.version()
        except Exception as exc:  # noqa: BLE001 - a database gone: keep the set, keep asking
            if not failing:
                log.warning("cannot read the subscription store's version", error=repr(exc))
            failing = True
            continue
        if failing:
            log.info("the subscription store answers again")
            failing = False
        if now != last:
            last = now
            on_change()


def _checked(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    found = tuple(subscriptions)
    names = [sub.name for sub in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"subscription names used twice: {', '.join(repr(n) for n in twice)}")
    return found
