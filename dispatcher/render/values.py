"""Reading event data and formatting its values for people: times, durations, sizes, links.

`DataReader` remembers which data items a description used, so whatever is left can still be
shown as details and nothing the producer sent is silently hidden.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

#: Data keys whose values are never shown: a notification must not leak a credential.
_SECRET_KEY = re.compile(r"secret|passw|token|api_?key|private_?key|credential", re.IGNORECASE)
_HIDDEN = "(hidden)"
_GIT_SHA = re.compile(r"[0-9a-fA-F]{13,64}")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"  # RFC 3986 reserved and unreserved: kept as they are
_SIZE_UNITS: tuple[str, ...] = ("KiB", "MiB", "GiB", "TiB")
_MAX_ITEMS = 1000  # flattened data items kept; an event is at most a few hundred KiB anyway
_MAX_JOINED = 20  # list items joined into one value


def one_line(text: str) -> str:
    """The text with every run of whitespace and control characters made one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def scalar(value: object) -> str | None:
    """A JSON scalar as a person reads it; None for null and for objects and arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) for every scalar in the data, lists of scalars joined by commas."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        texts = [scalar(item) for item in data]
        if all(text is not None for text in texts):
            shown = ", ".join(str(text) for text in texts[:_MAX_JOINED])
            more = len(texts) - _MAX_JOINED
            yield prefix or "data", shown + (f", \u2026 {more} more" if more > 0 else "")
        else:
            for index, item in enumerate(data):
                yield from flatten(item, f"{prefix}[{index}]")
    else:
        text = scalar(data)
        if text is not None:
            yield prefix or "data", hide_secret(prefix, text)


def hide_secret(key: str, value: str) -> str:
    return _HIDDEN if _SECRET_KEY.search(key) else value


class DataReader:
    """Looks up dotted paths in event data and records the ones a description used."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self._used: set[str] = set()

    def text(self, *paths: str) -> str | None:
        """The first path holding a non-empty scalar, as text; marks it used."""
        for path in paths:
            value = scalar(self._lookup(path))
            if value is not None and value.strip():
                self._used.add(path)
                return hide_secret(path, value)
        return None

    def number(self, *paths: str) -> float | None:
        """The first path holding a finite, non-negative number (or numeric string)."""
        for path in paths:
            value = self._lookup(path)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            if 0 <= number < float("inf"):
                self._used.add(path)
                return number
        return None

    def url(self, *paths: str) -> str | None:
        """The first path holding an absolute http(s) URL, made safe (see `safe_url`)."""
        for path in paths:
            value = self._lookup(path)
            url = safe_url(value) if isinstance(value, str) else None
            if url is not None:
                self._used.add(path)
                return url
        return None

    def rest(self) -> tuple[tuple[str, str], ...]:
        """Every scalar data item not used yet."""
        items = []
        for key, value in flatten(self._data):
            if key not in self._used:
                items.append((key, value))
                if len(items) >= _MAX_ITEMS:
                    break
        return tuple(items)

    def _lookup(self, path: str) -> object:
        node: object = self._data
        for part in path.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node


def when(time: str | None) -> str | None:
    """An RFC 3339 time as "2026-11-23 08:30:00 UTC"; unparseable times unchanged."""
    if time is None:
        return None
    try:
        moment = datetime.fromisoformat(time.upper())
    except ValueError:  # a leap second, or something only almost RFC 3339
        return one_line(time)
    if moment.tzinfo is None:
        return one_line(time)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """40 -> "40 s", 185 -> "3 min 5 s", 3720 -> "1 h 2 min", 2.5 -> "2.5 s"."""
    if seconds < 60:
        shown = f"{seconds:.2f}".rstrip("0").rstrip(".") if seconds < 10 else str(round(seconds))
        return f"{shown} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def size(size_bytes: float) -> str:
    """512 -> "512 B", 1536 -> "1.5 KiB"."""
    if size_bytes < 1024:
        return f"{round(size_bytes)} B"
    value, units = size_bytes / 1024, _SIZE_UNITS
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def git_ref(ref: str) -> str:
    """A full commit hash shortened to 12 characters; branch and tag names unchanged."""
    return ref[:12] if _GIT_SHA.fullmatch(ref) else ref


def safe_url(url: str | None) -> str | None:
    """An absolute http(s) URL with every character that could end a link or a tag (<, >,
    quotes, spaces, non-ASCII) percent-encoded; None for anything else."""
    if url is None:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(url, safe=_URL_SAFE)


def escape_mrkdwn(text: object) -> str:
    """Text for Slack mrkdwn (and plain_text): &, < and > as entities, so no `<!channel>`,
    `<@U123>` or `<http://…|link>` in the input is ever parsed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
