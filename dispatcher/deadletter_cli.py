"""`dispatcher dead-letters list|replay|purge`: the arguments and what a person sees; the broker
work is `dispatcher.amqp.deadletters`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from dispatcher.amqp import headers as h
from dispatcher.cli_output import EXIT_FAILED, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, dumps, wants_json

if TYPE_CHECKING:
    from dispatcher.amqp.deadletters import DeadLetter, DeadLetterQueue, Replacement, Selection
    from dispatcher.settings import BrokerSettings

#: with more dead letters than this, replay and purge report progress on stderr this often
PROGRESS_EVERY = 1000


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `dead-letters` and its three actions to the `dispatcher` command."""
    from dispatcher.cli import _config_arg
    from dispatcher.cli_output import output_arg

    parser = commands.add_parser("dead-letters", help="list, replay or purge the dead-letter queue")
    actions = parser.add_subparsers(dest="dead_letters_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show dead letters, leaving them in the queue")
    _config_arg(listing)
    output_arg(listing)
    _selection_args(listing)
    listing.add_argument(
        "--limit", type=_count, default=50, help="show at most N (default: 50; 0: all)"
    )
    for name, what in (
        ("replay", "send dead letters back for a fresh try, each to its own subscription"),
        ("purge", "remove dead letters for good"),
    ):
        action = actions.add_parser(name, help=what)
        _config_arg(action)
        output_arg(action)
        _selection_args(action)
        action.add_argument("--dry-run", action="store_true", help="show what it would do, only")
        action.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        action.add_argument(
            "--limit",
            type=_count,
            default=0,
            help="at most N, the first in the queue (default: 0, all). They are held in memory "
            "until done: with very many, work in slices",
        )


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subscription", action="append", metavar="NAME", help="only this subscription's"
    )
    parser.add_argument(
        "--reason",
        action="append",
        type=_reason,
        metavar="R",
        help=f"only this reason: {', '.join(h.REASONS)} or broker:<why> (e.g. "
        "broker:delivery_limit)",
    )
    parser.add_argument(
        "--id", action="append", metavar="ID", help="only this id (as listed) or event id"
    )


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of dead letters: {text!r}")
    return int(text)


def _reason(text: str) -> str:
    if text in h.REASONS or (text.startswith("broker:") and len(text) > len("broker:")):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: not one of {', '.join(h.REASONS)} nor broker:<why>"
    )


