"""Bodies as the SQL store keeps them: secrets found by walking the models, split out and put
back by JSON pointer; JSON merge patches as RFC 7386 defines them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from dispatcher.subscriptions.bodies import join_secrets, merge_patch, revealed_body, split_secrets
from dispatcher.subscriptions.models import Subscription

# RFC 7386, appendix A
MERGE_PATCH_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), MERGE_PATCH_CASES)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before  # the target is not changed in place


def webhook_body() -> dict[str, Any]:
    target = {
        "type": "webhook",
        "url": "https://example.com/hook?token=t0ken",
        "secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg==",
        "headers": {"Authorization": "Bearer b34rer", "X~Odd": "odd-value"},
    }
    return {"name": "hook", "events": ["deployment.*"], "target": target}


def test_every_secret_of_a_subscription_is_split_out_and_put_back() -> None:
    subscription = Subscription.model_validate(webhook_body())
    body, secrets = split_secrets(subscription)
    assert secrets == {
        "/target/url": "https://example.com/hook?token=t0ken",
        "/target/secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg==",
        "/target/headers/Authorization": "Bearer b34rer",
        "/target/headers/X~0Odd": "odd-value",  # RFC 6901 escaping
    }
    assert body == {
        "name": "hook",
        "events": ["deployment.*"],
        "target": {
            "type": "webhook",
            "url": None,
            "secret": None,
            "headers": {"Authorization": None, "X~Odd": None},
        },
    }
    assert join_secrets(body, secrets) == webhook_body()
    assert revealed_body(subscription) == webhook_body()
    assert Subscription.model_validate(revealed_body(subscription)) == subscription


def test_a_body_keeps_only_what_its_writer_gave() -> None:
    written = {"name": "a", "events": ["file_uploaded"], "target": {"type": "log"}, "burst": 3}
    body, secrets = split_secrets(Subscription.model_validate(written))
    assert (body, secrets) == ({**written, "events": ["file.uploaded"]}, {})


class Key(BaseModel):
    value: SecretStr


class Holder(BaseModel):
    keys: list[Key]
    by_name: dict[str, SecretStr] = {}
    note: str = ""


def test_secrets_are_found_wherever_a_model_holds_them() -> None:
    model = Holder(
        keys=[Key(value=SecretStr("k0")), Key(value=SecretStr("k1"))],
        by_name={"a/b": SecretStr("n")},
    )
    body, secrets = split_secrets(model)
    assert secrets == {"/keys/0/value": "k0", "/keys/1/value": "k1", "/by_name/a~1b": "n"}
    assert body == {"keys": [{"value": None}, {"value": None}], "by_name": {"a/b": None}}
    assert Holder.model_validate(join_secrets(body, secrets)) == model


def test_a_secret_with_no_place_in_the_body_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="/target/token") as refused:
        join_secrets({"target": {}}, {"/target/token": "xoxb-hidden"})
    assert "xoxb-hidden" not in str(refused.value)
