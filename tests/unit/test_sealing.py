"""Secrets at rest: sealed with a Fernet key, plain (and tagged) without one, refused with a
reason that never shows a secret or a key."""

from __future__ import annotations

import pytest

from dispatcher.subscriptions.sealing import CannotUnseal, SecretBox

KEY = "SkeIPL4LigPvAlQDnL_N4bvFO9spLJ8L3uzY5wDpDz4="
OTHER_KEY = "3NLYNXAGmAbf9SJkUHkW16e1QqHjhASuEESiBRkKdZw="


def test_a_sealed_secret_opens_with_its_key_only() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("xoxb-secret")
    assert box.encrypted
    assert sealed.startswith("fernet:")
    assert "xoxb-secret" not in sealed
    assert box.open(sealed) == "xoxb-secret"
    assert SecretBox(KEY + "\n").open(sealed) == "xoxb-secret"  # as read from a file
    for other, reason in ((SecretBox(OTHER_KEY), "another key"), (SecretBox(None), "no secret")):
        with pytest.raises(CannotUnseal, match=reason) as refused:
            other.open(sealed)
        assert "xoxb-secret" not in str(refused.value)


def test_without_a_key_secrets_are_kept_plain_and_any_box_reads_them() -> None:
    plain = SecretBox(None).seal("xoxb-secret")
    assert not SecretBox(None).encrypted
    assert plain == "plain:xoxb-secret"
    assert SecretBox(None).open(plain) == SecretBox(KEY).open(plain) == "xoxb-secret"
    with pytest.raises(CannotUnseal, match="format"):
        SecretBox(KEY).open("xoxb-secret")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not-a-key",
        KEY[:-1],
        KEY[:-2] + "==",
        "+" * 43 + "=",  # standard base64, not url-safe
        KEY + KEY,
    ],
)
def test_a_key_that_is_not_a_fernet_key_is_refused_without_being_shown(key: str) -> None:
    with pytest.raises(ValueError, match="32 bytes in url-safe base64") as refused:
        SecretBox(key)
    assert not key or key not in str(refused.value)