def handle(args: argparse.Namespace) -> int:
    """Run one `dead-letters` action; 0 ok, 1 broker error (raised as BrokerError) or a
    replay the broker refused, 2 usage, 3 nothing selected."""
    from dispatcher.amqp.deadletters import Selection
    from dispatcher.config import load_settings

    settings = load_settings(args.config)
    selection = Selection(
        frozenset(args.subscription or ()), frozenset(args.reason or ()), frozenset(args.id or ())
    )
    if args.dead_letters_action == "list":
        as_json = wants_json(args)
        return asyncio.run(_list(settings.broker, selection, args.limit, as_json=as_json))
    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        print(
            f"dispatcher dead-letters {args.dead_letters_action}: stdin is not a terminal to "
            "confirm on: pass --yes to go ahead (or --dry-run to see what it would do)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(_change(settings.broker, selection, args))


async def _list(broker: BrokerSettings, selection: Selection, limit: int, *, as_json: bool) -> int:
    import orjson

    from dispatcher.amqp.deadletters import opened

    async with opened(broker) as queue:
        letters = [letter async for letter in queue.read(selection, limit)]
    if as_json:  # stdout holds only the JSON lines
        for letter in letters:
            print(orjson.dumps(letter.record(), default=str).decode())
        print(_shown(len(letters), queue, limit), file=sys.stderr)
    else:
        if letters:
            print(table(letters))
        print(_shown(len(letters), queue, limit))
    if queue.depth is None:
        print(_absent(queue), file=sys.stderr)
    return 0


async def _change(broker: BrokerSettings, selection: Selection, args: argparse.Namespace) -> int:
    from dispatcher.amqp.deadletters import Replacement, opened, replacement

    action = args.dead_letters_action
    replaying = action == "replay"
    as_json = wants_json(args)
    say = sys.stderr if as_json else sys.stdout  # with -o json, stdout holds only the report
    report: dict[str, Any] = {"action": action, "dry_run": args.dry_run}
    async with opened(broker, declare_topology=replaying and not args.dry_run) as queue:
        letters = [letter async for letter in queue.read(selection, args.limit)]
        report.update(in_queue=queue.depth, matched=len(letters), skipped=[])
        if args.limit and len(letters) == args.limit:
            print(f"the first {args.limit} that match (--limit); more may match", file=sys.stderr)
        chosen: list[Replacement] = []
        if replaying:
            now = datetime.now(UTC)
            for plan in (replacement(letter, broker, now) for letter in letters):
                if isinstance(plan, Replacement):
                    chosen.append(plan)
                else:
                    report["skipped"].append({"id": plan.letter.id, "why": plan.why})
                    print(
                        f"not replayable, left in place: {plan.letter.id}: {plan.why}",
                        file=sys.stderr,
                    )
            letters = [plan.letter for plan in chosen]
        report["chosen"] = [letter.record() for letter in letters]
        if not letters:
            none = "no dead letters match" if not report["matched"] else f"nothing to {action}"
            print(f"{none} ({_plural(queue.depth or 0)} in queue)", file=say)
            if queue.depth is None:
                print(_absent(queue), file=sys.stderr)
            return _done(report, EXIT_NOTHING, as_json)
        if args.dry_run:
            print(f"would {action} {_plural(len(letters))} of {queue.depth} in queue:", file=say)
            print(table(letters, [plan.queue for plan in chosen] if replaying else None), file=say)
            return _done(report, EXIT_OK, as_json)
        if not args.yes and not await _ask(f"{action} {_plural(len(letters))}? [y/N] "):
            print(f"nothing done: {action} not confirmed", file=sys.stderr)
            report["confirmed"] = False
            return _done(report, EXIT_OK, as_json)
        report["confirmed"] = True
        code = await _apply(queue, letters, chosen, action, report, say)
        return _done(report, code, as_json)


def _done(report: dict[str, Any], code: int, as_json: bool) -> int:
    if as_json:
        print(dumps(report))
    return code


async def _apply(
    queue: DeadLetterQueue,
    letters: list[DeadLetter],
    chosen: list[Replacement],
    action: str,
    report: dict[str, Any],
    say: TextIO,
) -> int:
    past = "replayed" if action == "replay" else "purged"

    def progress(done: int, total: int) -> None:
        if total > PROGRESS_EVERY and (done % PROGRESS_EVERY == 0 or done == total):
            print(f"{past} {done} of {total}", file=sys.stderr, flush=True)

    if action == "purge":
        report["done"] = done = await queue.purge(letters, progress)
        print(f"purged {_plural(done)}", file=say)
        return EXIT_OK
    failed = await queue.replay(chosen, progress)
    left = {failure.letter.tag for failure in failed}
    where: dict[str, int] = {}
    for plan in chosen:
        if plan.letter.tag not in left:
            where[plan.queue] = where.get(plan.queue, 0) + 1
    report.update(done=len(chosen) - len(failed), to=where)
    report["failed"] = [{"id": failure.letter.id, "why": failure.why} for failure in failed]
    counts = ", ".join(f"{count} to {name}" for name, count in where.items())
    print(
        f"replayed {_plural(len(chosen) - len(failed))}" + (f" ({counts})" if counts else ""),
        file=say,
    )
    for failure in failed:
        print(f"not replayed, left in place: {failure.letter.id}: {failure.why}", file=sys.stderr)
    if failed:
        message = f"{_plural(len(failed))} could not be replayed (see above)"
        print(f"dispatcher dead-letters replay: {message}", file=sys.stderr)
        report["error"] = {"code": "not_replayed", "exit": EXIT_FAILED, "message": message}
        return EXIT_FAILED
    return EXIT_OK


async def _ask(question: str) -> bool:
    """Ask on the terminal without blocking the loop (the connection keeps its heartbeats)."""
    print(question, end="", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def readable() -> None:
        if not answer.done():
            answer.set_result(sys.stdin.readline())

    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        line = await answer
    finally:
        loop.remove_reader(sys.stdin.fileno())
    return line.strip().lower() in ("y", "yes")


def table(letters: list[DeadLetter], destinations: list[str] | None = None) -> str:
    """One row per dead letter, the last error cut to fit the terminal."""
    rows = [
        [
            letter.id,
            letter.subscription or "-",
            letter.reason,
            "-" if letter.attempts is None else str(letter.attempts),
            _when(letter.failed_at),
            _error(letter),
        ]
        for letter in letters
    ]
    heads = ["ID", "SUBSCRIPTION", "REASON", "ATTEMPTS", "FAILED AT", "LAST ERROR"]
    if destinations is not None:
        heads.insert(5, "REPLAY TO")
        for row, destination in zip(rows, destinations, strict=True):
            row.insert(5, destination)
    widths = [max(len(head), *(len(row[i]) for row in rows)) for i, head in enumerate(heads)]
    room = shutil.get_terminal_size((120, 24)).columns - sum(widths[:-1]) - 2 * len(widths[:-1])
    widths[-1] = max(20, min(widths[-1], room))
    lines = []
    for row in [heads, *rows]:
        cells = [_cut(cell, width).ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[3] = cells[3].strip().rjust(widths[3])  # attempts: a number
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _error(letter: DeadLetter) -> str:
    if letter.died_in is not None and letter.last_error is None:
        return f"died in queue {letter.died_in}"
    return " ".join((letter.last_error or "-").split())


def _when(moment: str | None) -> str:
    """RFC 3339 to the second, readable; anything else as it is."""
    if moment is None:
        return "-"
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


def _shown(count: int, queue: DeadLetterQueue, limit: int) -> str:
    line = f"{_plural(count)} shown of {queue.depth or 0} in queue"
    return f"{line} (--limit {limit}; --limit 0 shows all)" if limit and count == limit else line


def _absent(queue: DeadLetterQueue) -> str:
    return f"the dead-letter queue {queue.name!r} does not exist yet (dispatcher declares it)"
