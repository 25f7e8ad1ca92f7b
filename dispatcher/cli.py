"""The `dispatcher` command: run, check-config, publish, test-target, targets, render, status,
health, dead-letters, subscriptions, version, completion. Output conventions and exit codes:
`dispatcher.cli_output`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import orjson

from dispatcher import __version__, deadletter_cli, subscriptions_cli
from dispatcher.cli_output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TABLE,
    EXIT_USAGE,
    dumps,
    emit,
    emit_error,
    json_flag,
    output_arg,
    wants_json,
)
from dispatcher.config import load_settings, summarize
from dispatcher.errors import (
    BrokerError,
    ConfigError,
    ConfigProblem,
    DispatcherError,
    UnknownSubscription,
)
from dispatcher.events import MATCH_ATTRIBUTES, Event
from dispatcher.redaction import redact_url
from dispatcher.settings import Settings

Parser = argparse.ArgumentParser
#: where the systemd unit and the container image keep the config
DEFAULT_CONFIG = "/etc/dispatcher/dispatcher.yaml"
_CONFIG_HELP = f"the YAML config file (default: $DISPATCHER_CONFIG, then {DEFAULT_CONFIG})"

T = TypeVar("T")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    # Accepted before the subcommand (the top-level option) or after it. SUPPRESS keeps a
    # subcommand's unused option from overwriting the top-level one with a default.
    parser.add_argument("--config", "-c", default=argparse.SUPPRESS, help=_CONFIG_HELP)


def config_path(given: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The config file: `--config`, else $DISPATCHER_CONFIG, else DEFAULT_CONFIG when it
    exists; ConfigError naming what was tried otherwise."""
    if given:
        return given
    from_env = environ.get("DISPATCHER_CONFIG")
    if from_env:
        return from_env
    if os.path.exists(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    tried = f"--config (not given), $DISPATCHER_CONFIG (not set), {DEFAULT_CONFIG} (absent)"
    raise ConfigError([ConfigProblem("dispatcher", None, "", f"no config file: tried {tried}")])


class UsageError(Exception):
    """What argparse would print before exiting 2: raised instead, so that `-o json` can answer
    with an error document too."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dispatcher",
        description="Turns events on RabbitMQ into notifications.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dispatcher {__version__}")
    parser.add_argument("--config", "-c", default=None, help=_CONFIG_HELP)
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for a person (default) or one JSON document for a script",
    )
    json_flag(parser, "text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, config: bool = True, output: bool = True) -> Parser:
        sub = commands.add_parser(name, help=help, description=help, epilog=EXIT_TABLE)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        if config:
            _config_arg(sub)
        if output:
            output_arg(sub)
        return sub

    command("run", "run the daemon", output=False)
    command("check-config", "validate a config file, connect nowhere")

    publish = command("publish", "publish one event, print its id")
    publish.add_argument("type", help="the event type, e.g. deployment.failed")
    publish.add_argument("--source", default="urn:dispatcher:cli", help="the event source")
    publish.add_argument("--subject", help="what the event is about, e.g. a parameter name")
    publish.add_argument("--id", help="the event id (default: a new UUID)")
    publish.add_argument("--data", help="the event data, as JSON")
    for name in MATCH_ATTRIBUTES:
        publish.add_argument(f"--{name}", help=f"the {name} extension attribute")

    test = command(
        "test-target", "send a sample event to a subscription's target, print the answer"
    )
    test.add_argument("subscription", help="the subscription's name")

    targets = command(
        "targets",
        "act on targets in every running process (enable a disabled one)",
        config=False,
        output=False,
    )
    target_actions = targets.add_subparsers(dest="action", required=True, metavar="ACTION")
    enable = target_actions.add_parser(
        "enable", help="close a target's circuit and enable it again, in every running process"
    )
    _config_arg(enable)
    output_arg(enable)
    which = enable.add_mutually_exclusive_group(required=True)
    which.add_argument("subscription", nargs="?", help="a subscription to the target")
    which.add_argument("--key", help="the target's key, as logs and metrics show it")

    render = command("render", "print what a subscription would send")
    render.add_argument("subscription", help="the subscription's name")
    render.add_argument("event", help="a file holding the event as structured-mode JSON (-: stdin)")

    match = command("match", "which subscriptions an event reaches, and why not the others")
    match.add_argument("event", help="a file holding the event as structured-mode JSON (-: stdin)")
    match.add_argument(
        "--expect",
        metavar="A,B",
        help="the names the event must reach, exactly (comma-separated; '' for none): "
        "exit 1 when it reaches another set",
    )

    config = command(
        "config", "the effective config, and its JSON Schema", config=False, output=False
    )
    config_actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = config_actions.add_parser(
        "show", help="every setting after ${VAR} expansion and defaults, and where it came from"
    )
    _config_arg(show)
    output_arg(show)
    config_actions.add_parser("schema", help="the JSON Schema of the config file, for editors")

    db = command("db", "the subscription database (store.url)", config=False, output=False)
    db_actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = db_actions.add_parser(
        "upgrade", help="create or migrate the schema to this version's (also done at start)"
    )
    _config_arg(upgrade)
    output_arg(upgrade)

    command("status", "queue depths and consumers, read from the broker")

    health = command("health", "ask the running daemon's /healthz (or /readyz); exit 0 or 1")
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    deadletter_cli.add_parser(commands)
    subscriptions_cli.add_parser(commands)

    command("version", "versions of dispatcher and what a bug report needs", config=False)
    completion = command(
        "completion", "print a shell completion script", config=False, output=False
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser


def _load(path: str) -> Settings:
    return load_settings(path)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed (the `speed` extra), else on asyncio's loop.

    `DISPATCHER_EVENT_LOOP=asyncio` forces the standard loop (to compare, or to rule uvloop out).
    """
    if os.environ.get("DISPATCHER_EVENT_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)


def _cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    subscriptions = settings.subscriptions
    data = {
        "config": args.config,
        "ok": True,
        "subscriptions": len(subscriptions),
        "enabled": sum(sub.enabled for sub in subscriptions),
        "targets": dict(sorted(Counter(sub.target.type for sub in subscriptions).items())),
    }
    summary = summarize(settings)
    if settings.store.url is not None:  # check-config connects nowhere: it cannot count them
        where = redact_url(settings.store.url.get_secret_value())
        summary = f"subscriptions in {where} (not read: check-config connects nowhere)"
        data.update(store=where, subscriptions=None, enabled=None, targets=None)
    emit(args, data, f"{args.config}: OK: {summary}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from dispatcher import logs
    from dispatcher.app import App
    from dispatcher.systemd import Notifier

    settings = _load(args.config)
    redactor = logs.configure(settings.logging.level, settings.logging.format)
    notifier = Notifier.from_environ(os.environ)
    app = App(settings, config_path=args.config, redactor=redactor, notifier=notifier)
    return run_async(app.run())


def _cmd_status(args: argparse.Namespace) -> int:
    from dispatcher.amqp.status import format_status, queue_status
    from dispatcher.app import tiers_of

    settings = _load(args.config)
    rows = asyncio.run(queue_status(settings.broker, tiers_of(settings)))
    data = {
        "broker": settings.broker.safe_url,
        "queues": [
            {"name": r.name, "role": r.role, "messages": r.messages, "consumers": r.consumers}
            for r in rows
        ],
    }
    emit(args, data, format_status(settings.broker, rows))
    return EXIT_OK


def _cmd_health(args: argparse.Namespace) -> int:
    from dispatcher.admin.probe import probe

    answer = probe(_load(args.config), ready=args.ready)
    if wants_json(args):
        data: dict[str, Any] = {
            "healthy": answer.healthy,
            "url": answer.url,
            "status": answer.status,
            "body": _json_or_text(answer.body) if answer.status is not None else None,
        }
        if not answer.healthy:
            data["error"] = {
                "code": "unhealthy",
                "exit": EXIT_FAILED,
                "message": answer.reason or answer.text,
            }
        print(dumps(data))
    print(answer.text, file=sys.stdout if answer.healthy and not wants_json(args) else sys.stderr)
    return EXIT_OK if answer.healthy else EXIT_FAILED


def _json_or_text(body: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body


def _cmd_publish(args: argparse.Namespace) -> int:
    from dispatcher.publisher import AsyncPublisher

    settings = _load(args.config)
    data: Any = None
    if args.data is not None:
        try:
            data = orjson.loads(args.data)
        except orjson.JSONDecodeError as exc:
            return emit_error(args, "usage", EXIT_USAGE, f"--data is not valid JSON: {exc}")
    extensions = {name: getattr(args, name) for name in MATCH_ATTRIBUTES}

    async def publish() -> str:
        async with AsyncPublisher(
            settings.broker.url.get_secret_value(), settings.broker.exchange, source=args.source
        ) as publisher:
            event_id: str = await publisher.publish(
                args.type, data, subject=args.subject, id=args.id, **extensions
            )
            return event_id

    event_id = asyncio.run(publish())
    result = {"id": event_id, "type": args.type, "exchange": settings.broker.exchange}
    emit(args, result, event_id)
    return EXIT_OK


def _cmd_test_target(args: argparse.Namespace) -> int:
    from dispatcher import logs, preview
    from dispatcher.amqp import control
    from dispatcher.app import build_channels
    from dispatcher.channels.base import Delivery, SendFailed, SendOk
    from dispatcher.redaction import secrets_of
    from dispatcher.samples import sample_event

    settings = _load(args.config)
    logs.configure("warning", "console").update(secrets_of(settings))
    subscription = preview.find(settings, args.subscription)
    delivery = Delivery.of(sample_event(subscription), subscription)
    say = sys.stderr if wants_json(args) else sys.stdout  # stdout holds only the JSON
    print(f"sending a sample {delivery.event.type} event (id {delivery.event.id})", file=say)
    channels = build_channels(settings)
    channel = channels[subscription.target.type]
    key = channel.target_key(delivery)
    result = asyncio.run(preview.send_once(channel, delivery))
    print(preview.describe_result(result, subscription), file=say)
    data: dict[str, Any] = {
        "subscription": subscription.name,
        "target_type": subscription.target.type,
        "target": key,
        "event": {"id": delivery.event.id, "type": delivery.event.type},
        "ok": isinstance(result, SendOk),
        "enabled_in_running_processes": None,
    }
    if isinstance(result, SendFailed):
        data["retryable"] = result.retryable
        data["error"] = {"code": "target_failed", "exit": EXIT_FAILED, "message": result.reason}
        if wants_json(args):
            print(dumps(data))
        return EXIT_FAILED
    data["detail"] = result.detail
    try:  # the target works: running processes that gave up on it try it again
        asyncio.run(control.send(settings.broker, control.EnableTarget(key)))
    except BrokerError as exc:
        print(f"could not tell running processes to enable the target: {exc}", file=sys.stderr)
        data["enabled_in_running_processes"] = False
    else:
        print(f"told running processes to enable the target ({key})", file=say)
        data["enabled_in_running_processes"] = True
    if wants_json(args):
        print(dumps(data))
    return EXIT_OK


def _cmd_targets(args: argparse.Namespace) -> int:
    from dispatcher import preview
    from dispatcher.amqp import control
    from dispatcher.app import build_channels
    from dispatcher.channels.base import Delivery
    from dispatcher.samples import sample_event

    settings = _load(args.config)
    key = args.key
    if key is None:
        subscription = preview.find(settings, args.subscription)
        channel = build_channels(settings)[subscription.target.type]
        key = channel.target_key(Delivery.of(sample_event(subscription), subscription))
        asyncio.run(channel.close())
    asyncio.run(control.send(settings.broker, control.EnableTarget(key)))
    emit(args, {"target": key, "sent": True}, f"told running processes to enable {key}")
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    from dispatcher import preview
    from dispatcher.channels.base import Delivery

    settings = _load(args.config)
    subscription = preview.find(settings, args.subscription)
    event = _read_event(args, settings)
    if isinstance(event, int):
        return event
    delivery = Delivery.of(event, subscription)
    data = {
        "subscription": subscription.name,
        "target_type": subscription.target.type,
        "event": {"id": event.id, "type": event.type},
        "message": preview.preview(delivery, settings),
    }
    emit(args, data, preview.render(delivery, settings))
    return EXIT_OK


def _cmd_match(args: argparse.Namespace) -> int:
    from dispatcher.subscriptions_cli import report_match

    settings = _load(args.config)
    event = _read_event(args, settings)
    if isinstance(event, int):
        return event
    return report_match(args, settings.subscriptions, event)


def _cmd_db(args: argparse.Namespace) -> int:
    from dispatcher.app import build_store

    settings = _load(args.config)
    store = build_store(settings, args.config)
    migrate = getattr(store, "migrate", None)
    if migrate is None:
        message = "store.url names no database: the subscriptions are in the config file"
        return emit_error(args, "usage", EXIT_USAGE, message)

    async def upgrade() -> tuple[str | None, str | None]:
        try:
            before = await store.current_revision()  # type: ignore[attr-defined]
            await migrate()
            after = await store.current_revision()  # type: ignore[attr-defined]
            return before, after
        finally:
            await store.close()

    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.redaction import Redactor, secrets_of

    try:
        before, after = asyncio.run(upgrade())
    except (SQLAlchemyError, OSError, DispatcherError) as exc:
        redactor = Redactor(secrets_of(settings))
        message = redactor.scrub(f"{store.description}: {type(exc).__name__}: {exc}")
        return emit_error(args, "store", EXIT_FAILED, message)
    data = {"store": store.description, "from": before, "to": after}
    text = f"{store.description}: schema {before or 'none'} -> {after}"
    emit(args, data, text if before != after else f"{store.description}: schema {after}, current")
    return EXIT_OK


def _cmd_config(args: argparse.Namespace) -> int:
    from dispatcher import introspect

    if args.action == "schema":
        print(dumps(introspect.config_schema()))
        return EXIT_OK
    settings = introspect.effective_config(args.config)
    emit(args, introspect.as_json(settings), introspect.render_text(settings))
    return EXIT_OK


def _read_event(args: argparse.Namespace, settings: Settings) -> Event | int:
    """The event in `args.event` (a file, or `-` for stdin), or the exit code of why not."""
    from dispatcher.events import InvalidEvent, decode

    try:
        body = read_input(args.event)
    except OSError as exc:
        return emit_error(args, "usage", EXIT_USAGE, f"cannot read {args.event}: {exc.strerror}")
    event = decode(body, limits=settings.broker.event_limits)
    if isinstance(event, InvalidEvent):
        return emit_error(args, "invalid_event", EXIT_USAGE, f"{args.event}: {event.reason}")
    return event


def read_input(path: str) -> bytes:
    """A file's bytes, or stdin's for `-`."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as file:
        return file.read()


def _cmd_version(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    loop = "asyncio"
    if os.environ.get("DISPATCHER_EVENT_LOOP", "auto") != "asyncio" and installed("uvloop"):
        loop = f"uvloop {installed('uvloop')}"
    packages = {
        name: installed(name)
        for name in ("aiormq", "pamqp", "aiohttp", "slack-sdk", "aiosmtplib", "pydantic")
    }
    about = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "event_loop": loop,
    }
    data = {"dispatcher": __version__, **about, "packages": packages}
    lines = [f"dispatcher {__version__}", *(f"{key}: {value}" for key, value in about.items())]
    lines += [f"{name}: {v or 'not installed'}" for name, v in packages.items()]
    emit(args, data, "\n".join(lines))
    return EXIT_OK


def _cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(_parser(), shell=args.shell))
    return EXIT_OK


#: commands that read no config file
_NO_CONFIG = frozenset({"version", "completion"})


def _json_asked(argv: Sequence[str]) -> bool:
    """Whether the command line asks for `-o json`, read before (or without) parsing it."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(
        (word in ("-o", "--output") and after == "json")
        or word in ("-ojson", "--output=json", "--json")
        for word, after in pairs
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        if _json_asked(argv):
            error = {"code": "usage", "exit": EXIT_USAGE, "message": f"{exc.parser.prog}: {exc}"}
            print(dumps({"error": error}))
        return EXIT_USAGE
    handlers = {
        "run": _cmd_run,
        "check-config": _cmd_check,
        "publish": _cmd_publish,
        "test-target": _cmd_test_target,
        "render": _cmd_render,
        "match": _cmd_match,
        "config": _cmd_config,
        "db": _cmd_db,
        "targets": _cmd_targets,
        "status": _cmd_status,
        "health": _cmd_health,
        "dead-letters": deadletter_cli.handle,
        "subscriptions": subscriptions_cli.handle,
        "version": _cmd_version,
        "completion": _cmd_completion,
    }
    try:
        if args.command not in _NO_CONFIG and getattr(args, "action", None) != "schema":
            args.config = config_path(args.config)
        return handlers[args.command](args)
    except ConfigError as exc:
        problems = [str(problem) for problem in exc.problems]
        return emit_error(args, "config", EXIT_USAGE, "the config is not valid", problems)
    except UnknownSubscription as exc:
        return emit_error(args, "unknown_subscription", EXIT_USAGE, str(exc))
    except BrokerError as exc:
        return emit_error(args, "broker", EXIT_FAILED, str(exc))
    except DispatcherError as exc:
        return emit_error(args, "failed", EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        return emit_error(args, "interrupted", EXIT_INTERRUPTED, "interrupted")


if __name__ == "__main__":
    sys.exit(main())
