"""Secrets at rest: sealed with Fernet when the store has a key, kept as tagged plain text if not.

Every stored value says how it was kept (`fernet:<token>` or `plain:<text>`), so a store given a
key later still reads the rows written without one (and seals them when they are next written).
"""

from __future__ import annotations

import re

from cryptography.fernet import Fernet, InvalidToken

SEALED = "fernet:"
PLAIN = "plain:"

# 32 bytes in url-safe base64 are 43 characters and one "=" of padding: what Fernet keys look like
_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class CannotUnseal(Exception):
    """A stored secret that this box cannot open; the message says why, never what."""


class SecretBox:
    """Seals and opens secret values with one Fernet key, or keeps them plain without one."""

    def __init__(self, key: str | None) -> None:
        self._fernet = None if key is None else Fernet(_checked(key))

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str) -> str:
        if self._fernet is None:
            return PLAIN + value
        return SEALED + self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        if stored.startswith(PLAIN):
            return stored.removeprefix(PLAIN)
        if not stored.startswith(SEALED):
            raise CannotUnseal("a stored secret is in no format dispatcher knows")
        if self._fernet is None:
            raise CannotUnseal(
                "its secrets are encrypted, and no secret key is set (DISPATCHER_SECRET_KEY)"
            )
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED)).decode()
        except InvalidToken:
            raise CannotUnseal(
                "its secrets were encrypted with another key than the one set"
                " (DISPATCHER_SECRET_KEY)"
            ) from None


def _checked(key: str) -> str:
    key = key.strip()  # a key read from a file often ends with a newline
    if not _KEY.fullmatch(key):
        raise ValueError(
            "the secret key must be 32 bytes in url-safe base64 (44 characters), as made by"
            " `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
            ".decode())'`"
        )
    return key
