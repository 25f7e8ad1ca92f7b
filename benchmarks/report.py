"""Figures, the machine they were measured on, and the Markdown table that shows both."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number. `complete` is False when its phase lost or missed events."""

    key: str
    label: str
    value: float
    unit: str
    note: str = ""
    complete: bool = True


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def daemon_loop() -> str:
    """The event loop `dispatcher run` picks here (see dispatcher.cli.run_async)."""
    if os.environ.get("DISPATCHER_EVENT_LOOP", "auto") == "asyncio":
        return "asyncio (DISPATCHER_EVENT_LOOP=asyncio)"
    try:
        return f"uvloop {metadata.version('uvloop')}"
    except metadata.PackageNotFoundError:
        return "asyncio (uvloop not installed)"


def machine(rabbitmq_version: str) -> list[str]:
    python = platform.python_version()
    libraries = ", ".join(f"{name} {metadata.version(name)}" for name in ("aiormq", "aiohttp"))
    return [
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {platform.system()} "
        f"{platform.release()}, {platform.python_implementation()} {python}",
        f"RabbitMQ {rabbitmq_version}; daemon loop: {daemon_loop()}; {libraries}",
    ]


def _number(value: float, unit: str) -> str:
    if unit in ("x", "ms", "µs"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(runs: Sequence[Sequence[Figure]]) -> list[str]:
    """One row per figure: the median over the runs, and min-max when there were several."""
    several = len(runs) > 1
    header = (
        "| figure | value | spread (min-max) | note |" if several else "| figure | value | note |"
    )
    lines = [header, "|---|---:|---:|---|" if several else "|---|---:|---|"]
    by_key: dict[str, list[Figure]] = {}
    for run in runs:
        for figure in run:
            by_key.setdefault(figure.key, []).append(figure)
    for measured in by_key.values():
        last = measured[-1]
        values = [figure.value for figure in measured]
        value = f"{_number(statistics.median(values), last.unit)} {last.unit}".strip()
        note = last.note
        if len(measured) < len(runs) or not all(figure.complete for figure in measured):
            note = f"INCOMPLETE: {note}"
        if several:
            low, high = (_number(v, last.unit) for v in (min(values), max(values)))
            lines.append(f"| {last.label} | {value} | {low} - {high} | {note} |")
        else:
            lines.append(f"| {last.label} | {value} | {note} |")
    return lines


def render(header: Sequence[str], runs: Sequence[Sequence[Figure]]) -> str:
    return "\n".join([*header, "", *table(runs)]) + "\n"


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
