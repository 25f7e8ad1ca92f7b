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
