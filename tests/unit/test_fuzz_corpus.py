"""Every checked-in seed of every fuzz target (`fuzz/fuzz_*.py`) passes that target's check, run
here without atheris: the corpus stays honest, and each finding kept in it stays fixed."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

FUZZ = Path(__file__).parents[2] / "fuzz"
TARGETS = sorted(path.stem.removeprefix("fuzz_") for path in FUZZ.glob("fuzz_*.py"))
SEEDS = [
    pytest.param(name, seed, id=f"{name}/{seed.name}")
    for name in TARGETS
    for seed in sorted((FUZZ / "corpus" / name).glob("*"))
]


def target(name: str) -> Callable[[bytes], None]:
    check: Callable[[bytes], None] = importlib.import_module(f"fuzz.fuzz_{name}").check
    return check


@pytest.mark.parametrize("name", TARGETS)
def test_each_target_has_a_small_seed_corpus(name: str) -> None:
    seeds = list((FUZZ / "corpus" / name).glob("*"))
    assert 10 <= len(seeds) <= 50, f"fuzz/corpus/{name}/ holds {len(seeds)} seeds"
    assert sum(seed.stat().st_size for seed in seeds) < 100_000


@pytest.mark.parametrize(("name", "seed"), SEEDS)
def test_the_seed_passes_its_target(name: str, seed: Path) -> None:
    target(name)(seed.read_bytes())
