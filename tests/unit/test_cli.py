"""The command line's conventions, in process (check-config connects nowhere): where the config
comes from, and what is printed where."""

from __future__ import annotations

import json
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


ROUTES = """
subscriptions:
  - name: all-failures
    events: ["deployment.failed"]
    target: {type: log}
  - name: prod-only
    events: ["deployment.*"]
    filter: {environments: ["prod-*"]}
    target: {type: log}
  - name: files
    events: ["file.*"]
    target: {type: log}
  - name: paused
    enabled: false
    events: ["*"]
    target: {type: log}
"""


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return path


def event_file(tmp_path: Path, event_type: str, environment: str | None = None) -> Path:
    from dispatcher.events import encode, new_event

    path = tmp_path / "event.json"
    event = new_event(event_type, "test")
    if environment is not None:
        event["environment"] = environment
    path.write_bytes(encode(event))
    return path


def test_match_says_what_an_event_reaches_and_what_ruled_out_the_others(
    routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = event_file(tmp_path, "deployment.failed", environment="staging")
    assert cli.main(["match", str(event), "-c", str(routes), "-o", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reached"] == ["all-failures"]
    why = {s["subscription"]: s for s in result["subscriptions"]}
    assert why["prod-only"]["ruled_out_by"] == "filter.environments"
    assert (why["prod-only"]["actual"], why["prod-only"]["expected"]) == ("staging", ["prod-*"])
    assert why["files"]["ruled_out_by"] == "events"
    assert why["paused"]["ruled_out_by"] == "enabled"
    assert cli.main(["match", str(event), "-c", str(routes)]) == 0
    text = capsys.readouterr().out
    assert "  + all-failures" in text
    assert "  - prod-only: filter.environments: environment 'staging' does not match 'prod-*'" in (
        text
    )


def test_match_expect_passes_fails_and_nothing_matched_is_exit_3(
    routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = event_file(tmp_path, "deployment.failed", environment="prod-eu")
    argv = ["match", str(event), "-c", str(routes)]
    assert cli.main([*argv, "--expect", "prod-only,all-failures"]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--expect", "all-failures", "-o", "json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "unexpected_match"
    assert error["message"] == "expected all-failures; reached all-failures, prod-only"
    nothing = event_file(tmp_path, "secret.created")
    assert cli.main(["match", str(nothing), "-c", str(routes)]) == 3
    assert "reaches 0 of 4" in capsys.readouterr().out
    assert cli.main(["match", str(nothing), "-c", str(routes), "--expect", ""]) == 0


def test_config_show_never_prints_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = {
        "BROKER_PASSWORD": "br0ker-pw-s3cret",
        "HOOK_KEY": "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        "SLACK_TOKEN": "xoxb-1111-2222-config-show-token",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "c.yaml"
    config.write_text(
        "broker:\n"
        "  url: amqp://guest:${BROKER_PASSWORD}@127.0.0.1:5672/\n"
        "subscriptions:\n"
        "  - name: hook\n"
        '    events: ["*"]\n'
        "    target: {type: webhook, url: 'https://hooks.example.com/T0/very-secret-path',"
        " secret: '${HOOK_KEY}'}\n"
        "  - name: slack\n"
        '    events: ["*"]\n'
        "    target: {type: slack, token: '${SLACK_TOKEN}', channel: '#ops'}\n"
    )
    for output in ("text", "json"):
        assert cli.main(["config", "show", "-c", str(config), "-o", output]) == 0
        out = capsys.readouterr().out
        for secret in [*secrets.values(), "very-secret-path"]:
            assert secret not in out
    settings = {s["key"]: s for s in json.loads(out)["settings"]}
    assert settings["broker.url"] == {
        "key": "broker.url",
        "value": "amqp://guest:***@127.0.0.1:5672/",
        "origin": "$BROKER_PASSWORD",
    }
    assert settings["subscriptions[slack].target.token"]["value"] == "***"
    assert settings["broker.prefetch"]["origin"] == "default"
    assert settings["subscriptions[hook].events"]["origin"] == f"{config}:5"


def test_a_usage_error_is_exit_2_and_a_json_document_when_json_was_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["-o", "json", "status", "--nope"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == {
        "code": "usage",
        "exit": 2,
        "message": "dispatcher: unrecognized arguments: --nope",
    }
    assert "usage: dispatcher" in captured.err
    assert cli.main(["dead-letters", "purge", "--limit", "x"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # text: nothing on stdout
    assert "not a number of dead letters: 'x'" in captured.err


def test_db_upgrade_creates_then_finds_the_schema_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dispatcher.subscriptions.sql import HEAD

    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path / 'subs.db'}'}}\n")
    assert cli.main(["db", "upgrade", "-c", str(config), "-o", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["from"], first["to"]) == (None, HEAD)
    assert first["store"] == f"sqlite:///{tmp_path / 'subs.db'}"
    assert cli.main(["db", "upgrade", "-c", str(config)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"schema {HEAD}, current")
    config.write_text("subscriptions: []\n")
    assert cli.main(["db", "upgrade", "-c", str(config)]) == 2
    assert "store.url names no database" in capsys.readouterr().err


def test_db_upgrade_on_an_unreachable_server_says_so_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'postgresql://app:pg-s3cret-pw@127.0.0.1:{port}/db'}}\n")
    assert cli.main(["db", "upgrade", "-c", str(config), "-o", "json"]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["code"] == "store"
    assert error["message"].startswith(f"postgresql://app:***@127.0.0.1:{port}/db: ")
    assert "pg-s3cret-pw" not in captured.out + captured.err


def test_check_config_and_config_show_name_a_database_store_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("store: {url: 'postgresql://app:pg-s3cret-pw@db.internal/dispatcher'}\n")
    assert cli.main(["check-config", "-c", str(config), "-o", "json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["store"] == "postgresql://app:***@db.internal/dispatcher"
    assert checked["subscriptions"] is None  # not read: check-config connects nowhere
    assert cli.main(["config", "show", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert 'store.url = "postgresql://app:***@db.internal/dispatcher"' in out
    assert "pg-s3cret-pw" not in out


def test_a_malformed_secret_key_is_a_config_error_that_does_not_echo_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", "not-a-fernet-key-but-secret")
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path / 'subs.db'}'}}\n")
    assert cli.main(["run", "-c", str(config)]) == 2  # refused before connecting anywhere
    err = capsys.readouterr().err
    assert err.startswith("$DISPATCHER_SECRET_KEY: the secret key must be 32 bytes")
    assert "not-a-fernet-key-but-secret" not in err
