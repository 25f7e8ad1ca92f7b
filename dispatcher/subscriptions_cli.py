"""`dispatcher subscriptions list|show|add|edit|enable|disable|remove|import|export|match`: the
subscriptions of the configured store, from the command line (the HTTP API's twin).

Each action works on the store `build_store` gives (migrated first when `store.migrate`). With
the config file's subscriptions (no `store.url`) the reads work (list, show, export, match) and
the writes exit 2: edit the file. Secrets never appear in any output: `show`, `list` and
`-o json` show each as `****` and its last 4 characters, as the API does; `export` writes each
as a reference, `${DISPATCHER_SECRET_<NAME>_<FIELD>}` (the `target.url` of `ops`:
`${DISPATCHER_SECRET_OPS_TARGET_URL}`), and names on stderr the variables to set before `import`
or the config loader (`subscriptions_file`) reads the file back. `add` and `import` expand
`${VAR}` like the config loader. Owner and labels are not exported (the config file's
subscriptions have none); `import` keeps a stored subscription's own unless the file gives them.

Exit codes: 0 ok; 1 a name already taken (`duplicate_name`) or a database failing (`store`);
2 a usage error, an invalid body (`invalid_subscription`: each problem as `field: message`), an
unknown id or name (`unknown_subscription`), a write to the config file's subscriptions
(`read_only`), `remove` without --yes nor a terminal; 3 `match` reaching nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

import orjson
import yaml

from dispatcher.cli_output import (
    EXIT_FAILED,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_TABLE,
    EXIT_USAGE,
    dumps,
    emit,
    emit_error,
)
from dispatcher.errors import ConfigError
from dispatcher.subscriptions.store import FileSubscription
from dispatcher.subscriptions.transfer import (
    expanded,
    exported,
    mask_problems,
    replacing,
    same,
)

if TYPE_CHECKING:
    from dispatcher.events import Event
    from dispatcher.netguard import NetworkGuard
    from dispatcher.settings import Settings
    from dispatcher.subscriptions.models import Subscription
    from dispatcher.subscriptions.sql import SqlStore, StoredSubscription
    from dispatcher.subscriptions.store import SubscriptionStore

READ_ONLY = "the subscriptions are in the config file: edit it, or set store.url"
_WRITES = frozenset({"add", "edit", "enable", "disable", "remove", "import"})
_READ_ONLY_KEYS = ("id", "created_at", "updated_at")  # in `show -o json`, ignored by `edit`
EXPORT_HELP = (
    "write the subscriptions as YAML that `import` and `subscriptions_file` accept (a list); "
    "secrets are never written: each is a ${DISPATCHER_SECRET_<NAME>_<FIELD>} reference "
    "(e.g. DISPATCHER_SECRET_OPS_TARGET_URL), and stderr names the variables to set before "
    "reading it back. Owner and labels are not exported"
)


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `subscriptions` and its actions to the `dispatcher` command."""
    from dispatcher.cli import _config_arg
    from dispatcher.cli_output import output_arg

    what = "list, show, add, edit, remove, import, export the subscriptions of the store"
    about = (
        f"{what} (`store.url`).\nWith the config file's subscriptions, list, show, export and "
        "match work and the others exit 2.\nSecrets are never printed: `show`, `list` and "
        "-o json mask each as `****` and its last 4\ncharacters; `export` writes each as a "
        "`${DISPATCHER_SECRET_<NAME>_<FIELD>}` reference and names the\nvariables on stderr."
    )
    parser: argparse.ArgumentParser = commands.add_parser(
        "subscriptions", help=what, description=about, epilog=EXIT_TABLE
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="subscriptions_action", required=True, metavar="ACTION")

    def action(name: str, help: str, *, one: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help)
        _config_arg(sub)
        output_arg(sub)
        if one:
            sub.add_argument("subscription", metavar="ID|NAME", help="its id, or its name")
        return sub

    listing = action("list", "the subscriptions, a page at a time (NAME, TARGET, EVENTS, ...)")
    listing.add_argument("--event-type", metavar="T", help="only those whose events match T")
    listing.add_argument("--target-type", choices=_target_types(), help="only these targets")
    listing.add_argument("--enabled", choices=("true", "false"), help="only enabled, or disabled")
    listing.add_argument("--label", type=_pair, metavar="K=V", help="only those with this label")
    listing.add_argument("--owner", help="only this owner's")
    listing.add_argument("--limit", type=_count, default=50, help="at most N (default 50; 0: all)")
    listing.add_argument("--cursor", help="the page after this one: an earlier next_cursor")
    action("show", "one subscription, its secrets masked", one=True)
    add = action("add", "create subscriptions; a name already taken exits 1, nothing created")
    add.add_argument(
        "file",
        metavar="FILE",
        help="YAML or JSON: one subscription or a list, each may add `owner` and `labels` "
        "(-: stdin); ${VAR} is expanded as in the config",
    )
    edit = action("edit", "change a subscription; a secret left out keeps its value", one=True)
    change = edit.add_mutually_exclusive_group(required=True)
    change.add_argument(
        "--set",
        action="append",
        type=_assignment,
        metavar="KEY.PATH=VALUE",
        help="set one field (target.timeout_s=5, labels.env=prod, owner=null); VALUE is read as "
        'JSON when it is JSON (true, 5, null, ["a"]), as text otherwise; null removes',
    )
    change.add_argument("--patch", metavar="FILE", help="a JSON merge patch (RFC 7386; -: stdin)")
    action("enable", "enable a subscription", one=True)
    action("disable", "disable a subscription: it stays stored, and matches nothing", one=True)
    remove = action("remove", "delete a subscription (asks first on a terminal)", one=True)
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    load = action("import", "create or update by name (created, updated, unchanged)")
    load.add_argument("file", metavar="FILE", help="a YAML list of subscriptions (-: stdin)")
    load.add_argument("--dry-run", action="store_true", help="show what it would do, only")
    export = action("export", EXPORT_HELP)
    export.add_argument("file", nargs="?", metavar="FILE", help="where to write (default stdout)")
    match = action("match", "as `dispatcher match`, against the subscriptions of the store")
    match.add_argument("event", help="a file holding the event as structured-mode JSON (-: stdin)")
    match.add_argument("--expect", metavar="A,B", help="the names it must reach exactly (exit 1)")


