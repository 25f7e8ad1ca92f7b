"""The command line's conventions, in process (check-config connects nowhere): where the config
comes from, and what is printed where."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatcher import cli

SHIPPED = Path(__file__).parents[2] / "config" / "dispatcher.yaml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "dispatcher.yaml"
    shutil.copy(SHIPPED, path)
    return path


@pytest.fixture(autouse=True)
def no_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $DISPATCHER_CONFIG, and a default path that does not exist, unless a test says so."""
    monkeypatch.delenv("DISPATCHER_CONFIG", raising=False)
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(tmp_path / "absent" / "dispatcher.yaml"))


@pytest.mark.parametrize("before", [True, False])
def test_config_is_accepted_before_or_after_the_command(
    config: Path, before: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-c", str(config), "check-config"] if before else ["check-config", "-c", str(config)]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.startswith(f"{config}: OK: 1 subscription")


def test_after_the_command_wins_over_before(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["--config", str(tmp_path / "nope.yaml"), "check-config", "-c", str(config)]) == 0
    )
    assert capsys.readouterr().out.startswith(f"{config}: OK")


def test_then_the_environment_then_the_default_path(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPATCHER_CONFIG", str(config))
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: OK")
    monkeypatch.delenv("DISPATCHER_CONFIG")
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(config))
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: OK")


def test_no_config_anywhere_is_a_usage_error_naming_what_was_tried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no config file: tried --config (not given), $DISPATCHER_CONFIG (not set), " in (
        captured.err
    )
    assert f"{cli.DEFAULT_CONFIG} (absent)" in captured.err
