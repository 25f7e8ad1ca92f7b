"""Every third-party module dispatcher imports is a declared dependency of its own (issue 14,
"supply chain"): one that only arrives through another package can vanish with that package's
next release."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[2]


def _imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "dispatcher").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"dispatcher", "__future__"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["speed"]]
    return {_normalized(re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0]) for req in requirements}


def test_every_imported_module_is_declared_in_pyproject() -> None:
    owners = packages_distributions()
    imported = _imported_top_level_modules()
    assert {"aiormq", "yarl", "pamqp", "amqp"} <= imported  # the scan sees what it must
    undeclared = {
        module: owners.get(module, ["(not installed)"])
        for module in imported
        if not {_normalized(d) for d in owners.get(module, [])} & _declared()
    }
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def _locked(lock: str) -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / lock).read_text(), re.M)
    return {_normalized(name): Version(version) for name, version in pins}


def _satisfies(pinned: Version | None, requirement: Requirement) -> bool:
    return pinned is not None and requirement.specifier.contains(pinned, prereleases=True)


def _requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"]]
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


def test_the_locks_pin_every_declared_dependency_within_its_range() -> None:
    """scripts/test installs requirements-dev.lock and the image requirements.lock, dispatcher
    itself with --no-deps: a dependency added to pyproject.toml without `scripts/lock` would be
    missing from both, and a range tightened past the pin would be silently ignored."""
    for lock, extras in (
        ("requirements.lock", ("speed",)),
        ("requirements-dev.lock", ("speed", "dev")),
    ):
        pins = _locked(lock)
        wrong = {
            str(req): str(pins.get(_normalized(req.name), "(not locked)"))
            for req in _requirements(*extras)
            if not _satisfies(pins.get(_normalized(req.name)), req)
        }
        assert wrong == {}, f"{lock} disagrees with pyproject.toml (run scripts/lock): {wrong}"


def test_the_image_and_the_tests_get_the_same_versions() -> None:
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    differ = {
        name: (str(v), str(dev.get(name))) for name, v in runtime.items() if dev.get(name) != v
    }
    assert differ == {}, f"requirements.lock and requirements-dev.lock pin differently: {differ}"
