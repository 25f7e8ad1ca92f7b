"""Fuzz the template renderer as a subscription's template meets it: each input is a template's
text (UTF-8; undecodable bytes replaced), compiled as `text`, then rendered under a small budget
against the sample event. A first byte of 1 compiles it as `email_html` (autoescaped), 2 renders
it with the event's strings escaped for Slack, 3 both. What follows the first NUL byte, when it is
JSON, is the event's `data` instead of the sample's.

Every input compiles or is refused with ValueError (what a config error is made of), renders or
raises one of `RENDER_ERRORS`, never writes more than the budget allows, and stops within the
budget's time plus one step, counted in thread CPU time with a wide margin; run by scripts/fuzz,
corpus in fuzz/corpus/templates/.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from fuzz.harness import fuzz, instrumented


def _jinja_instrumented(module: str) -> contextlib.AbstractContextManager[Any]:
    """Jinja2 instrumented too when fuzzing: its parser, compiler and filters are most of what a
    template exercises, so without it the fuzzer learns little beyond syntax errors."""
    if module != "__main__":
        return contextlib.nullcontext()
    import atheris

    hooks: contextlib.AbstractContextManager[Any] = atheris.instrument_imports(
        ["jinja2", "markupsafe"]
    )
    return hooks


#: Jinja2's syntax and what the budget guards, for libFuzzer to splice into inputs
DICTIONARY = Path(__file__).resolve().with_name("templates.dict")

with _jinja_instrumented(__name__):
    import jinja2.sandbox  # noqa: F401 (imported here to be instrumented)

with instrumented(__name__):
    from dispatcher.events import Event
    from dispatcher.render.describe import describe
    from dispatcher.render.sandbox import metered_render
    from dispatcher.render.templates import (
        RENDER_ERRORS,
        compile_template,
        context,
        sample_description,
    )
    from dispatcher.template_budget import TemplateBudget

#: small, so that a hostile input costs the fuzzer little time
BUDGET = TemplateBudget(max_steps=20_000, max_time_s=0.2, max_output_chars=16 * 1024)
#: one step does at most a filter's work on one value of max_output_chars: far below this
_STEP_CPU_S = 2.0


def check(data: bytes) -> None:
    mode = data[0] if data[:1] in (b"\1", b"\2", b"\3") else 0
    text, nul, tail = data[1 if mode else 0 :].partition(b"\0")
    source = text.decode("utf-8", "replace")
    html, slack = bool(mode & 1), bool(mode & 2)
    try:
        template = compile_template(source, html=html)
    except ValueError:
        return
    description = sample_description()
    if nul:
        try:
            sample = description.event
            payload = orjson.loads(tail)
            event = Event(sample.id, sample.source, sample.type, sample.attributes, payload, b"")
            description = describe(event)
        except orjson.JSONDecodeError:
            pass
    values = context(description, "fuzz", "", slack=slack)
    started = time.thread_time()
    try:
        rendered = metered_render(template, values, BUDGET)
    except RENDER_ERRORS:
        rendered = ""
    spent = time.thread_time() - started
    assert spent < BUDGET.max_time_s + _STEP_CPU_S, f"rendered for {spent:.1f} s of CPU"
    assert len(rendered) <= BUDGET.max_output_chars, f"wrote {len(rendered)} characters"


if __name__ == "__main__":
    if not any(arg.startswith("-dict=") for arg in sys.argv):
        sys.argv.append(f"-dict={DICTIONARY}")
    fuzz(check)
