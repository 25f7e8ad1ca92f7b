"""`dispatcher subscriptions ...` in process, on a real SQLite file (and once on PostgreSQL): CRUD,
import by name, export and back, secrets never printed, the config file's subscriptions read but
never written, and the exit codes and `-o json` documents, read field by field."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher import cli
from dispatcher.config import load_settings
from dispatcher.events import encode, new_event
from dispatcher.subscriptions.bodies import revealed_body
from dispatcher.subscriptions.sql import SqlStore
from dispatcher.subscriptions_cli import READ_ONLY
from tests.sql_support import KEY, postgres_database

pytestmark = pytest.mark.integration

SIGNING_KEY = "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="
SLACK_TOKEN = "xoxb-1111-2222-cli-slack-token"
HOOK_URL = "https://hooks.example.com/ops?token=query-secret-123"
HEADER = "Bearer header-secret-value"
SECRETS = (SIGNING_KEY, SLACK_TOKEN, "query-secret-123", "header-secret-value")

Capture = pytest.CaptureFixture[str]


def ops(**extra: Any) -> dict[str, Any]:
    target = {"type": "webhook", "url": HOOK_URL, "secret": SIGNING_KEY}
    return {"name": "ops", "events": ["deployment.*"], "target": target, **extra}


def chat(**extra: Any) -> dict[str, Any]:
    target = {"type": "slack", "token": SLACK_TOKEN, "channel": "#ops"}
    return {"name": "chat", "events": ["*"], "target": target, **extra}


def quiet(name: str = "quiet", **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": ["file.*"], "target": {"type": "log"}, **extra}


def store_config(folder: Path, name: str = "subs") -> Path:
    config = folder / f"{name}.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{folder / name}.db'}}\n")
    return config


def write(path: Path, data: Any) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def run(capsys: Capture, *args: str) -> tuple[int, str, str]:
    code = cli.main(["subscriptions", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: Capture, *args: str) -> tuple[int, Any]:
    code, out, err = run(capsys, *args, "-o", "json")
    assert out, err
    return code, json.loads(out)


def stored(config: Path) -> dict[str, dict[str, Any]]:
    """Each stored subscription's body, secrets in clear, read with the store itself."""
    url = yaml.safe_load(config.read_text())["store"]["url"]

    async def read() -> dict[str, dict[str, Any]]:
        store = SqlStore(url, secret_key=os.environ.get("DISPATCHER_SECRET_KEY"))
        try:
            return {sub.name: revealed_body(sub) for sub in await store.load()}
        finally:
            await store.close()

    return asyncio.run(read())


