"""The command-line reference (`docs/cli.md`), generated from the parser so it cannot drift:
`scripts/docs` writes it (`python -m dispatcher.clidoc`), and a test regenerates and compares.
With `--schema`, the config's JSON Schema (`docs/config.schema.json`) instead; with `--openapi`,
the subscriptions API's OpenAPI document (`docs/openapi.json`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from dispatcher.cli import _parser
from dispatcher.cli_output import EXIT_CODES, dumps

HEADER = """# dispatcher command-line reference

Generated from the parser by `scripts/docs`; a test keeps it in step. `--config`/`-c` and
`-o`/`--output` are accepted before or after the command. Without `--config`,
`$DISPATCHER_CONFIG` is read, then `/etc/dispatcher/dispatcher.yaml`. What `-o json` prints,
command by command: [json-output.md](json-output.md).
"""


def markdown(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or _parser()
    parts = [HEADER, "## Exit codes\n", "| code | meaning |", "| ---: | --- |"]
    parts += [f"| {code} | {_cell(what)} |" for code, what in EXIT_CODES]
    parts.append("")
    for path, sub in [(["dispatcher"], parser), *_commands(parser, ["dispatcher"])]:
        parts += [f"## `{' '.join(path)}`\n", sub.description or "", ""]
        parts += ["```text", _usage(sub), "```", ""]
        rows = list(_options(sub))
        if rows:
            parts += ["| argument | meaning |", "| --- | --- |", *rows, ""]
    return "\n".join(parts).rstrip() + "\n"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _commands(
    parser: argparse.ArgumentParser, path: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every command, depth first, in the order the parser declares them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None:
                    sub.description = helps.get(name)
                here = [*path, name]
                yield here, sub
                yield from _commands(sub, here)


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
        what = action.help or ""
        if action.choices is not None and not isinstance(action.choices, dict):
            what += f" (one of: {', '.join(map(str, action.choices))})"
        yield f"| {names} | {_cell(what)} |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    if sys.argv[1:] == ["--schema"]:
        from dispatcher.introspect import config_schema

        print(dumps(config_schema()))
    elif sys.argv[1:] == ["--openapi"]:
        from dispatcher.admin.openapi import document

        print(dumps(document()))
    else:
        print(markdown(), end="")


if __name__ == "__main__":
    main()
