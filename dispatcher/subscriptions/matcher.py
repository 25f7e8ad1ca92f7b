"""Which subscriptions want an event: glob patterns indexed by their literal parts.

Pure and precompiled. A `Matcher` files each subscription under a literal key of its most
selective constraint, then of its event type; `match` looks the event's values up and verifies
only the few subscriptions found, so 10,000 subscriptions cost about what 10 do.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, NamedTuple, TypeVar

from dispatcher.events import Event
from dispatcher.subscriptions.models import Subscription

B = TypeVar("B")

#: The dimension of the event type: every subscription constrains it with its `events`.
TYPE = "type"
#: Where to file a subscription, most selective first (many values, few subscribers each); any
#: other attribute comes next, and the type last.
ANCHOR_ORDER = ("project", "app", "repository", "environment", "organization", "actor", "envtype")
#: Distinct event types whose type-index lookups are remembered (types are a small vocabulary).
TYPE_MEMO_SIZE = 1024


def _segment(folded: str) -> str:
    return "".join("." if char == "?" else re.escape(char) for char in folded)


def _glob_source(folded: str) -> str:
    """Regex source for one casefolded glob, to `fullmatch` with re.DOTALL.

    Python's backtracking makes a naive `a.*b.*c` quadratic or worse on long values. The parts
    between stars have fixed lengths, so taking each middle part at its leftmost place, atomically
    (never revisited), finds a match whenever there is one, in time linear in the value.
    """
    head, *rest = folded.split("*")
    if not rest:
        return _segment(head)
    *middle, tail = rest
    searches = "".join(f"(?>.*?{_segment(part)})" for part in middle if part)
    return f"{_segment(head)}{searches}.*{_segment(tail)}"


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A test of values against a glob: `*` any run, `?` one character, the rest literal.

    Compares casefolded text, like the `Matcher` (re.IGNORECASE alone would disagree with
    casefold on letters such as `ß` and the dotless i, U+0131).

    >>> product = compile_glob("product*")
    >>> product("Product-API"), product("my-product")
    (True, False)
    """
    regex = re.compile(_glob_source(pattern.casefold()), re.DOTALL)
    return lambda value: regex.fullmatch(value.casefold()) is not None


def _has_wildcard(folded: str) -> bool:
    return "*" in folded or "?" in folded


def _literal_ends(folded: str) -> tuple[str, str]:
    """The literal text before the first wildcard and after the last one."""
    first = min(i for i in (folded.find("*"), folded.find("?")) if i >= 0)
    last = max(folded.rfind("*"), folded.rfind("?"))
    return folded[:first], folded[last + 1 :]


def _has_key(folded: str) -> bool:
    """Whether a `PatternIndex` looks the pattern up by a literal, not hands it every value."""
    return not _has_wildcard(folded) or any(_literal_ends(folded))


def _is_plain(folded: str) -> bool:
    """Whether the glob is `x`, `x*` or `*x`, so that a `PatternIndex` hit proves it matches."""
    return not _has_wildcard(folded.rstrip("*")) or not _has_wildcard(folded.lstrip("*"))


class _Prefixes(Generic[B]):
    """Buckets under literal prefixes; `lookup` finds those of the prefixes a value starts with.

    It slices only the lengths of keys that share the value's head (its first characters, as
    many as the shortest key has): one or two probes where there are keys of many lengths.
    """

    __slots__ = ("_heads", "_shortest", "buckets")

    def __init__(self) -> None:
        self.buckets: dict[str, B] = {}
        self._heads: dict[str, tuple[int, ...]] = {}  # the lengths of keys, by their head
        self._shortest = 0

    def add(self, key: str, new: Callable[[], B]) -> B:
        if key not in self.buckets:
            self.buckets[key] = new()
            if not self._shortest or len(key) < self._shortest:
                self._index_heads(len(key))  # at most once per length: cheap
            else:
                head = key[: self._shortest]
                self._heads[head] = tuple(sorted({*self._heads.get(head, ()), len(key)}))
        return self.buckets[key]

    def lookup(self, value: str, into: list[B]) -> None:
        size = len(value)
        for length in self._heads.get(value[: self._shortest], ()):
            if length > size:
                break
            hit = self.buckets.get(value[:length])
            if hit is not None:
                into.append(hit)

    def _index_heads(self, shortest: int) -> None:
        self._shortest = shortest
        lengths: dict[str, set[int]] = {}
        for key in self.buckets:
            lengths.setdefault(key[:shortest], set()).add(len(key))
        self._heads = {head: tuple(sorted(found)) for head, found in lengths.items()}