def _target_types() -> list[str]:
    from dispatcher.subscriptions.models import Target

    return [
        get_args(kind.model_fields["type"].annotation)[0] for kind in get_args(get_args(Target)[0])
    ]


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return int(text)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not (key and sep):
        raise argparse.ArgumentTypeError("wants KEY=VALUE")
    return key, value


def _assignment(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")  # the value is never echoed: it may be a secret
    path = key.split(".")
    if not sep or not all(path):
        raise argparse.ArgumentTypeError("wants KEY.PATH=VALUE, e.g. target.timeout_s=5")
    try:
        return path, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return path, raw


@dataclass(frozen=True)
class _Item:
    """One subscription read from a file: its body (`${VAR}` expanded), owner and labels."""

    body: dict[str, Any]
    subscription: Subscription
    meta: dict[str, Any]  # `owner` and `labels`, when given


@dataclass(frozen=True)
class _Given:
    """What the action reads, read before the store is opened."""

    items: list[_Item] = field(default_factory=list)
    patch: dict[str, Any] | None = None
    event: Event | None = None


Action = Callable[[argparse.Namespace, "SubscriptionStore", _Given], Awaitable[int]]


def handle(args: argparse.Namespace) -> int:
    """Run one `subscriptions` action against the configured store."""
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.app import build_store
    from dispatcher.config import load_settings

    settings = load_settings(args.config)
    action = args.subscriptions_action
    if action in _WRITES and settings.store.url is None:
        return emit_error(args, "read_only", EXIT_USAGE, READ_ONLY)
    if action == "remove" and not (args.yes or sys.stdin.isatty()):
        message = "stdin is not a terminal to confirm on: pass --yes to go ahead"
        return emit_error(args, "usage", EXIT_USAGE, message)
    given = _given(args, settings)
    if isinstance(given, int):
        return given
    store = build_store(settings, args.config)
    try:
        return asyncio.run(_run(args, settings, store, given))
    except (SQLAlchemyError, OSError) as exc:
        return _store_failed(args, settings, store, exc, given)


async def _run(
    args: argparse.Namespace, settings: Settings, store: SubscriptionStore, given: _Given
) -> int:
    try:
        from dispatcher.subscriptions.sql import SqlStore

        if isinstance(store, SqlStore):
            if settings.store.migrate:
                await store.migrate()
            if args.subscriptions_action in ("add", "edit", "import") and not store.encrypted:
                print(
                    "secrets are stored unencrypted: DISPATCHER_SECRET_KEY is not set",
                    file=sys.stderr,
                )
        return await _ACTIONS[args.subscriptions_action](args, store, given)
    finally:
        await store.close()


def _store_failed(
    args: argparse.Namespace,
    settings: Settings,
    store: SubscriptionStore,
    exc: Exception,
    given: _Given,
) -> int:
    from dispatcher.redaction import Redactor, secrets_of

    cause = getattr(exc, "orig", None) or exc  # the driver's error: no SQL parameters in it
    redactor = Redactor(secrets_of(settings))
    redactor.update(s for item in given.items for s in secrets_of(item.subscription))
    redactor.update(_strings(given.patch))
    message = redactor.scrub(f"{store.description}: {type(cause).__name__}: {cause}")
    if not settings.store.migrate:
        message += " (store.migrate is false: has `dispatcher db upgrade` run?)"
    return emit_error(args, "store", EXIT_FAILED, message)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


# --- what the actions read


def _given(args: argparse.Namespace, settings: Settings) -> _Given | int:
    from dispatcher.cli import _read_event, read_input

    action = args.subscriptions_action
    if action == "match":
        event = _read_event(args, settings)
        return event if isinstance(event, int) else _Given(event=event)
    guard = settings.delivery.guard
    if action == "edit" and args.set:
        return _guarded_patch(args, _set_patch(args, args.set), guard)
    path = args.patch if action == "edit" else args.file if action in ("add", "import") else None
    if path is None:
        return _Given()
    try:
        raw = read_input(path)
    except OSError as exc:
        return emit_error(args, "usage", EXIT_USAGE, f"cannot read {path}: {exc.strerror}")
    if action == "edit":
        try:
            patch = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return emit_error(args, "usage", EXIT_USAGE, f"{path}: not JSON: {exc}")
        if not isinstance(patch, dict):
            return emit_error(args, "usage", EXIT_USAGE, f"{path}: a patch is a JSON object")
        return _guarded_patch(args, _Given(patch=patch), guard)
    return _read_items(args, path, raw, guard)


def _guarded_patch(
    args: argparse.Namespace, given: _Given | int, guard: NetworkGuard
) -> _Given | int:
    """The patch, unless it points the target at an address the network guard refuses."""
    if isinstance(given, int) or given.patch is None:
        return given
    problems = _refused_host(given.patch, guard)
    if not problems:
        return given
    lines = [f"{at}: {what}" for at, what in problems]
    return emit_error(args, "invalid_subscription", EXIT_USAGE, "the change is not valid", lines)


def _refused_host(body: Mapping[str, Any], guard: NetworkGuard) -> list[tuple[str, str]]:
    from dispatcher.admin.api import target_url_refusal

    refused = target_url_refusal(body, guard)
    return [] if refused is None else [("target.url", refused)]


def _set_patch(args: argparse.Namespace, assignments: list[tuple[list[str], Any]]) -> _Given | int:
    patch: dict[str, Any] = {}
    for path, value in assignments:
        node = patch
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                message = f"--set {'.'.join(path)}: {part} is set to a value already"
                return emit_error(args, "usage", EXIT_USAGE, message)
        node[path[-1]] = value
    return _Given(patch=patch)


def _read_items(
    args: argparse.Namespace, path: str, raw: bytes, guard: NetworkGuard
) -> _Given | int:
    from dispatcher.config import read_yaml

    try:  # the config loader's rules: nesting, aliases, lines; problems without snippets
        data = read_yaml(path, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return emit_error(args, "usage", EXIT_USAGE, f"{path}: not UTF-8 (byte {exc.start})")
    except ConfigError as exc:
        return emit_error(args, "usage", EXIT_USAGE, str(exc.problems[0]))
    single = isinstance(data, dict) and "subscriptions" not in data
    if isinstance(data, dict) and list(data) == ["subscriptions"]:
        data = data["subscriptions"]
    entries = [data] if single else [] if data is None else data
    if not isinstance(entries, list) or (not entries and args.subscriptions_action == "add"):
        message = f"{path}: holds no subscription (a mapping, or a list of them)"
        return emit_error(args, "usage", EXIT_USAGE, message)
    items: list[_Item] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = name if isinstance(name, str) and name else str(index)
        found = _item(entry, guard)
        if isinstance(found, _Item) and found.subscription.name in seen:
            found = [("name", f"{label!r} is in the file twice")]
        if isinstance(found, _Item):
            seen.add(found.subscription.name)
            items.append(found)
            continue
        where = "" if single else f"subscriptions[{label}]"
        problems += [f"{_joined(where, at)}: {what}" for at, what in found]
    if problems:
        return emit_error(args, "invalid_subscription", EXIT_USAGE, f"{path}: not valid", problems)
    return _Given(items=items)


def _joined(where: str, at: str) -> str:
    return f"{where}.{at}" if where and at else where or at or "(body)"


def _item(entry: Any, guard: NetworkGuard) -> _Item | list[tuple[str, str]]:
    """The subscription of one entry, or its problems as (field, message)."""
    from pydantic import ValidationError

    from dispatcher.admin.api import problems_of
    from dispatcher.subscriptions.editing import validated

    if not isinstance(entry, dict):
        return [("", "must be a mapping: a subscription")]
    problems: list[tuple[str, str]] = []
    body = expanded(entry, (), problems)
    if problems:
        return problems
    meta = {key: body.pop(key) for key in ("owner", "labels") if key in body}
    if "labels" in meta and meta["labels"] is None:
        meta["labels"] = {}
    problems += _meta_problems(meta.get("owner"), meta.get("labels", {}))
    problems += _refused_host(body, guard)
    try:
        subscription = validated(body)
    except ValidationError as exc:
        problems += [_field_problem(p["field"], p["message"]) for p in problems_of(exc)]
        return problems
    return problems + mask_problems(subscription) or _Item(body, subscription, meta)


def _meta_problems(owner: Any, labels: Any) -> list[tuple[str, str]]:
    from dispatcher.subscriptions.editing import checked_labels, checked_owner

    problems = []
    try:
        if not isinstance(owner, str | None):
            raise ValueError("must be text, or null")
        checked_owner(owner)
    except ValueError as exc:
        problems.append(("owner", str(exc)))
    texts = isinstance(labels, dict) and all(
        isinstance(key, str) and isinstance(value, str) for key, value in labels.items()
    )
    try:
        if not texts:
            raise ValueError("must be a mapping of text to text")
        checked_labels(labels)
    except ValueError as exc:
        problems.append(("labels", str(exc)))
    return problems


def _field_problem(at: str, message: str) -> tuple[str, str]:
    return ("" if at == "(body)" else at), message.removeprefix("Value error, ")


# --- the actions


def view(stored: StoredSubscription | FileSubscription) -> dict[str, Any]:
    """A subscription as the API shows it: id, body (secrets masked), owner, labels, times."""
    from dispatcher.admin import api

    return api.view(stored)


def _sql(store: SubscriptionStore) -> SqlStore:
    from dispatcher.subscriptions.sql import SqlStore

    assert isinstance(store, SqlStore), "handle() lets only reads reach other stores"
    return store


async def _find(
    store: SubscriptionStore, ident: str
) -> StoredSubscription | FileSubscription | None:
    from dispatcher.subscriptions.sql import SqlStore

    if isinstance(store, SqlStore):
        return await store.get(ident)
    return next((FileSubscription(s) for s in await store.load() if s.name == ident), None)


def _unknown(args: argparse.Namespace) -> int:
    message = f"no subscription has the id or name {args.subscription!r}"
    return emit_error(args, "unknown_subscription", EXIT_USAGE, message)


async def _list(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    from dispatcher.subscriptions.sql import SqlStore

    found: Sequence[StoredSubscription | FileSubscription]
    try:
        if isinstance(store, SqlStore):
            found, following = await _sql_page(args, store)
        else:
            found, following = _file_page(args, await store.load())
    except ValueError as exc:
        return emit_error(args, "usage", EXIT_USAGE, f"--cursor: {exc}")
    lines = [table(found)] if found else []
    lines.append(f"{len(found)} subscription{'' if len(found) == 1 else 's'}")
    if following is not None:
        lines[-1] += f"; the next page: --cursor {following}"
    emit(args, {"items": [view(s) for s in found], "next_cursor": following}, "\n".join(lines))
    return EXIT_OK


async def _sql_page(
    args: argparse.Namespace, store: SqlStore
) -> tuple[list[StoredSubscription], str | None]:
    from dispatcher.subscriptions.editing import MAX_PAGE

    found: list[StoredSubscription] = []
    after = args.cursor
    while True:
        size = MAX_PAGE if not args.limit else min(MAX_PAGE, args.limit - len(found))
        page, after = await store.list(
            event_type=args.event_type,
            target_type=args.target_type,
            enabled=None if args.enabled is None else args.enabled == "true",
            label=args.label,
            owner=args.owner,
            after=after,
            limit=size,
        )
        found += page
        if after is None or (args.limit and len(found) >= args.limit):
            return found, after


def _file_page(
    args: argparse.Namespace, subscriptions: Sequence[Subscription]
) -> tuple[list[FileSubscription], str | None]:
    """As the API lists the config file's: by name, the cursor a name; none has labels."""
    from dispatcher.subscriptions.editing import event_filter

    wanted = event_filter(args.event_type)
    chosen = sorted(
        (
            s
            for s in subscriptions
            if (args.enabled is None or s.enabled == (args.enabled == "true"))
            and args.target_type in (None, s.target.type)
            and wanted(s.events)
            and args.label is None
            and args.owner is None
            and (args.cursor is None or s.name > args.cursor)
        ),
        key=lambda s: s.name,
    )
    page = chosen[: args.limit] if args.limit else chosen
    following = page[-1].name if len(chosen) > len(page) else None
    return [FileSubscription(s) for s in page], following


def table(found: Sequence[StoredSubscription | FileSubscription]) -> str:
    """One row per subscription: NAME, TARGET, EVENTS, ENABLED, OWNER."""
    from dispatcher.subscriptions.models import EmailTarget, SlackTarget

    rows = [["NAME", "TARGET", "EVENTS", "ENABLED", "OWNER"]]
    for stored in found:
        sub, target = stored.subscription, stored.subscription.target
        where: str = target.type
        if isinstance(target, SlackTarget):
            where += f" {target.channel}"
        elif isinstance(target, EmailTarget):
            where += f" {', '.join(target.to)}"
        events = ", ".join(sub.events)
        cells = [where, events if len(events) <= 60 else events[:59] + "…"]
        rows.append([sub.name, *cells, "yes" if sub.enabled else "no", stored.owner or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _show(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    found = await _find(store, args.subscription)
    if found is None:
        return _unknown(args)
    shown = view(found)
    text = yaml.safe_dump(orjson.loads(dumps(shown)), sort_keys=False, allow_unicode=True)
    emit(args, shown, text.rstrip())
    return EXIT_OK


async def _add(args: argparse.Namespace, store: SubscriptionStore, given: _Given) -> int:
    from dispatcher.subscriptions.sql import DuplicateName

    sql = _sql(store)
    taken = [
        item.subscription.name for item in given.items if await sql.get(item.subscription.name)
    ]
    if taken:
        names = ", ".join(repr(name) for name in taken)
        message = f"names already used: {names}; nothing added (`edit`, or `import` to update)"
        return emit_error(args, "duplicate_name", EXIT_FAILED, message)
    created: list[StoredSubscription] = []
    try:
        for item in given.items:
            created.append(await sql.create(item.body, **item.meta))
    except DuplicateName as exc:  # taken meanwhile, by another writer
        done = ", ".join(stored.subscription.name for stored in created) or "none"
        return emit_error(args, "duplicate_name", EXIT_FAILED, f"{exc}; added before it: {done}")
    text = "\n".join(f"added {s.subscription.name} (id {s.id})" for s in created)
    emit(args, {"created": [view(stored) for stored in created]}, text)
    return EXIT_OK


async def _edit(args: argparse.Namespace, store: SubscriptionStore, given: _Given) -> int:
    assert given.patch is not None
    patch = {k: v for k, v in given.patch.items() if k not in _READ_ONLY_KEYS}
    return await _change(args, _sql(store), patch, "updated")


async def _enable(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    return await _change(args, _sql(store), {"enabled": True}, "enabled")


async def _disable(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    return await _change(args, _sql(store), {"enabled": False}, "disabled")


async def _change(args: argparse.Namespace, sql: SqlStore, patch: dict[str, Any], done: str) -> int:
    """Apply a merge patch (owner and labels merged too) unless it changes nothing."""
    from pydantic import ValidationError

    from dispatcher.admin.api import _drop_masks, body_of, problems_of
    from dispatcher.subscriptions.bodies import merge_patch, revealed_body
    from dispatcher.subscriptions.editing import validated
    from dispatcher.subscriptions.sql import KEEP, DuplicateName, NotFound

    current = await sql.get(args.subscription)
    if current is None:
        return _unknown(args)
    patch = _drop_masks(patch, body_of(current.subscription))  # what `show` printed: kept
    owner = patch.pop("owner", KEEP)
    labels = patch.pop("labels", KEEP)
    if labels is not KEEP:
        labels = merge_patch(dict(current.labels), labels) or {}
    problems = _meta_problems(None if owner is KEEP else owner, {} if labels is KEEP else labels)
    try:
        result = validated(merge_patch(revealed_body(current.subscription), patch))
        problems += mask_problems(result)
    except ValidationError as exc:
        problems += [_field_problem(p["field"], p["message"]) for p in problems_of(exc)]
    if problems:
        lines = [f"{at}: {what}" if at else what for at, what in problems]
        message = f"{current.subscription.name}: the change is not valid"
        return emit_error(args, "invalid_subscription", EXIT_USAGE, message, lines)
    changed = not (
        same(result, current.subscription)
        and owner in (KEEP, current.owner)
        and labels in (KEEP, dict(current.labels))
    )
    stored = current
    if changed:
        try:
            stored = await sql.update(current.id, patch, owner=owner, labels=labels)
        except DuplicateName as exc:
            return emit_error(args, "duplicate_name", EXIT_FAILED, str(exc))
        except NotFound:  # removed meanwhile
            return _unknown(args)
    name = stored.subscription.name
    text = f"{done} {name} (id {stored.id})" if changed else f"{name}: unchanged, already so"
    emit(args, {"subscription": view(stored), "changed": changed}, text)
    return EXIT_OK


async def _remove(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    sql = _sql(store)
    found = await sql.get(args.subscription)
    if found is None:
        return _unknown(args)
    name = found.subscription.name
    data = {"id": found.id, "name": name, "removed": False}
    if not args.yes:
        print(f"remove the subscription {name} (id {found.id})? [y/N] ", end="", file=sys.stderr)
        sys.stderr.flush()
        answer = await asyncio.to_thread(sys.stdin.readline)
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done: not confirmed", file=sys.stderr)
            emit(args, data, f"{name}: not removed")
            return EXIT_OK
    if not await sql.delete(found.id):
        return _unknown(args)
    emit(args, {**data, "removed": True}, f"removed {name} (id {found.id})")
    return EXIT_OK


async def _import(args: argparse.Namespace, store: SubscriptionStore, given: _Given) -> int:
    from dispatcher.subscriptions.bodies import revealed_body
    from dispatcher.subscriptions.editing import MAX_PAGE
    from dispatcher.subscriptions.sql import DuplicateName

    sql = _sql(store)
    existing: dict[str, StoredSubscription] = {}
    after: str | None = None
    while True:
        page, after = await sql.list(after=after, limit=MAX_PAGE)
        existing.update((stored.subscription.name, stored) for stored in page)
        if after is None:
            break
    report: dict[str, Any] = {
        "dry_run": args.dry_run,
        "created": [],
        "updated": [],
        "unchanged": [],
    }
    for item in given.items:
        name = item.subscription.name
        old = existing.get(name)
        if old is None:
            report["created"].append(name)
            if not args.dry_run:
                try:
                    await sql.create(item.body, **item.meta)
                except DuplicateName as exc:
                    return emit_error(args, "duplicate_name", EXIT_FAILED, f"{exc} (meanwhile)")
        elif same(item.subscription, old.subscription) and all(
            value == {"owner": old.owner, "labels": dict(old.labels)}[key]
            for key, value in item.meta.items()
        ):
            report["unchanged"].append(name)
        else:
            report["updated"].append(name)
            if not args.dry_run:
                patch = replacing(revealed_body(old.subscription), revealed_body(item.subscription))
                await sql.update(old.id, patch, **item.meta)
    report["counts"] = {key: len(report[key]) for key in ("created", "updated", "unchanged")}
    verbs = {"created": "create", "updated": "update", "unchanged": "leave unchanged"}
    lines = [
        f"{'would ' + verbs[key] if args.dry_run else key} {len(report[key])}"
        + (f": {', '.join(report[key])}" if report[key] else "")
        for key in verbs
    ]
    emit(args, report, "\n".join(lines))
    return EXIT_OK


async def _export(args: argparse.Namespace, store: SubscriptionStore, _: _Given) -> int:
    from pathlib import Path

    bodies, variables = exported(await store.load())
    text = "# dispatcher subscriptions export; secrets are ${DISPATCHER_SECRET_...} references\n"
    text += yaml.safe_dump(bodies, sort_keys=False, allow_unicode=True)
    if args.file is not None:
        try:
            await asyncio.to_thread(Path(args.file).write_text, text, encoding="utf-8")
        except OSError as exc:
            return emit_error(args, "usage", EXIT_USAGE, f"cannot write {args.file}: {exc}")
    if variables:
        print("secrets are not exported; set these before reading it back:", file=sys.stderr)
        for variable in variables:
            print(
                f"  {variable['name']}  ({variable['subscription']}: {variable['field']})",
                file=sys.stderr,
            )
    data = {"file": args.file, "subscriptions": bodies, "variables": variables}
    count = f"{len(bodies)} subscription{'' if len(bodies) == 1 else 's'}"
    emit(args, data, f"wrote {count} to {args.file}" if args.file else text.rstrip())
    return EXIT_OK


async def _match(args: argparse.Namespace, store: SubscriptionStore, given: _Given) -> int:
    assert given.event is not None
    return report_match(args, await store.load(), given.event)


def report_match(
    args: argparse.Namespace, subscriptions: Iterable[Subscription], event: Event
) -> int:
    """What `dispatcher match` prints and exits with, for these subscriptions."""
    from dispatcher.subscriptions.explain import explain

    explanations = explain(subscriptions, event)
    reached = [e.subscription for e in explanations if e.reached]
    data: dict[str, Any] = {
        "event": {"id": event.id, "type": event.type},
        "reached": reached,
        "subscriptions": [e.record() for e in explanations],
    }
    lines = [f"{event.type} (id {event.id}) reaches {len(reached)} of {len(explanations)}:"]
    lines += [f"  + {e.subscription}" for e in explanations if e.reached]
    lines += [f"  - {e.describe()}" for e in explanations if not e.reached]
    code = EXIT_OK if reached else EXIT_NOTHING
    if args.expect is not None:
        expected = sorted({name.strip() for name in args.expect.split(",") if name.strip()})
        data["expected"] = expected
        code = EXIT_OK
        if sorted(reached) != expected:
            got = ", ".join(reached) or "none"
            message = f"expected {', '.join(expected) or 'none'}; reached {got}"
            data["error"] = {"code": "unexpected_match", "exit": EXIT_FAILED, "message": message}
            lines.append(f"not as expected: {message}")
            code = EXIT_FAILED
    elif not reached:
        message = "no subscription matches"
        data["error"] = {"code": "nothing_matched", "exit": EXIT_NOTHING, "message": message}
    emit(args, data, "\n".join(lines))
    return code


_ACTIONS: dict[str, Action] = {
    "list": _list,
    "show": _show,
    "add": _add,
    "edit": _edit,
    "enable": _enable,
    "disable": _disable,
    "remove": _remove,
    "import": _import,
    "export": _export,
    "match": _match,
}
