"""What every fuzz target shares: atheris' instrumentation and its run loop.

atheris is imported only by a fuzzing run (`python fuzz/fuzz_x.py`), so importing a target to
replay its corpus needs neither atheris (the `fuzz` extra) nor its instrumented bytecode.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any


def instrumented(module: str) -> contextlib.AbstractContextManager[Any]:
    """Instrument dispatcher's modules imported inside, when `module` (the target's `__name__`)
    runs as a fuzzer; otherwise do nothing. Only dispatcher's: instrumented, PyYAML and pydantic
    run some 20 times slower, and a config that loads in half a second would pass the budget."""
    if module != "__main__":
        return contextlib.nullcontext()
    import atheris

    hooks: contextlib.AbstractContextManager[Any] = atheris.instrument_imports(["dispatcher"])
    return hooks


def fuzz(check: Callable[[bytes], None]) -> None:
    """Feed `check` atheris' inputs until libFuzzer's options (`-max_total_time=`...) stop it;
    an exception out of `check` is a finding, saved by libFuzzer (`-artifact_prefix=`)."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
