"""The `dispatcher` command: run, check-config, publish, test-target, targets, render, status,
health, dead-letters."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from dispatcher import __version__, deadletter_cli
from dispatcher.config import load_settings, summarize
from dispatcher.errors import (
    BrokerError,
    ConfigError,
    ConfigProblem,
    DispatcherError,
    UnknownSubscription,
)
from dispatcher.events import MATCH_ATTRIBUTES
from dispatcher.settings import Settings

EXIT_CONFIG = 2
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher", description="Turns events on RabbitMQ into notifications."
    )
    parser.add_argument("--version", action="version", version=f"dispatcher {__version__}")
    parser.add_argument("--config", "-c", default=None, help=_CONFIG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    _config_arg(run)

    check = commands.add_parser("check-config", help="validate a config file, connect nowhere")
    _config_arg(check)

    publish = commands.add_parser("publish", help="publish one event, print its id")
    _config_arg(publish)
    publish.add_argument("type", help="the event type, e.g. deployment.failed")
    publish.add_argument("--source", default="urn:dispatcher:cli", help="the event source")
    publish.add_argument("--subject", help="what the event is about, e.g. a parameter name")
    publish.add_argument("--id", help="the event id (default: a new UUID)")
    publish.add_argument("--data", help="the event data, as JSON")
    for name in MATCH_ATTRIBUTES:
        publish.add_argument(f"--{name}", help=f"the {name} extension attribute")

    test = commands.add_parser(
        "test-target", help="send a sample event to a subscription's target, print the answer"
    )
    _config_arg(test)
    test.add_argument("subscription", help="the subscription's name")

    targets = commands.add_parser(
        "targets", help="act on targets in every running process (enable a disabled one)"
    )
    target_actions = targets.add_subparsers(dest="action", required=True, metavar="ACTION")
    enable = target_actions.add_parser(
        "enable", help="close a target's circuit and enable it again, in every running process"
    )
    _config_arg(enable)
    which = enable.add_mutually_exclusive_group(required=True)
    which.add_argument("subscription", nargs="?", help="a subscription to the target")
    which.add_argument("--key", help="the target's key, as logs and metrics show it")

    render = commands.add_parser("render", help="print what a subscription would send")
    _config_arg(render)
    render.add_argument("subscription", help="the subscription's name")
    render.add_argument("event", help="a file holding the event as structured-mode JSON")

    status = commands.add_parser("status", help="queue depths and consumers, read from the broker")
    _config_arg(status)

    health = commands.add_parser(
        "health", help="ask the running daemon's /healthz (or /readyz); exit 0 or 1"
    )
    _config_arg(health)
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    deadletter_cli.add_parser(commands)
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
    print(f"{args.config}: OK: {summarize(settings)}")
    return 0


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
    print(format_status(settings.broker, rows))
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    from dispatcher.admin.probe import probe

    healthy, text = probe(_load(args.config), ready=args.ready)
    print(text, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def _cmd_publish(args: argparse.Namespace) -> int:
    from dispatcher.publisher import AsyncPublisher

    settings = _load(args.config)
    data: Any = None
    if args.data is not None:
        try:
            data = orjson.loads(args.data)
        except orjson.JSONDecodeError as exc:
            print(f"dispatcher publish: --data is not valid JSON: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    extensions = {name: getattr(args, name) for name in MATCH_ATTRIBUTES}

    async def publish() -> str:
        async with AsyncPublisher(
            settings.broker.url.get_secret_value(), settings.broker.exchange, source=args.source
        ) as publisher:
            event_id: str = await publisher.publish(
                args.type, data, subject=args.subject, id=args.id, **extensions
            )
            return event_id

    print(asyncio.run(publish()))
    return 0


def _cmd_test_target(args: argparse.Namespace) -> int:
    from dispatcher import logs, preview
    from dispatcher.amqp import control
    from dispatcher.app import build_channels, secrets_of
    from dispatcher.channels.base import Delivery, SendOk
    from dispatcher.samples import sample_event

    settings = _load(args.config)
    logs.configure("warning", "console").update(secrets_of(settings))
    subscription = preview.find(settings, args.subscription)
    delivery = Delivery.of(sample_event(subscription), subscription)
    print(f"sending a sample {delivery.event.type} event (id {delivery.event.id})")
    channels = build_channels(settings)
    channel = channels[subscription.target.type]
    key = channel.target_key(delivery)
    result = asyncio.run(preview.send_once(channel, delivery))
    print(preview.describe_result(result, subscription))
    if not isinstance(result, SendOk):
        return 1
    try:  # the target works: running processes that gave up on it try it again
        asyncio.run(control.send(settings.broker, control.EnableTarget(key)))
    except BrokerError as exc:
        print(f"could not tell running processes to enable the target: {exc}", file=sys.stderr)
    else:
        print(f"told running processes to enable the target ({key})")
    return 0


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
    print(f"told running processes to enable {key}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from dispatcher import preview
    from dispatcher.channels.base import Delivery
    from dispatcher.events import InvalidEvent, decode

    settings = _load(args.config)
    subscription = preview.find(settings, args.subscription)
    try:
        with open(args.event, "rb") as file:
            body = file.read()
    except OSError as exc:
        print(f"dispatcher render: cannot read {args.event}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    event = decode(body, max_bytes=settings.broker.max_event_bytes)
    if isinstance(event, InvalidEvent):
        print(f"dispatcher render: {args.event}: {event.reason}", file=sys.stderr)
        return EXIT_CONFIG
    print(preview.render(Delivery.of(event, subscription), settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {
        "run": _cmd_run,
        "check-config": _cmd_check,
        "publish": _cmd_publish,
        "test-target": _cmd_test_target,
        "render": _cmd_render,
        "targets": _cmd_targets,
        "status": _cmd_status,
        "health": _cmd_health,
        "dead-letters": deadletter_cli.handle,
    }
    try:
        args.config = config_path(args.config)
        return handlers[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except UnknownSubscription as exc:
        print(f"dispatcher {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DispatcherError as exc:
        print(f"dispatcher {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
