"""What every `SubscriptionStore` must do, run against each one (the SQL stores join later): hand
over the whole current set, see a change on the next load, refuse an invalid set with a reason.
The YAML store reads a real file."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.config import load_settings
from dispatcher.errors import ConfigError
from dispatcher.subscriptions.models import Subscription
from dispatcher.subscriptions.store import MemoryStore, SubscriptionStore, YamlStore


def subscription(name: str, events: str = "deployment.*") -> dict[str, Any]:
    return {"name": name, "events": [events], "target": {"type": "log"}}


class Harness(abc.ABC):
    """One store under test, and a way to change what it holds as its users would."""

    store: SubscriptionStore

    @abc.abstractmethod
    def change(self, subscriptions: Sequence[dict[str, Any]]) -> None: ...


class YamlHarness(Harness):
    def __init__(self, tmp_path: Path, subscriptions: Sequence[dict[str, Any]]) -> None:
        self.path = tmp_path / "dispatcher.yaml"
        self.change(subscriptions)
        self.store = YamlStore(self.path, load_settings(self.path))

    def change(self, subscriptions: Sequence[dict[str, Any]]) -> None:
        self.path.write_text(yaml.safe_dump({"subscriptions": list(subscriptions)}))


class MemoryHarness(Harness):
    def __init__(self, tmp_path: Path, subscriptions: Sequence[dict[str, Any]]) -> None:
        self.memory = MemoryStore(_models(subscriptions))
        self.store = self.memory

    def change(self, subscriptions: Sequence[dict[str, Any]]) -> None:
        self.memory.replace(_models(subscriptions))


def _models(subscriptions: Sequence[dict[str, Any]]) -> list[Subscription]:
    return [Subscription.model_validate(sub) for sub in subscriptions]


@pytest.fixture(params=[YamlHarness, MemoryHarness], ids=["yaml", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return lambda subscriptions: request.param(tmp_path, subscriptions)


async def test_load_hands_over_the_whole_set_in_order(make: Any) -> None:
    harness = make([subscription("b"), subscription("a", "file.*")])
    loaded = await harness.store.load()
    assert [(s.name, s.events) for s in loaded] == [
        ("b", ["deployment.*"]),
        ("a", ["file.*"]),
    ]
    await harness.store.close()


async def test_a_change_is_seen_by_the_next_load(make: Any) -> None:
    harness = make([subscription("a")])
    assert [s.name for s in await harness.store.load()] == ["a"]
    harness.change([subscription("a", "file.*"), subscription("c")])
    loaded = await harness.store.load()
    assert [(s.name, s.events) for s in loaded] == [("a", ["file.*"]), ("c", ["deployment.*"])]
    harness.change([])
    assert list(await harness.store.load()) == []


async def test_an_invalid_set_is_refused_with_the_reason(make: Any) -> None:
    harness = make([subscription("a")])

    async def change_and_load() -> None:  # one store refuses the change, another the load
        harness.change([subscription("a"), subscription("a")])
        await harness.store.load()

    with pytest.raises((ConfigError, ValueError), match=r"(?s)(?=.*'a')(?=.*used)"):
        await change_and_load()
    harness.change([subscription("b")])  # a valid set after an invalid one is taken
    assert [s.name for s in await harness.store.load()] == ["b"]


def test_a_store_describes_itself_without_secrets(make: Any) -> None:
    harness = make([subscription("a")])
    assert harness.store.description in ("memory", f"yaml:{getattr(harness, 'path', '')}")