class PatternIndex(Generic[B]):
    """Buckets filed under casefolded globs; `lookup` finds those whose glob may match a value.

    Exact patterns key a dict. A wildcard pattern keys on its literal prefix or suffix, the
    longer (suffixes are kept reversed, as prefixes). A pattern with neither (`*`, `*x*`) files
    into the bucket every value gets. A hit proves a plain pattern (`x`, `x*`, `*x`) matches; for
    any other it only makes the bucket's contents candidates, to verify.
    """

    __slots__ = ("_always", "_exact", "_new", "_prefixes", "_suffixes")

    def __init__(self, new_bucket: Callable[[], B]) -> None:
        self._new = new_bucket
        self._exact: dict[str, B] = {}
        self._prefixes: _Prefixes[B] = _Prefixes()
        self._suffixes: _Prefixes[B] = _Prefixes()
        self._always: B | None = None

    def bucket(self, folded: str) -> B:
        """The bucket of a casefolded pattern, made on first use."""
        if not _has_wildcard(folded):
            if folded not in self._exact:
                self._exact[folded] = self._new()
            return self._exact[folded]
        prefix, suffix = _literal_ends(folded)
        if prefix and len(prefix) >= len(suffix):
            return self._prefixes.add(prefix, self._new)
        if suffix:
            return self._suffixes.add(suffix[::-1], self._new)
        if self._always is None:
            self._always = self._new()
        return self._always

    def lookup(self, value: str, into: list[B]) -> None:
        """Append to `into` the buckets of the patterns that may match the casefolded `value`."""
        hit = self._exact.get(value)
        if hit is not None:
            into.append(hit)
        if self._prefixes.buckets:
            self._prefixes.lookup(value, into)
        if self._suffixes.buckets:
            self._suffixes.lookup(value[::-1], into)
        if self._always is not None:
            into.append(self._always)


class _Check(NamedTuple):
    """One constraint, precompiled: an attribute and the globs, one of which must match it.

    Plain `x`, `x*` and `*x` need only string operations; the others share one regex.
    """

    attribute: str
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    regex: re.Pattern[str] | None


def _check(attribute: str, folded: Sequence[str]) -> _Check:
    exact: list[str] = []
    prefixes: list[str] = []
    suffixes: list[str] = []
    others: list[str] = []
    for pattern in folded:
        if not _has_wildcard(pattern):
            exact.append(pattern)
        elif not _has_wildcard(stem := pattern.rstrip("*")):
            prefixes.append(stem)
        elif not _has_wildcard(stem := pattern.lstrip("*")):
            suffixes.append(stem)
        else:
            others.append(f"(?:{_glob_source(pattern)})")
    regex = re.compile("|".join(others), re.DOTALL) if others else None
    return _Check(attribute, frozenset(exact), tuple(prefixes), tuple(suffixes), regex)


def _passes(checks: tuple[_Check, ...], event: Event, folded: dict[str, str]) -> bool:
    # the hot loop: one call per candidate, none per plain check
    for attribute, exact, prefixes, suffixes, regex in checks:
        value = folded.get(attribute)
        if value is None:  # not an anchor: folded on first use
            raw = event.attr(attribute)
            if raw is None:
                return False
            value = folded[attribute] = raw.casefold()
        if (
            value in exact
            or (prefixes and value.startswith(prefixes))
            or (suffixes and value.endswith(suffixes))
        ):
            continue
        if regex is None or regex.fullmatch(value) is None:
            return False
    return True


def _rank(attribute: str) -> int:
    if attribute in ANCHOR_ORDER:
        return ANCHOR_ORDER.index(attribute)
    return len(ANCHOR_ORDER) + (attribute == TYPE)


def _anchor(constraints: Mapping[str, Sequence[str]]) -> str:
    """The dimension to file a subscription under: the most selective one whose patterns all
    have a literal key, else the most selective one (its keyless patterns get every value)."""
    ranked = sorted(constraints, key=_rank)
    for attribute in ranked:
        if all(_has_key(pattern) for pattern in constraints[attribute]):
            return attribute
    return ranked[0]


