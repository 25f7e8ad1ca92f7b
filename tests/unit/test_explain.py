"""`explain`: each kind of reason in examples, and agreement with the Matcher (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.events import Event, decode, encode, new_event
from dispatcher.subscriptions.explain import FILTER_ATTRIBUTES, Explanation, explain, explain_one
from dispatcher.subscriptions.matcher import Matcher
from dispatcher.subscriptions.models import Filter, Subscription
from tests.unit.test_matcher import (
    FILTER_FIELDS,
    FILTER_PATTERN,
    TYPE_PATTERN,
    event,
    events,
    filtered,
    glob,
    patterns,
    sub,
)

PROD = {"project": "Product-API", "envtype": "PRODUCTION", "environment": "prod-eu"}


def reason(subscription: Subscription, ev: Event) -> str:
    return explain_one(subscription, ev).reason


def test_a_reached_subscription_has_no_reason_fields() -> None:
    found = explain_one(
        sub("deploys", ["deployment.*"], projects=["product*"]), event("deployment.failed", **PROD)
    )
    assert found == Explanation("deploys", reached=True)
    assert found.reason == "reached"
    assert str(found) == found.describe() == "deploys: reached"


def test_disabled_comes_first_even_when_nothing_else_matches() -> None:
    off = sub("off", ["parameter.created"], enabled=False, projects=["billing"])
    found = explain_one(off, event("deployment.failed", **PROD))
    assert found == Explanation("off", reached=False, ruled_out_by="enabled")
    assert found.describe() == "off: enabled: false"


@pytest.mark.parametrize(
    ("events_", "expected"),
    [
        (
            ["deployment.succeeded"],
            "events: type 'deployment.failed' does not match 'deployment.succeeded'",
        ),
        (
            ["parameter.*", "*.created"],
            "events: type 'deployment.failed' matches none of 'parameter.*', '*.created'",
        ),
        # the patterns as the model normalised them, not as the YAML spelled them
        (
            ["DEPLOYMENT_SUCCESSFUL"],
            "events: type 'deployment.failed' does not match 'deployment.succeeded'",
        ),
    ],
)
def test_events_names_the_type_and_the_patterns(events_: list[str], expected: str) -> None:
    # events is checked before the filters, which would also rule this one out
    subscription = sub("s", events_, projects=["billing"])
    found = explain_one(subscription, event("deployment.failed", **PROD))
    assert (found.ruled_out_by, found.attribute, found.actual) == (
        "events",
        "type",
        "deployment.failed",
    )
    assert found.expected == tuple(subscription.events)
    assert found.reason == expected


@pytest.mark.parametrize(
    ("filter", "attributes", "expected"),
    [
        (
            {"environments": ["prod-*"]},
            {"environment": "staging"},
            "filter.environments: environment 'staging' does not match 'prod-*'",
        ),
        (
            {"environment_types": ["PRODUCTION", "STAGING"]},
            {"envtype": "PREVIEW"},
            "filter.environment_types: envtype 'PREVIEW' matches none of 'PRODUCTION', 'STAGING'",
        ),
        (
            {"projects": ["product*"]},
            {},
            "filter.projects: event has no project, expected 'product*'",
        ),
        (
            {"actors": ["*@acme.com", "bot"]},
            {"project": "x"},
            "filter.actors: event has no actor, expected one of '*@acme.com', 'bot'",
        ),
        # a non-string value counts as none, as in the Matcher (decode never lets one through)
        ({"apps": ["*"]}, {"app": 42}, "filter.apps: event has no app, expected '*'"),
    ],
)
def test_a_filter_names_the_field_the_value_and_the_patterns(
    filter: dict[str, list[str]], attributes: dict[str, object], expected: str
) -> None:
    found = explain_one(filtered("s", ["*"], filter), event("deployment.started", **attributes))
    assert found.reason == expected
    assert not matches(filtered("s", ["*"], filter), event("deployment.started", **attributes))


def matches(subscription: Subscription, ev: Event) -> bool:
    return Matcher([subscription]).match(ev) == [subscription]


def test_filters_are_explained_in_the_order_the_model_declares_them() -> None:
    # all four fail; the Matcher would look at project first (its anchor), explain does not
    subscription = sub(
        "s", ["*"], actors=["bot"], apps=["web"], projects=["billing"], organization=["acme"]
    )
    assert explain_one(subscription, event("x")).ruled_out_by == "filter.organization"
    found = explain_one(subscription, event("x", organization="ACME", project="Product-API"))
    assert found == Explanation(
        "s", False, "filter.projects", "project", ("billing",), "Product-API"
    )
    assert reason(subscription, event("x", organization="acme", project="billing")) == (
        "filter.apps: event has no app, expected 'web'"
    )


def test_filter_attributes_follow_the_model() -> None:
    assert list(FILTER_ATTRIBUTES) == list(Filter.model_fields)
    for field, attribute in FILTER_ATTRIBUTES.items():
        assert Filter.model_validate({field: ["x"]}).constraints() == {attribute: ["x"]}
    assert FILTER_ATTRIBUTES == FILTER_FIELDS  # and the matcher's tests read them alike


def test_record_has_stable_keys_and_is_json() -> None:
    subscription = sub("prod-only", ["deployment.*"], environments=["prod-*"])
    found = explain_one(subscription, event("deployment.failed", environment="staging"))
    assert found.record() == {
        "subscription": "prod-only",
        "reached": False,
        "ruled_out_by": "filter.environments",
        "attribute": "environment",
        "expected": ["prod-*"],
        "actual": "staging",
        "reason": "filter.environments: environment 'staging' does not match 'prod-*'",
    }
    keys = list(found.record())
    for other in explain([subscription, sub("off", ["*"], enabled=False)], event("deployment.x")):
        assert list(other.record()) == keys
        assert json.loads(json.dumps(other.record())) == other.record()


def test_long_values_are_cut_in_the_reason_only() -> None:
    long = "p" * 500
    found = explain_one(sub("s", ["*"], projects=["q*"]), event("x", project=long))
    assert found.actual == long
    assert len(found.reason) < 150
    assert found.reason.endswith("\u2026' does not match 'q*'")


def test_explain_keeps_the_subscriptions_order() -> None:
    subs = [
        sub("by-type", ["deployment.*"]),
        sub("off", ["*"], enabled=False),
        sub("other-type", ["parameter.created"]),
        sub("by-project", ["*"], projects=["product*"]),
    ]
    found = explain(subs, event("deployment.failed", **PROD))
    assert [str(e) for e in found] == [
        "by-type: reached",
        "off: enabled: false",
        "other-type: events: type 'deployment.failed' does not match 'parameter.created'",
        "by-project: reached",
    ]
    assert explain([], event("x")) == []


def test_a_decoded_event() -> None:
    body = encode(new_event("deployment.succeeded", "/ci", project="billing", envtype="staging"))
    ev = decode(body)
    assert isinstance(ev, Event)
    subs = [
        sub("prod", ["DEPLOYMENT_SUCCESSFUL"], environment_types=["production"]),
        sub("billing", ["deployment.*"], projects=["Billing"]),
    ]
    assert [e.describe() for e in explain(subs, ev)] == [
        "prod: filter.environment_types: envtype 'staging' does not match 'production'",
        "billing: reached",
    ]


# Agreement with the Matcher, on the matcher tests' near-miss events.

subscription_lists = st.lists(
    st.tuples(
        patterns(TYPE_PATTERN),
        st.dictionaries(
            st.sampled_from(sorted(FILTER_FIELDS)), patterns(FILTER_PATTERN), max_size=4
        ),
        st.booleans(),
    ),
    max_size=12,
).map(
    lambda drawn: [
        filtered(f"s{n}", events_, filter, enabled=enabled)
        for n, (events_, filter, enabled) in enumerate(drawn)
    ]
)


def passes(rule: str, subscription: Subscription, ev: Event) -> bool:
    """Whether one rule lets the event through, by the matcher tests' naive glob."""
    if rule == "enabled":
        return subscription.enabled
    if rule == "events":
        attribute, alternatives = "type", subscription.events
    else:
        field = rule.removeprefix("filter.")
        attribute, alternatives = FILTER_ATTRIBUTES[field], getattr(subscription.filter, field)
    value = ev.type if attribute == "type" else ev.attr(attribute)
    return value is not None and any(glob(p.casefold(), value.casefold()) for p in alternatives)


def rules(subscription: Subscription) -> list[str]:
    fields = [f"filter.{f}" for f in FILTER_ATTRIBUTES if getattr(subscription.filter, f)]
    return ["enabled", "events", *fields]


@settings(max_examples=500, deadline=None)
@given(subscription_lists, st.data())
def test_explain_agrees_with_the_matcher(subs: list[Subscription], data: st.DataObject) -> None:
    matcher = Matcher(subs)
    for ev in data.draw(st.lists(events(subs), min_size=1, max_size=8)):
        found = explain(subs, ev)
        assert [e.subscription for e in found] == [s.name for s in subs]
        assert {e.subscription for e in found if e.reached} == {s.name for s in matcher.match(ev)}
        for subscription, explanation in zip(subs, found, strict=True):
            if explanation.reached:
                continue
            # the reason is the first rule that fails: every one before it passes
            order = rules(subscription)
            assert explanation.ruled_out_by is not None
            first = order.index(explanation.ruled_out_by)
            assert all(passes(rule, subscription, ev) for rule in order[:first])
            assert not passes(explanation.ruled_out_by, subscription, ev)
            assert explanation.reason.startswith(f"{explanation.ruled_out_by}: ")
