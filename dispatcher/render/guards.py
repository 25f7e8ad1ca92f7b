"""Checks made before a filter, a method or an operator that could build much from little.

Each guard takes the meter and the call's own arguments (less what Jinja passes first) and
raises before the work when its result would pass the limit: `'x'|center(10**9)`,
`s.replace('a', long)`, `range(n)|join(long)`, `'%999999999s' % x`, `n ** 10**6`. What can only
grow its input a few times (escaping, case) is checked after, by `Meter.built`. `wordwrap`
also does work quadratic in the length of a long word over the width, so that is bounded too.
And `truncate`'s arguments, which Jinja checks with `assert`, are checked here with ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError

from dispatcher.errors import TemplateBudgetExceeded
from dispatcher.render.meter import MAX_INT_BITS, Meter

Guard = Callable[..., None]

_SEQUENCES = (str, bytes, list, tuple)

#: `wordwrap`'s work on a long word (length squared over the width), in units of the limit
_WRAP_WORK = 256


def _width(meter: Meter, value: object, width: object = 80, *_: object, **__: object) -> None:
    if isinstance(width, int):
        meter.fits(width, "the padded text")


def _indent(meter: Meter, s: object, width: object = 4, *_: object, **__: object) -> None:
    indent = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(s, str):
        meter.fits(len(s) + (s.count("\n") + 1) * indent, "the indented text")


def _replace(
    meter: Meter, s: Any, old: object = "", new: object = "", count: object = None, **_: object
) -> None:
    family = str if isinstance(s, str) else bytes if isinstance(s, bytes) else None
    if family is not None and isinstance(old, family) and isinstance(new, family):
        times = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        meter.fits(len(s) + times * (len(new) - len(old)), "the replaced text")


def _format(meter: Meter, value: object, *args: object, **kwargs: object) -> None:
    if isinstance(value, str):
        meter.fits(meter.printf_bound(value, kwargs or args), "the formatted text")


def _join(meter: Meter, value: list[Any], d: object = "", *_: object, **__: object) -> None:
    meter.fits(len(value), "the joined list")
    meter.fits(len(str(d)) * max(len(value) - 1, 0), "the joined text")


def _batch(meter: Meter, value: object, linecount: object = 1, *_: object, **__: object) -> None:
    if isinstance(linecount, int):
        meter.fits(linecount, "the batch")


def _slice(meter: Meter, value: object, slices: object = 1, *_: object, **__: object) -> None:
    if isinstance(slices, int):
        meter.fits(slices, "the slices")


def _sum(
    meter: Meter, iterable: object, attribute: object = None, start: object = 0, **_: object
) -> None:
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only")  # adding lists one by one is quadratic


def _tojson(meter: Meter, value: object, indent: object = None, **_: object) -> None:
    step = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if step:
        weight, depth = meter.weigh(value)
        meter.fits(weight * (1 + depth * step), "the indented JSON")


def _wordwrap(
    meter: Meter,
    s: object,
    width: object = 79,
    break_long_words: object = True,
    wrapstring: object = None,
    *_: object,
    **__: object,
) -> None:
    if isinstance(s, str) and isinstance(width, int):
        joiner = len(wrapstring) if isinstance(wrapstring, str) else 1
        meter.fits(len(s) * (1 + joiner), "the wrapped text")
        if len(s) ** 2 // max(width, 1) > _WRAP_WORK * meter.limit:
            raise TemplateBudgetExceeded(f"wordwrap({width}) of {len(s)} characters is too slow")


def _truncate(
    meter: Meter,
    s: object,
    length: object = 255,
    killwords: object = False,
    end: object = "...",
    leeway: object = None,
    **_: object,
) -> None:
    # an AssertionError from Jinja, outside what a template may raise (found by fuzzing)
    if isinstance(length, int) and isinstance(end, str) and length < len(end):
        raise ValueError(f"truncate({length}) leaves no room for its end {end!r}")
    if isinstance(leeway, int) and leeway < 0:
        raise ValueError(f"truncate's leeway must not be negative, not {leeway}")


#: filter name -> guard, called with the filter's arguments after Jinja's own
FILTER_GUARDS: dict[str, Guard] = {
    "batch": _batch,
    "center": _width,
    "format": _format,
    "indent": _indent,
    "join": _join,
    "replace": _replace,
    "slice": _slice,
    "sum": _sum,
    "tojson": _tojson,
    "truncate": _truncate,
    "wordwrap": _wordwrap,
}


def _expandtabs(meter: Meter, text: Any, tabsize: object = 8, **_: object) -> None:
    if isinstance(tabsize, int):
        tab = "\t" if isinstance(text, str) else b"\t"
        meter.fits(len(text) + text.count(tab) * tabsize, "the expanded text")


def _translate(
    meter: Meter, text: str | bytes, table: object = None, *_: object, **__: object
) -> None:
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str | bytes)), default=1)
        meter.fits(len(text) * longest, "the translated text")


def _to_bytes(meter: Meter, number: int, length: object = 1, *_: object, **__: object) -> None:
    if isinstance(length, int):
        meter.fits(length, "the bytes")


def _method_join(meter: Meter, separator: str | bytes, items: list[Any], *_: object) -> None:
    _join(meter, items, separator)


#: method name -> guard, for methods of strings, bytes and ints; called with the receiver first
METHOD_GUARDS: dict[str, Guard] = {
    "center": _width,
    "expandtabs": _expandtabs,
    "join": _method_join,
    "ljust": _width,
    "replace": _replace,
    "rjust": _width,
    "to_bytes": _to_bytes,
    "translate": _translate,
    "zfill": _width,
}


def guard_binop(meter: Meter, operator: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**`, `+` or `%` whose result would pass the limit."""
    if operator == "%" and isinstance(left, str | bytes):
        text = left if isinstance(left, str) else left.decode("latin-1")
        meter.fits(meter.printf_bound(text, right), "the formatted text")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            raise TemplateBudgetExceeded(f"'**' would compute a number of over {MAX_INT_BITS} bits")
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateBudgetExceeded(f"'*' would compute a number of over {MAX_INT_BITS} bits")
    elif operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
                meter.fits(meter.weigh(sequence)[0] * times, "the repeated value")
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        meter.fits(meter.weigh(left)[0] + meter.weigh(right)[0], "the sum")