def _folded_constraints(subscription: Subscription) -> dict[str, list[str]]:
    """Every constraint of a subscription, the event type included, casefolded and deduplicated."""
    constraints = {TYPE: subscription.events, **subscription.filter.constraints()}
    return {
        attribute: list(dict.fromkeys(pattern.casefold() for pattern in patterns))
        for attribute, patterns in constraints.items()
    }


def _checks(constraints: Mapping[str, Sequence[str]], anchor: str) -> tuple[_Check, ...]:
    """What to verify of a subscription found in the index: all but what finding it proved,
    which is the anchor and the type when their patterns are all plain."""
    proven = {a for a in (anchor, TYPE) if all(_is_plain(p) for p in constraints[a])}
    return tuple(_check(a, patterns) for a, patterns in constraints.items() if a not in proven)


class _Entry(NamedTuple):
    position: int  # in the enabled subscriptions: the order to answer in
    type_key: int  # the id of one of its type patterns' keys in the type index
    subscription: Subscription
    checks: tuple[_Check, ...]


class Matcher:
    """The enabled subscriptions, each filed under its most selective constraint, then its type.

    An event looks up its value of each anchor dimension, keeps from the buckets found the
    entries whose type key its type hits, and verifies those on what the lookups did not prove.
    Its only state after construction is a bounded memo of type lookups (the worst a race on it
    can do is repeat a lookup), so one Matcher can serve every concurrent delivery.
    """

    def __init__(self, subscriptions: Iterable[Subscription]) -> None:
        self._subscriptions = tuple(sub for sub in subscriptions if sub.enabled)
        self._by_name = {sub.name: sub for sub in self._subscriptions}
        # type patterns' keys get ids, so that an event's type is looked up once, not per bucket
        self._types: PatternIndex[int] = PatternIndex(itertools.count().__next__)
        self._type_memo: dict[str, frozenset[int]] = {}
        anchors: dict[str, PatternIndex[list[_Entry]]] = {}
        for position, subscription in enumerate(self._subscriptions):
            constraints = _folded_constraints(subscription)
            anchor = _anchor(constraints)
            index = anchors.setdefault(anchor, PatternIndex(list))
            checks = _checks(constraints, anchor)
            # a subscription anchored on its type is filed under it, and then under any type
            types = ["*"] if anchor == TYPE else constraints[TYPE]
            for type_key in dict.fromkeys(self._types.bucket(pattern) for pattern in types):
                entry = _Entry(position, type_key, subscription, checks)
                for pattern in constraints[anchor]:
                    index.bucket(pattern).append(entry)
        self._by_type = anchors.pop(TYPE, None)
        self._anchors = tuple(sorted(anchors.items(), key=lambda item: _rank(item[0])))

    def subscription(self, name: str) -> Subscription | None:
        """The enabled subscription of this name, if there is one."""
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._subscriptions)

    def match(self, event: Event) -> list[Subscription]:
        """The enabled subscriptions that want the event, in their original order, once each."""
        folded = {TYPE: event.type.casefold()}
        found = self._candidates(event, folded)
        if not found:
            return []
        matched = []
        for position in sorted(found):
            _, _, subscription, checks = found[position]
            if not checks or _passes(checks, event, folded):
                matched.append(subscription)
        return matched

    def _candidates(self, event: Event, folded: dict[str, str]) -> dict[int, _Entry]:
        """The entries filed under the event's values and type, by position."""
        buckets: list[list[_Entry]] = []
        attributes = event.attributes  # read as Event.attr does, without a call per attribute
        for attribute, index in self._anchors:
            raw = attributes.get(attribute)
            if isinstance(raw, str):
                value = folded[attribute] = raw.casefold()
                index.lookup(value, buckets)
        if self._by_type is not None:
            self._by_type.lookup(folded[TYPE], buckets)
        if not buckets:
            return {}
        type_keys = self._type_keys(folded[TYPE])
        found: dict[int, _Entry] = {}
        for bucket in buckets:
            for entry in bucket:
                if entry[1] in type_keys:
                    found[entry[0]] = entry
        return found

    def _type_keys(self, folded_type: str) -> frozenset[int]:
        keys = self._type_memo.get(folded_type)
        if keys is None:
            found: list[int] = []
            self._types.lookup(folded_type, found)
            keys = frozenset(found)
            if len(self._type_memo) >= TYPE_MEMO_SIZE:
                self._type_memo.clear()  # bounds a flood of unusual types; refills in a few events
            self._type_memo[folded_type] = keys
        return keys
