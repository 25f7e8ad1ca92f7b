"""The matcher: glob semantics in tables, and the index against a naive scan (hypothesis)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.events import Event
from dispatcher.subscriptions.matcher import Matcher, PatternIndex, compile_glob
from dispatcher.subscriptions.models import Filter, LogTarget, Subscription

FILTER_FIELDS = {
    "organization": "organization",
    "projects": "project",
    "environment_types": "envtype",
    "environments": "environment",
    "repositories": "repository",
    "apps": "app",
    "actors": "actor",
}


def sub(name: str, events: list[str], *, enabled: bool = True, **filter: list[str]) -> Subscription:
    return filtered(name, events, filter, enabled=enabled)


def filtered(
    name: str, events: list[str], filter: dict[str, list[str]], *, enabled: bool = True
) -> Subscription:
    return Subscription(
        name=name,
        enabled=enabled,
        events=events,
        filter=Filter(**filter),
        target=LogTarget(type="log"),
    )


def event(type: str, **attributes: Any) -> Event:
    return Event(
        id="e-1",
        source="/test",
        type=type,
        attributes={"specversion": "1.0", "id": "e-1", "source": "/test", "type": type}
        | attributes,
        data=None,
        body=b"",
    )


def matches(subscription: Subscription, ev: Event) -> bool:
    return Matcher([subscription]).match(ev) == [subscription]


@pytest.mark.parametrize(
    ("pattern", "type", "expected"),
    [
        ("deployment.succeeded", "deployment.succeeded", True),
        ("deployment.succeeded", "deployment.failed", False),
        ("deployment.succeeded", "deployment.succeeded.late", False),
        ("deployment.*", "deployment.failed", True),
        ("deployment.*", "deployment.", True),  # `*` matches the empty run
        ("deployment.*", "deployment.step.failed", True),  # and dots
        ("deployment.*", "deployments.failed", False),
        ("deployment.*", "parameter.created", False),
        ("*", "anything.at.all", True),
        ("*", "", True),
        ("*.created", "parameter.created", True),
        ("*.created", "parameter.created.twice", False),
        ("*.created", "parameter_created", False),
        ("file.?ploaded", "file.uploaded", True),
        ("file.?ploaded", "file.ploaded", False),
        ("file.?ploaded", "file.reuploaded", False),
        ("DEPLOYMENT.*", "deployment.started", True),
        ("deployment.*", "Deployment.Started", True),
        ("*ment*ed", "deployment.failed", True),
        ("*ment*ed", "deployment.fails", False),
        # seeds' spellings are normalised by the model
        ("parameter_created", "parameter.created", True),
        ("DEPLOYMENT_SUCCESSFUL", "deployment.succeeded", True),
        ("DEPLOYMENT_FAILURE", "deployment.failed", True),
        ("DEPLOYMENT_FAILURE", "deployment.succeeded", False),
    ],
)
def test_event_type_globs(pattern: str, type: str, expected: bool) -> None:
    assert matches(sub("s", [pattern]), event(type)) is expected


PROJECT_API = {"project": "Product-API", "envtype": "PRODUCTION", "environment": "prod-eu"}


@pytest.mark.parametrize(
    ("filter", "attributes", "expected"),
    [
        ({"projects": ["product*"]}, {"project": "Product-API"}, True),
        ({"projects": ["product*"]}, {"project": "my-product"}, False),
        ({"projects": ["PRODUCT-api"]}, {"project": "product-API"}, True),
        ({"projects": ["analytics"]}, {"project": "analytics"}, True),
        ({"projects": ["analytics"]}, {"project": "analytics-v2"}, False),
        ({"projects": ["product*", "analytics"]}, {"project": "analytics"}, True),
        ({"projects": ["product*", "analytics"]}, {"project": "billing"}, False),
        ({"projects": ["team?-*"]}, {"project": "team4-api"}, True),
        ({"projects": ["team?-*"]}, {"project": "team42-api"}, False),
        ({"projects": ["*-api"]}, {"project": "Billing-API"}, True),
        ({"environment_types": ["PRODUCTION", "STAGING"]}, {"envtype": "staging"}, True),
        ({"environment_types": ["PRODUCTION", "STAGING"]}, {"envtype": "PREVIEW"}, False),
        ({"environments": ["prod-*"]}, {"environment": "prod-eu"}, True),
        ({"environments": ["prod-*"]}, {"environment": "preprod-eu"}, False),
        ({"repositories": ["maven-releases"]}, {"repository": "maven-releases"}, True),
        ({"repositories": ["maven-releases"]}, {"repository": "maven-snapshots"}, False),
        ({"apps": ["my-app"]}, {"app": "MY-APP"}, True),
        ({"apps": ["my-app"]}, {"app": "my-app-2"}, False),
        ({"organization": ["acme"]}, {"organization": "ACME"}, True),
        ({"organization": ["acme"]}, {"organization": "acme-labs"}, False),
        ({"actors": ["*@acme.com"]}, {"actor": "Jane@Acme.com"}, True),
        ({"actors": ["*@acme.com"]}, {"actor": "jane@acme.com.evil"}, False),
        # an event that lacks the attribute, or has it as a non-string, does not match
        ({"projects": ["*"]}, {}, False),
        ({"apps": ["*"]}, {"project": "Product-API"}, False),
        ({"projects": ["*"]}, {"project": 42}, False),
        # every field given must match
        ({"projects": ["product*"], "environment_types": ["PRODUCTION"]}, PROJECT_API, True),
        ({"projects": ["product*"], "environment_types": ["STAGING"]}, PROJECT_API, False),
        (
            {"projects": ["product*"], "environments": ["prod-*"], "apps": ["api"]},
            PROJECT_API,
            False,
        ),
        # regex metacharacters are literal
        ({"projects": ["a.c"]}, {"project": "abc"}, False),
        ({"projects": ["a.c"]}, {"project": "a.c"}, True),
        ({"projects": ["[ab]*"]}, {"project": "a-team"}, False),
        ({"projects": ["[ab]*"]}, {"project": "[ab]-team"}, True),
        ({"projects": ["x+(y)|z$*"]}, {"project": "x+(y)|z$1"}, True),
        ({"projects": ["x+(y)|z$*"]}, {"project": "xx(y)|z$1"}, False),
        ({"projects": ["^a\\d{2}?"]}, {"project": "^a\\d{2}!"}, True),
        ({"projects": ["^a\\d{2}?"]}, {"project": "a12"}, False),
        # casefold, not lower() (ß folds to ss), and not re.IGNORECASE (i equals dotless i)
        ({"projects": ["straße"]}, {"project": "STRASSE"}, True),
        ({"projects": ["s?"]}, {"project": "ß"}, True),
        ({"projects": ["\u0131?"]}, {"project": "ix"}, False),
        ({"projects": ["?\u0131"]}, {"project": "xI"}, False),
    ],
)
def test_filters(filter: dict[str, list[str]], attributes: dict[str, Any], expected: bool) -> None:
    ev = event("deployment.started", **attributes)
    assert matches(filtered("s", ["*"], filter), ev) is expected


def test_disabled_subscriptions_never_match_nor_count() -> None:
    off = sub("off", ["*"], enabled=False)
    on = sub("on", ["*"])
    matcher = Matcher([off, on, off])
    assert len(matcher) == 1
    assert matcher.match(event("deployment.started")) == [on]
    assert Matcher([off]).match(event("x")) == []


def test_order_is_the_subscriptions_order_and_each_comes_once() -> None:
    subs = [
        sub("by-type", ["deployment.*", "*.failed"]),
        sub("by-project", ["*"], projects=["product*", "*-api", "product-api"]),
        sub("other", ["parameter.created"]),
        sub("by-actor", ["deployment.failed"], actors=["*@acme.com"]),
        sub("by-envtype", ["*"], environment_types=["production"]),
    ]
    ev = event("deployment.failed", project="Product-API", actor="a@acme.com", envtype="PRODUCTION")
    assert Matcher(subs).match(ev) == [subs[0], subs[1], subs[3], subs[4]]
    assert Matcher(reversed(subs)).match(ev) == [subs[4], subs[3], subs[1], subs[0]]


def test_an_empty_matcher_matches_nothing() -> None:
    assert len(Matcher([])) == 0
    assert Matcher([]).match(event("deployment.started", project="p")) == []


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("product*", "Product-API", True),
        ("product*", "my-product", False),
        ("*", "", True),
        ("?", "", False),
        ("?", "x", True),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "a-c-b", False),
        ("[x]", "x", False),
        ("[x]", "[X]", True),
    ],
)
def test_compile_glob(pattern: str, value: str, expected: bool) -> None:
    assert compile_glob(pattern)(value) is expected


def test_compile_glob_is_linear_on_many_stars() -> None:
    # naive backtracking would take hours here; no clock is read, a hang hits the timeout
    assert not compile_glob("a*b*b*b*b*c")("a" + "b" * 50_000)
    assert compile_glob("a*b*b*b*b*c")("a" + "b" * 50_000 + "c")


@pytest.mark.parametrize(
    ("patterns", "value", "found"),
    [
        (["team42-api"], "team42-api", ["team42-api"]),
        (["team42-api"], "team42-apix", []),
        (["team42-*"], "team42-web", ["team42-*"]),
        (["team42-*"], "team4-web", []),
        # prefixes of many lengths, filed longest first or shortest first
        (
            ["team420-*", "team42-*", "team4*", "t*", "x*"],
            "team42-api",
            ["team42-*", "team4*", "t*"],
        ),
        (["t*", "team4*", "team42-*", "team420-*"], "team420-api", ["t*", "team4*", "team420-*"]),
        (["team42-*"], "team", []),  # shorter than every key
        (["*-prod", "*prod", "*-dev"], "eu-prod", ["*-prod", "*prod"]),
        (["*-prod"], "eu-production", []),
        (["a*-prod"], "b-prod", ["a*-prod"]),  # keyed on the longer literal end, to verify
        (["*", "*x*", "?"], "anything", ["*", "*x*", "?"]),  # no literal end: every value
    ],
)
def test_pattern_index_lookup(patterns: list[str], value: str, found: list[str]) -> None:
    assert looked_up(patterns, value) == sorted(found)


def looked_up(patterns: list[str], value: str) -> list[str]:
    index: PatternIndex[list[str]] = PatternIndex(list)
    for pattern in patterns:
        index.bucket(pattern).append(pattern)
    buckets: list[list[str]] = []
    index.lookup(value, buckets)
    return sorted(pattern for bucket in buckets for pattern in bucket)


def test_many_distinct_event_types_are_matched_alike() -> None:
    # more types than the matcher remembers lookups for
    every, a, b = sub("every", ["*"]), sub("a", ["type.a*"]), sub("b", ["*.b"])
    matcher = Matcher([every, a, b])
    for n in range(3000):
        if n % 2:
            assert matcher.match(event(f"type.a{n}")) == [every, a]
        else:
            assert matcher.match(event(f"t{n}.b")) == [every, b]


# The reference: obviously correct, slow, and sharing no code with the matcher.


@functools.cache
def glob(pattern: str, value: str) -> bool:
    if not pattern:
        return not value
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return glob(rest, value) or (bool(value) and glob(pattern, value[1:]))
    if not value:
        return False
    return (head == "?" or head == value[0]) and glob(rest, value[1:])


def naive_matches(subscription: Subscription, ev: Event) -> bool:
    if not subscription.enabled:
        return False
    if not any(glob(p.casefold(), ev.type.casefold()) for p in subscription.events):
        return False
    for attribute, patterns in subscription.filter.constraints().items():
        value = ev.attr(attribute)
        if value is None or not any(glob(p.casefold(), value.casefold()) for p in patterns):
            return False
    return True


def text(tokens: str, max_size: int = 3) -> st.SearchStrategy[str]:
    """Short strings of a few tokens, so that patterns and values often meet."""
    return st.lists(st.sampled_from(tokens.split()), max_size=max_size).map("".join)


def patterns(tokens: str) -> st.SearchStrategy[list[str]]:
    return st.lists(text(tokens, max_size=4).filter(bool), min_size=1, max_size=3)


# Tokens, repeated to weight them. The model allows only ASCII in event patterns; filter patterns
# and values may be any text: ß (casefolded to ss) and the dotless i (which casefold keeps apart
# from i, unlike re.IGNORECASE) test that everything is casefolded.
TYPE_PATTERN = "a a b . * * ? A"
FILTER_PATTERN = "a a b B - * * ? ß SS \u0131"
VALUE = "a a A b B - ß ss \u0131 i I"

subscriptions = st.lists(
    st.builds(
        lambda events, filter, enabled: filtered("s", events, filter, enabled=enabled),
        patterns(TYPE_PATTERN),
        st.dictionaries(
            st.sampled_from(sorted(FILTER_FIELDS)), patterns(FILTER_PATTERN), max_size=3
        ),
        st.booleans(),
    ),
    max_size=12,
)
attribute_value = st.one_of(text(VALUE), text(VALUE), st.none(), st.integers(0, 3))
attribute_values = st.fixed_dictionaries(dict.fromkeys(FILTER_FIELDS.values(), attribute_value))


def instance(pattern: str) -> st.SearchStrategy[str]:
    """Text the glob matches, or nearly: a letter may change case."""
    parts = [
        text(VALUE, max_size=2)
        if char == "*"
        else st.sampled_from(VALUE.split())
        if char == "?"
        else st.sampled_from([char, char.upper()])
        for char in pattern
    ]
    return st.tuples(*parts).map("".join)


@st.composite
def events(draw: st.DrawFn, subs: list[Subscription]) -> Event:
    """A random event, or one built to (nearly) match one of the subscriptions."""
    attributes = draw(attribute_values)
    if not subs or draw(st.booleans()):
        return event(draw(text("a b A .")), **attributes)
    aim = draw(st.sampled_from(subs))
    type = draw(st.sampled_from(aim.events).flatmap(instance))
    for attribute, alternatives in aim.filter.constraints().items():
        if draw(st.integers(0, 9)):  # else leave the random value, often a miss
            attributes[attribute] = draw(st.sampled_from(alternatives).flatmap(instance))
    return event(type, **{name: value for name, value in attributes.items() if value is not None})


def plain(pattern: str) -> bool:
    """`x`, `x*` or `*x`: no wildcard once the stars at one end are cut."""
    return any(
        "*" not in part and "?" not in part for part in (pattern.rstrip("*"), pattern.lstrip("*"))
    )


@settings(max_examples=300, deadline=None)
@given(patterns(FILTER_PATTERN.casefold()), text(VALUE.casefold()))
def test_pattern_index_never_misses(globs: list[str], value: str) -> None:
    found = looked_up(globs, value)
    for pattern in globs:
        if glob(pattern, value):
            assert pattern in found
        elif plain(pattern):  # found proves a plain pattern matches
            assert pattern not in found


@settings(max_examples=500, deadline=None)
@given(subscriptions, st.data())
def test_matcher_agrees_with_a_naive_scan(subs: list[Subscription], data: st.DataObject) -> None:
    matcher = Matcher(subs)
    assert len(matcher) == sum(s.enabled for s in subs)
    for ev in data.draw(st.lists(events(subs), min_size=1, max_size=8)):
        expected = [s for s in subs if naive_matches(s, ev)]
        assert [id(s) for s in matcher.match(ev)] == [id(s) for s in expected]
