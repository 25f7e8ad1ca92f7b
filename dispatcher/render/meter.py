"""The meter of one render: counts its steps, watches its deadline, and sizes what it builds.

Sizes are checked before a value is built wherever one operation could build a large value
from small ones (`'x' * n`, a width, a separator), and after, against the same limit, where the
result can be at most a few times its inputs. A list is sized by its weight: its length plus the
weights of its items, a string's weight being its length, so a list holding one long string many
times weighs what it would print. Weights are remembered by identity for the render (the lists a
template sees cannot change), so sizing is linear in what the template builds and reads.

What a template builds in all, counted at each step, is bounded too (`BUILT_FACTOR` times the
longest value), so a loop cannot fill memory one fitting value at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any, TypeVar

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

from dispatcher.errors import TemplateBudgetExceeded
from dispatcher.template_budget import TemplateBudget

T = TypeVar("T")

#: what a render may build in all, as a multiple of `max_output_chars`
BUILT_FACTOR = 16
#: the largest integer a template may compute, in bits (Python prints at most 4300 digits)
MAX_INT_BITS = 14_000
#: `repr` writes a character as at most this many (`\U0010ffff`)
_REPR_FACTOR = 10
_CONTAINERS = (list, tuple, dict, set, frozenset)
_SCALARS = frozenset({int, float, bool, type(None)})
#: `%[(key)][flags][width][.precision][length]type`
_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.?)", re.DOTALL)
_NUMBER = re.compile(r"\d+")


class Meter:
    """Counts one render against its budget; every method raises TemplateBudgetExceeded (or
    SecurityError) rather than let the render go on past it."""

    __slots__ = (
        "_budget",
        "_built",
        "_clock",
        "_deadline",
        "_output",
        "_steps_left",
        "_weights",
        "limit",
    )

    def __init__(self, budget: TemplateBudget, clock: Callable[[], float] = time.monotonic) -> None:
        self._budget, self._clock = budget, clock
        self._deadline = clock() + budget.max_time_s
        self.limit = budget.max_output_chars
        self._steps_left = budget.max_steps
        self._output = self._built = 0
        #: id -> (weight, depth, the value): kept alive so that its id is not reused
        self._weights: dict[int, tuple[int, int, object]] = {}

    def step(self) -> None:
        """One loop iteration, call, filter or operator; the deadline is checked at each."""
        self._steps_left -= 1
        if self._steps_left < 0:
            raise TemplateBudgetExceeded(
                f"more than {self._budget.max_steps} steps (loop iterations, calls, filters)"
            )
        if self._clock() > self._deadline:
            raise TemplateBudgetExceeded(f"still rendering after {self._budget.max_time_s} s")

    def output(self, text: T) -> T:
        """A piece of output, counted against `max_output_chars`."""
        self._output += len(text)  # type: ignore[arg-type]  # str or Markup
        if self._output > self.limit:
            raise TemplateBudgetExceeded(f"the output is longer than {self.limit} characters")
        return text

    def fits(self, size: int, what: str = "a value") -> None:
        """Refuse, before building it, a value of `size` characters or items."""
        if size > self.limit:
            raise TemplateBudgetExceeded(
                f"{what} would be longer than {self.limit} characters (or items)"
            )

    def built(self, value: T) -> T:
        """A value a step built: refused when it is too large, and counted in the total."""
        if isinstance(value, str | bytes):
            size = len(value)
        elif isinstance(value, _CONTAINERS):
            known = id(value) in self._weights
            size = self.weigh(value)[0]
            self.fits(size)
            size = 0 if known else size
        elif isinstance(value, Namespace):
            for item in value._Namespace__attrs.values():
                self.fits(self.weigh(item)[0])
            return value
        else:
            return value
        self.fits(size)
        self._built += size
        if self._built > BUILT_FACTOR * self.limit:
            raise TemplateBudgetExceeded(
                f"built more than {BUILT_FACTOR * self.limit} characters in all"
            )
        return value

    def weigh(self, value: object) -> tuple[int, int]:
        """(weight, depth) of a value held in a list: a string's length, a list's length plus
        its items' weights; a number's 1 (`MAX_INT_BITS` bounds an int); an object's, the
        length of its repr."""
        if isinstance(value, str | bytes):
            return len(value), 0
        if value is None or isinstance(value, int | float):
            return 1, 0
        if isinstance(value, Namespace):
            # its attributes can change, which would leave the weights of its holders stale
            raise SecurityError("a namespace cannot be put in a list, a dict or a namespace")
        known = self._weights.get(id(value))
        if known is not None:
            return known[0], known[1]
        if isinstance(value, _CONTAINERS):
            weight, depth = self._weigh_items(value)
        else:
            weight, depth = len(repr(value)), 0  # the event's objects, or small ones
        self._weights[id(value)] = (weight, depth, value)
        return weight, depth

    def _weigh_items(self, value: Any) -> tuple[int, int]:
        items: Iterable[object] = (
            chain.from_iterable(value.items()) if isinstance(value, dict) else value
        )
        weight, depth = max(len(value), 1), 1
        for item in items:
            kind = type(item)
            if kind is str:  # the common items first, without a call
                weight += len(item)  # type: ignore[arg-type]
            elif kind in _SCALARS:
                weight += 1
            else:
                item_weight, item_depth = self.weigh(item)
                weight, depth = weight + item_weight, max(depth, item_depth + 1)
            if weight > self.limit:
                break  # refused anyway: weighing the rest would only cost time
        return weight, depth

    def text_bound(self, value: object) -> int:
        """At least `len(str(value))`, found without building that string when it could be
        large."""
        if isinstance(value, str):
            return len(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value.bit_length() * 3 // 10 + 2
        if isinstance(value, bytes | bytearray):
            return 4 * len(value) + 3
        if value is None or isinstance(value, bool | float):
            return 32
        if isinstance(value, _CONTAINERS):
            return _REPR_FACTOR * self.weigh(value)[0] + 2
        return len(str(value))  # an object of the event's, or a small one (a namespace holds
        # at most as many values as the template names, none a namespace)

    def printf_bound(self, fmt: str, args: object, *, escaped: bool = False) -> int:
        """At least `len(fmt % args)`; refuses `*` widths and widths past the limit."""
        bound, position = len(fmt), 0
        for match in _PRINTF.finditer(fmt):
            key, width, precision, kind = match.groups()
            if kind == "%":
                continue
            if "*" in (width, precision):
                raise SecurityError("'*' widths are not allowed in templates")
            pad = self._number(width) + self._number(precision)
            arg = _printf_arg(args, key, position)
            position += key is None
            text = self.text_bound(arg) * (_REPR_FACTOR if kind in "ra" else 1)
            bound += pad + text * (6 if escaped else 1)  # escaping writes `"` as `&#34;`
        return bound

    def check_spec(self, spec: str) -> None:
        """Refuse a `format()` spec whose width or precision passes the limit."""
        for number in _NUMBER.findall(spec):
            self._number(number)

    def _number(self, digits: str | None) -> int:
        if not digits:
            return 0
        if len(digits) > len(str(self.limit)) or int(digits) > self.limit:
            raise TemplateBudgetExceeded(f"a width of more than {self.limit} characters")
        return int(digits)


def _printf_arg(args: object, key: str | None, position: int) -> object:
    """The argument a `%` conversion takes (a bound only: Python itself refuses a mismatch)."""
    if key is not None and isinstance(args, Mapping):
        return args.get(key, "")
    if isinstance(args, tuple):
        return args[position] if position < len(args) else ""
    return args
