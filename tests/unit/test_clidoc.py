"""What is generated from the parser and the models stays in step with them: the CLI reference,
the config's JSON Schema (which the shipped config points editors at), shell completion."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from dispatcher import cli, clidoc
from dispatcher.cli_output import EXIT_CODES
from dispatcher.introspect import config_schema

ROOT = Path(__file__).parents[2]
REGENERATE = "scripts/docs regenerates it"


def test_the_cli_reference_is_generated_from_the_parser() -> None:
    assert (ROOT / "docs/cli.md").read_text() == clidoc.markdown(), f"regenerate: {REGENERATE}"


def test_the_reference_names_every_command_and_the_exit_codes() -> None:
    text = (ROOT / "docs/cli.md").read_text()
    for command in ("run", "check-config", "match", "config show", "config schema", "completion"):
        assert f"## `dispatcher {command}`" in text
    for code, _ in EXIT_CODES:
        assert f"| {code} |" in text


def test_the_checked_in_schema_is_the_models_and_the_shipped_config_points_at_it() -> None:
    schema_file = ROOT / "docs/config.schema.json"
    assert json.loads(schema_file.read_text()) == config_schema(), f"regenerate: {REGENERATE}"
    shipped = ROOT / "config/dispatcher.yaml"
    first = shipped.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    pointed = (shipped.parent / first.partition("$schema=")[2]).resolve()
    assert pointed == schema_file.resolve()
    jsonschema.validate(yaml.safe_load(shipped.read_text()), json.loads(schema_file.read_text()))


def test_help_shows_the_exit_code_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert "  3    nothing matched or selected" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_parse(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "dead-letters" in script
    assert "check-config" in script
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed: the script was generated, not parsed")
    done = subprocess.run([binary, "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_every_error_code_the_commands_use_is_documented() -> None:
    import re

    sources = "".join(
        (ROOT / "dispatcher" / name).read_text()
        for name in ("cli.py", "deadletter_cli.py", "subscriptions_cli.py")
    )
    used = set(re.findall(r'emit_error\(\s*args,\s*"([a-z_]+)"', sources))
    used |= set(re.findall(r'"code": "([a-z_]+)"', sources))
    assert used >= {"config", "usage", "target_failed", "interrupted", "nothing_matched"}
    documented = set(
        re.findall(r"^\| `([a-z_]+)` \|", (ROOT / "docs/json-output.md").read_text(), re.M)
    )
    assert used <= documented, used - documented


def test_the_checked_in_openapi_document_is_the_apis() -> None:
    from dispatcher.admin.openapi import document

    checked_in = json.loads((ROOT / "docs/openapi.json").read_text())
    assert checked_in == json.loads(json.dumps(document())), f"regenerate: {REGENERATE}"
    assert set(checked_in["paths"]) == {
        "/subscriptions",
        "/subscriptions/{id}",
        "/subscriptions/{id}/test",
        "/events/match",
    }