def exercise_crud(config: Path, capsys: Capture) -> None:
    c = ("-c", str(config))
    new = write(config.parent / "new.yaml", [ops(owner="team-a", labels={"env": "prod"}), chat()])
    code, added = run_json(capsys, "add", new, *c)
    assert code == 0
    first, second = added["created"]
    assert (first["name"], second["name"]) == ("ops", "chat")
    uuid.UUID(first["id"])
    assert first["target"] == {
        "type": "webhook",
        "url": "****" + HOOK_URL[-4:],
        "secret": "****" + SIGNING_KEY[-4:],
    }
    assert (first["owner"], first["labels"]) == ("team-a", {"env": "prod"})
    assert first["created_at"] == first["updated_at"]
    assert (second["owner"], second["labels"]) == (None, {})

    code, out, _ = run(capsys, "list", *c)
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["NAME", "TARGET", "EVENTS", "ENABLED", "OWNER"],
        ["ops", "webhook", "deployment.*", "yes", "team-a"],
        ["chat", "slack", "#ops", "*", "yes", "-"],
        ["2", "subscriptions"],
    ]
    code, page = run_json(capsys, "list", *c)
    assert page == {"items": [first, second], "next_cursor": None}
    assert run_json(capsys, "list", "--owner", "team-a", *c)[1]["items"] == [first]
    for ident in (first["id"], "ops"):
        assert run_json(capsys, "show", ident, *c) == (0, first)

    code, edited = run_json(
        capsys,
        "edit",
        "ops",
        *("--set", "target.timeout_s=3", "--set", "labels.team=sre"),
        *("--set", "description=paged at night", *c),
    )
    assert code == 0
    assert edited["changed"] is True
    view = edited["subscription"]
    assert view["target"]["timeout_s"] == 3.0
    assert view["target"]["secret"] == first["target"]["secret"]  # kept
    assert (view["description"], view["labels"]) == (
        "paged at night",
        {"env": "prod", "team": "sre"},
    )

    # what `show -o json` printed, sent back as a patch: masks and read-only keys are kept
    patch = config.parent / "p.json"
    patch.write_text(json.dumps({**view, "enabled": False}))
    code, edited = run_json(capsys, "edit", "ops", "--patch", str(patch), *c)
    assert (code, edited["changed"], edited["subscription"]["enabled"]) == (0, True, False)
    assert stored(config)["ops"]["target"]["secret"] == SIGNING_KEY
    assert stored(config)["ops"]["target"]["url"] == HOOK_URL

    code, again = run_json(capsys, "disable", "ops", *c)
    assert (code, again["changed"]) == (0, False)
    code, out, _ = run(capsys, "enable", first["id"], *c)
    assert (code, out.strip()) == (0, f"enabled ops (id {first['id']})")

    code, removed = run_json(capsys, "remove", "chat", "--yes", *c)
    assert (code, removed) == (0, {"id": second["id"], "name": "chat", "removed": True})
    code, gone = run_json(capsys, "show", "chat", *c)
    assert (code, gone["error"]["code"]) == (2, "unknown_subscription")
    assert [s["name"] for s in run_json(capsys, "list", *c)[1]["items"]] == ["ops"]


