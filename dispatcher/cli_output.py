"""How `dispatcher` commands print: data to stdout, as text for a person or as one JSON document
for a script (`-o json`); logs, progress and errors' prose to stderr. With `-o json` a failure
is a JSON document too, `{"error": {"code": ..., "exit": ..., "message": ...}}`, so a script can
tell why without parsing prose.

Exit codes (one table for every command; `--help` and the README show it):

    0    ok
    1    a failure of what was asked: a target refused, the broker unreachable
    2    a usage or config error
    3    nothing matched or selected (`match`, `dead-letters replay|purge`)
    130  interrupted
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import orjson

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    (EXIT_OK, "ok"),
    (EXIT_FAILED, "a failure of what was asked: a target refused, the broker unreachable"),
    (EXIT_USAGE, "a usage or config error"),
    (EXIT_NOTHING, "nothing matched or selected (match, dead-letters replay|purge)"),
    (EXIT_INTERRUPTED, "interrupted"),
)
EXIT_TABLE = "exit codes:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES)


def output_arg(parser: argparse.ArgumentParser) -> None:
    """`-o text|json` on a command that prints data (also accepted before the command)."""
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="text for a person (default) or one JSON document for a script",
    )
    json_flag(parser, argparse.SUPPRESS)


def json_flag(parser: argparse.ArgumentParser, default: str) -> None:
    """`--json`, the same as `-o json`: the spelling scripts reach for first."""
    parser.add_argument(
        "--json",
        action="store_const",
        const="json",
        dest="output",
        default=default,
        help="the same as -o json",
    )


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "text") == "json"


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode()


def emit(args: argparse.Namespace, data: Mapping[str, Any], text: str) -> None:
    """Print the command's result: `text`, or `data` as JSON."""
    print(dumps(data) if wants_json(args) else text)


def emit_error(
    args: argparse.Namespace,
    code: str,
    exit_code: int,
    message: str,
    problems: list[str] | None = None,
) -> int:
    """Report a failure: prose to stderr, and with `-o json` the error document to stdout."""
    for line in problems or [message]:
        print(line if problems else f"dispatcher {args.command}: {line}", file=sys.stderr)
    if wants_json(args):
        error: dict[str, Any] = {"code": code, "exit": exit_code, "message": message}
        if problems is not None:
            error["problems"] = problems
        print(dumps({"error": error}))
    return exit_code