def test_crud_on_a_sqlite_file(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", KEY)  # sealed at rest, shown the same
    exercise_crud(store_config(tmp_path), capsys)


async def test_crud_on_postgresql(tmp_path: Path, capsys: Capture) -> None:
    async with postgres_database() as url:
        config = tmp_path / "pg.yaml"
        config.write_text(f"store: {{url: '{url}'}}\n")
        await asyncio.to_thread(exercise_crud, config, capsys)  # the CLI runs its own loop


def test_import_is_idempotent_by_name(tmp_path: Path, capsys: Capture) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    first = write(tmp_path / "one.yaml", [ops(owner="team-a"), quiet()])
    code, report = run_json(capsys, "import", first, *c)
    assert code == 0
    assert report == {
        "dry_run": False,
        "created": ["ops", "quiet"],
        "updated": [],
        "unchanged": [],
        "counts": {"created": 2, "updated": 0, "unchanged": 0},
    }
    assert run_json(capsys, "import", first, *c)[1]["unchanged"] == ["ops", "quiet"]

    # ops changes (its owner is left out: kept), quiet is the same written otherwise, chat is new
    changed = ops(description="now with a description")
    second = write(tmp_path / "two.yaml", [changed, quiet(enabled=True, burst=1), chat()])
    code, out, _ = run(capsys, "import", second, "--dry-run", *c)
    assert out.splitlines() == [
        "would create 1: chat",
        "would update 1: ops",
        "would leave unchanged 1: quiet",
    ]
    assert set(stored(config)) == {"ops", "quiet"}  # a dry run writes nothing
    code, report = run_json(capsys, "import", second, *c)
    assert (report["created"], report["updated"], report["unchanged"]) == (
        ["chat"],
        ["ops"],
        ["quiet"],
    )
    assert stored(config)["ops"] == changed
    assert run_json(capsys, "show", "ops", *c)[1]["owner"] == "team-a"
    assert run_json(capsys, "import", second, *c)[1]["counts"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 3,
    }
    # a field the file no longer has is removed, not kept
    write(tmp_path / "two.yaml", [ops(), quiet(), chat()])
    assert run_json(capsys, "import", str(tmp_path / "two.yaml"), *c)[1]["updated"] == ["ops"]
    assert "description" not in stored(config)["ops"]


def test_export_is_read_back_by_import_and_by_the_config_loader(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = store_config(tmp_path, "source")
    headers = {"Authorization": HEADER}
    literal = quiet(description="costs $${NOT_A_VARIABLE} a month")  # `add` reads `$${` as `${`
    bodies = [ops(target={**ops()["target"], "headers": headers}), chat(), literal]
    assert run(capsys, "add", write(tmp_path / "in.yaml", bodies), "-c", str(source))[0] == 0
    exported = tmp_path / "exported.yaml"

    code, data = run_json(capsys, "export", str(exported), "-c", str(source))
    assert code == 0
    secret_of = {
        "DISPATCHER_SECRET_OPS_TARGET_URL": ("ops", "target.url", HOOK_URL),
        "DISPATCHER_SECRET_OPS_TARGET_SECRET": ("ops", "target.secret", SIGNING_KEY),
        "DISPATCHER_SECRET_OPS_TARGET_HEADERS_AUTHORIZATION": (
            "ops",
            "target.headers.Authorization",
            HEADER,
        ),
        "DISPATCHER_SECRET_CHAT_TARGET_TOKEN": ("chat", "target.token", SLACK_TOKEN),
    }
    assert data["file"] == str(exported)
    assert [(v["name"], v["subscription"], v["field"]) for v in data["variables"]] == [
        (name, sub, at) for name, (sub, at, _) in secret_of.items()
    ]
    text = exported.read_text()
    assert yaml.safe_load(text) == data["subscriptions"]
    assert data["subscriptions"][0]["target"]["url"] == "${DISPATCHER_SECRET_OPS_TARGET_URL}"
    assert data["subscriptions"][2]["description"] == "costs $${NOT_A_VARIABLE} a month"
    code, out, err = run(capsys, "export", "-c", str(source))
    assert (code, out) == (0, text)  # the same YAML on stdout
    for name in secret_of:
        assert name in err

    target = store_config(tmp_path, "target")
    code, failed = run_json(capsys, "import", str(exported), "-c", str(target))
    assert (code, failed["error"]["code"]) == (2, "invalid_subscription")
    assert (
        "subscriptions[ops].target.url: environment variable DISPATCHER_SECRET_OPS_TARGET_URL"
        " is not set" in failed["error"]["problems"]
    )
    for name, (_, _, secret) in secret_of.items():
        monkeypatch.setenv(name, secret)
    assert run_json(capsys, "import", str(exported), "-c", str(target))[1]["counts"]["created"] == 3
    assert (
        run_json(capsys, "import", str(exported), "-c", str(target))[1]["counts"]["unchanged"] == 3
    )
    assert stored(target) == stored(source)
    assert stored(target)["quiet"]["description"] == "costs ${NOT_A_VARIABLE} a month"

    as_file = tmp_path / "from-file.yaml"
    as_file.write_text(f"subscriptions_file: {exported.name}\n")
    settings = load_settings(as_file)
    assert {sub.name: revealed_body(sub) for sub in settings.subscriptions} == stored(source)


def test_no_secret_is_ever_printed(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    hook = ops(target={**ops()["target"], "headers": {"Authorization": HEADER}})
    bodies = write(tmp_path / "in.yaml", [hook, chat()])
    bad = write(
        tmp_path / "bad.yaml",
        {**chat(), "events": [], "target": {**chat()["target"], "x": SLACK_TOKEN}},
    )
    event = tmp_path / "event.json"
    event.write_bytes(encode(new_event("deployment.failed", "test")))
    printed = []
    for args in (
        ("add", bodies),
        ("add", bodies),  # names taken
        ("add", bad),
        ("list",),
        ("show", "ops"),
        ("show", "chat"),
        ("edit", "chat", "--set", f"target.token={SLACK_TOKEN}-2", "--set", 'target.channel=""'),
        ("edit", "chat", "--set", f"target.token={SLACK_TOKEN}-2"),
        ("edit", "ops", "--set", "target.secret=whsec_c2hvcnQ="),
        ("disable", "ops"),
        ("export",),
        ("export", str(tmp_path / "out.yaml")),
        ("import", str(tmp_path / "out.yaml")),
        ("match", str(event)),
    ):
        for output in ("text", "json"):
            _, out, err = run(capsys, *args, *c, "-o", output)
            printed.append(out + err)
    assert "target.secret: signing key is too short" in "".join(printed)
    everything = "".join(printed) + (tmp_path / "out.yaml").read_text()
    for secret in (*SECRETS, f"{SLACK_TOKEN}-2"):
        assert secret not in everything


def test_the_config_files_subscriptions_are_read_and_never_written(
    tmp_path: Path, capsys: Capture
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"subscriptions": [quiet("b"), ops(), quiet("a", enabled=False)]})
    )
    c = ("-c", str(config))
    code, out, _ = run(capsys, "list", *c)
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "a", "b", "ops", "3"]
    code, page = run_json(capsys, "list", "--limit", "2", "--enabled", "true", *c)
    assert [item["name"] for item in page["items"]] == ["b", "ops"]
    assert page["next_cursor"] is None
    code, one = run_json(capsys, "show", "ops", *c)
    assert code == 0
    assert (one["id"], one["owner"], one["labels"], one["created_at"]) == ("ops", None, {}, None)
    assert one["target"]["secret"] == "****" + SIGNING_KEY[-4:]
    code, data = run_json(capsys, "export", *c)
    assert [v["name"] for v in data["variables"]] == [
        "DISPATCHER_SECRET_OPS_TARGET_URL",
        "DISPATCHER_SECRET_OPS_TARGET_SECRET",
    ]
    event = tmp_path / "event.json"
    event.write_bytes(encode(new_event("file.uploaded", "test")))
    code, matched = run_json(capsys, "match", str(event), *c)
    assert (code, matched["reached"]) == (0, ["b"])

    new = write(tmp_path / "new.yaml", [chat()])
    for args in (
        ("add", new),
        ("import", new),
        ("edit", "ops", "--set", "enabled=false"),
        ("enable", "a"),
        ("disable", "b"),
        ("remove", "ops", "--yes"),
    ):
        code, out, err = run(capsys, *args, *c)
        assert (code, out) == (2, ""), args
        assert READ_ONLY in err
        code, refused = run_json(capsys, *args, *c)
        assert refused == {"error": {"code": "read_only", "exit": 2, "message": READ_ONLY}}
    assert "chat" not in config.read_text()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_remove_asks_on_a_terminal_and_refuses_without_one(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    run(capsys, "add", write(tmp_path / "in.yaml", [quiet()]), *c)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = run(capsys, "remove", "quiet", *c)
    assert (code, out) == (2, "")
    assert "--yes" in err
    code, refused = run_json(capsys, "remove", "quiet", *c)
    assert (code, refused["error"]["code"]) == (2, "usage")
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, answer = run_json(capsys, "remove", "quiet", *c)
    assert (code, answer["removed"]) == (0, False)
    assert set(stored(config)) == {"quiet"}
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, err = run(capsys, "remove", "quiet", *c)
    assert code == 0
    assert "remove the subscription quiet (id " in err
    assert out.startswith("removed quiet (id ")
    assert stored(config) == {}


def test_exit_codes_of_invalid_taken_unknown_and_unreadable(
    tmp_path: Path, capsys: Capture
) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    bad = {"name": "bad", "events": [], "target": {"type": "webhook", "url": "ftp://x"}}
    code, error = run_json(capsys, "add", write(tmp_path / "bad.yaml", bad), *c)
    assert code == 2
    assert error["error"]["code"] == "invalid_subscription"
    assert error["error"]["problems"] == [
        "events: List should have at least 1 item after validation, not 0",
        "target.url: must be an absolute http:// or https:// URL",
    ]
    entries = [quiet(), quiet(), quiet("q", labels={"bad key": "x"}), {"events": ["*"]}]
    code, error = run_json(capsys, "add", write(tmp_path / "many.yaml", entries), *c)
    assert code == 2
    problems = error["error"]["problems"]
    assert problems[0] == "subscriptions[quiet].name: 'quiet' is in the file twice"
    assert problems[1].startswith("subscriptions[q].labels: label key 'bad key' must be")
    assert problems[2:] == [
        "subscriptions[3].name: Field required",
        "subscriptions[3].target: Field required",
    ]
    assert run_json(capsys, "list", *c)[1]["items"] == []  # nothing of an invalid file added

    assert run(capsys, "add", write(tmp_path / "ok.yaml", quiet()), *c)[0] == 0
    code, error = run_json(capsys, "add", str(tmp_path / "ok.yaml"), *c)
    assert (code, error["error"]["code"]) == (1, "duplicate_name")
    assert run(capsys, "add", write(tmp_path / "other.yaml", quiet("other")), *c)[0] == 0
    code, error = run_json(capsys, "edit", "other", "--set", "name=quiet", *c)
    assert (code, error["error"]["code"]) == (1, "duplicate_name")
    for args in (("show", "nope"), ("enable", "nope"), ("remove", "nope", "-y")):
        code, error = run_json(capsys, *args, *c)
        assert error["error"] == {
            "code": "unknown_subscription",
            "exit": 2,
            "message": "no subscription has the id or name 'nope'",
        }
    code, error = run_json(capsys, "add", str(tmp_path / "absent.yaml"), *c)
    assert (code, error["error"]["code"]) == (2, "usage")
    code, error = run_json(capsys, "list", "--cursor", "nonsense", *c)
    assert (code, error["error"]["code"]) == (2, "usage")
    code, out, err = run(capsys, "edit", "quiet", *c)  # neither --set nor --patch
    assert (code, out) == (2, "")
    assert "one of the arguments --set --patch is required" in err


def test_list_filters_and_pages(tmp_path: Path, capsys: Capture) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    bodies = [
        ops(labels={"env": "prod"}),
        chat(enabled=False),
        quiet("q1", labels={"env": "dev"}),
        quiet("q2"),
        quiet("q3"),
    ]
    run(capsys, "add", write(tmp_path / "in.yaml", bodies), *c)

    def names(*args: str) -> tuple[list[str], str | None]:
        code, page = run_json(capsys, "list", *args, *c)
        assert code == 0
        return [item["name"] for item in page["items"]], page["next_cursor"]

    assert names("--event-type", "deployment.failed") == (["ops", "chat"], None)
    assert names("--target-type", "log") == (["q1", "q2", "q3"], None)
    assert names("--enabled", "false") == (["chat"], None)
    assert names("--label", "env=prod") == (["ops"], None)
    first, cursor = names("--limit", "2")
    assert first == ["ops", "chat"]
    assert cursor is not None
    assert names("--limit", "2", "--cursor", cursor)[0] == ["q1", "q2"]
    assert names("--limit", "0") == (["ops", "chat", "q1", "q2", "q3"], None)
    code, out, _ = run(capsys, "list", "--limit", "2", *c)
    assert code == 0
    assert out.splitlines()[-1] == f"2 subscriptions; the next page: --cursor {cursor}"


def test_match_reads_the_store(tmp_path: Path, capsys: Capture) -> None:
    config = store_config(tmp_path)
    c = ("-c", str(config))
    run(capsys, "add", write(tmp_path / "in.yaml", [ops(), quiet()]), *c)
    event = tmp_path / "event.json"
    event.write_bytes(encode(new_event("deployment.failed", "test")))
    code, matched = run_json(capsys, "match", str(event), *c)
    assert code == 0
    assert matched["reached"] == ["ops"]
    [ruled_out] = [s for s in matched["subscriptions"] if not s["reached"]]
    assert (ruled_out["subscription"], ruled_out["ruled_out_by"]) == ("quiet", "events")
    code, matched = run_json(capsys, "match", str(event), "--expect", "quiet", *c)
    assert (code, matched["error"]["code"]) == (1, "unexpected_match")
    event.write_bytes(encode(new_event("secret.created", "test")))
    code, out, _ = run(capsys, "match", str(event), *c)
    assert code == 3
    assert "reaches 0 of 2" in out


def test_an_unreachable_database_is_exit_1_without_the_password(
    tmp_path: Path, capsys: Capture
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(f"store: {{url: 'postgresql://app:pg-s3cret-pw@127.0.0.1:{port}/db'}}\n")
    code, out, err = run(capsys, "list", "-c", str(config), "-o", "json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["code"] == "store"
    assert error["message"].startswith(f"postgresql://app:***@127.0.0.1:{port}/db: ")
    assert "pg-s3cret-pw" not in out + err


def test_a_target_at_an_address_the_guard_refuses_is_not_stored(
    tmp_path: Path, capsys: Capture
) -> None:
    """As the config loader and the API refuse it (issue 14, SSRF): a literal address, and only
    where delivery.allowed_networks does not allow it; names are judged at send time."""
    config = store_config(tmp_path)
    c = ("-c", str(config))
    url = "http://169.254.169.254/latest/meta-data/"
    meta = {"name": "meta", "events": ["*"], "target": {"type": "webhook", "url": url}}
    metadata = (
        "refused: 169.254.169.254 is a cloud metadata address; "
        "allow it with a CIDR naming it in delivery.allowed_networks"
    )
    code, error = run_json(capsys, "add", write(tmp_path / "meta.yaml", meta), *c)
    assert (code, error["error"]["problems"]) == (2, [f"target.url: {metadata}"])
    code, error = run_json(capsys, "import", write(tmp_path / "two.yaml", [quiet(), meta]), *c)
    assert (code, error["error"]["problems"]) == (
        2,
        [f"subscriptions[meta].target.url: {metadata}"],
    )
    assert run_json(capsys, "list", *c)[1]["items"] == []  # nothing of a refused file stored

    assert run(capsys, "add", write(tmp_path / "ops.yaml", ops()), *c)[0] == 0
    code, error = run_json(capsys, "edit", "ops", "--set", "target.url=http://127.0.0.1:5672/", *c)
    assert (code, error["error"]["problems"]) == (
        2,
        [
            "target.url: refused: 127.0.0.1 is a loopback address; allow it with "
            "delivery.allowed_networks (CIDRs) or delivery.allow_private_networks"
        ],
    )
    assert stored(config)["ops"]["target"]["url"] == HOOK_URL  # unchanged

    config.write_text(config.read_text() + "delivery: {allowed_networks: [127.0.0.0/8]}\n")
    code, _ = run_json(capsys, "edit", "ops", "--set", "target.url=http://127.0.0.1:5672/", *c)
    assert code == 0


def test_an_import_file_is_read_under_the_config_loaders_rules(
    tmp_path: Path, capsys: Capture
) -> None:
    """Nesting past 100 levels and aliases that multiply are refused with their line, as in the
    config file, instead of a RecursionError or a file that grows without bound in memory."""
    config = store_config(tmp_path)
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    code, error = run_json(capsys, "import", str(bomb), "-c", str(config))
    assert (code, error["error"]["message"]) == (
        2,
        f"{bomb}: more than 100000 values: aliases nested too deep?",
    )
    assert run_json(capsys, "list", "-c", str(config))[1]["items"] == []
