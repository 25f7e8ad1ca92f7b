"""Which values are secrets, as the models declare them, and how they are kept out of text.

A field that holds a secret says so in its type, so that every place that must hide secrets
(the log redactor, reprs, `config show`, the SQL store's split, a channel's error reasons) reads
one declaration instead of keeping its own list:

- `SECRET`: the whole value (a token, a signing key, a password; a mapping's values, as a
  webhook's custom headers). Shown as `***`.
- `SECRET_URL`: a URL that is itself a credential (a Slack incoming webhook, a webhook URL with
  a token in its path or query). Shown as `scheme://host/***`.
- `CONNECTION`: a server's URL (AMQP, database, Redis): only its password and the values of
  secret-looking query parameters are secret. Shown with those as `***`.

`secrets_of(model)` lists the secret strings of a model (nested models, lists and mappings
included); a `SecretStr` without a marker counts as `SECRET`. `Redactor` replaces those strings,
and their URL-escaped forms, in any text. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.fields import FieldInfo

REDACTED = "***"

#: query parameters whose values are secrets (`redis://h/0?password=...`, `?token=...`)
_SECRET_PARAM = re.compile(r"pass|token|secret|key|auth|sig|credential", re.IGNORECASE)

#: `scheme://user:password@` in free text, for URLs nobody registered (a library's message)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@"
)


class Secrecy(enum.Enum):
    """How much of a field's value is secret; put in its type: `Annotated[SecretStr, SECRET]`."""

    SECRET = enum.auto()
    SECRET_URL = enum.auto()
    CONNECTION = enum.auto()


SECRET = Secrecy.SECRET
SECRET_URL = Secrecy.SECRET_URL
CONNECTION = Secrecy.CONNECTION


def secrecy(field: FieldInfo) -> Secrecy | None:
    """The marker a field's type carries, if any."""
    return next((m for m in field.metadata if isinstance(m, Secrecy)), None)


def secrets_of(model: BaseModel) -> list[str]:
    """Every secret string the model holds, by its fields' markers, without duplicates."""
    return list(dict.fromkeys(secret for secret in _model_secrets(model) if secret))


def _model_secrets(model: BaseModel) -> Iterator[str]:
    for name, field in type(model).model_fields.items():
        yield from _value_secrets(getattr(model, name), secrecy(field))


def _value_secrets(value: Any, kind: Secrecy | None) -> Iterator[str]:
    if isinstance(value, BaseModel):
        yield from _model_secrets(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _value_secrets(item, kind)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _value_secrets(item, kind)
    elif isinstance(value, SecretStr):
        yield from _text_secrets(value.get_secret_value(), kind or SECRET)
    elif isinstance(value, str) and kind is not None:
        yield from _text_secrets(value, kind)


def _text_secrets(text: str, kind: Secrecy) -> Iterator[str]:
    if kind is CONNECTION:
        yield from url_secrets(text)
        return
    yield text
    if kind is SECRET_URL:
        yield from url_secrets(text)
        try:
            parts = urlsplit(text)
        except ValueError:
            return
        yield from (parts.path, parts.query)  # the credential of an incoming webhook


def url_secrets(url: str) -> list[str]:
    """The secrets a URL holds: its password, and the values of secret-looking parameters.
    A password with an unescaped `/`, `?` or `#` (which ends the host for a parser) is found
    too, and so is the password of a URL that does not parse (a malformed IPv6 host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [password] if (password := _userinfo_password(url)) else []
    stray = _stray_password(url)
    found = [stray if stray is not None else parts.password or ""]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    found += [value for key, value in pairs if _SECRET_PARAM.search(key)]
    return [secret for secret in dict.fromkeys(found) if secret]


def _stray_password(url: str) -> str | None:
    """The password of a URL with an `@` past its host: a password holding an unescaped `/`,
    `?` or `#` ends the host for a parser (`amqp://u:p/w@host/` has host `u` and port `p`).
    Everything between the user name and the last `@` is taken, which may be too much (an
    `@` in a query) but never too little. None for a URL with no `@` past its host."""
    after_host = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[1:]
    if not after_host or "@" not in after_host[0]:
        return None
    return _userinfo_password(url)


def _userinfo_password(url: str) -> str | None:
    """What stands between `scheme://user:` and the last `@`, read as written."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    return userinfo.partition(":")[2] if ":" in userinfo else None


def check_plain_authority(url: str) -> None:
    """ValueError, quoting nothing of the URL, when it has an `@` past its host: its host is
    not what the writer meant, and error messages and logs would show part of a password."""
    if _stray_password(url) is not None:
        raise ValueError(
            "has an '@' past its host: percent-encode @ / ? # in the password (%40 %2F %3F %23)"
            " and any @ in the path or query (%40)"
        )


def redact_url(url: str) -> str:
    """The URL with any password, and the value of any secret-looking query parameter,
    replaced by `***`, for logs and messages. A URL that does not parse plainly (a malformed
    host or port, an `@` past the host) shows as `scheme://***`."""
    try:
        if _stray_password(url) is not None:
            raise ValueError("an @ past the host")
        parts = urlsplit(url)
        netloc, query = parts.netloc, parts.query
        if parts.password is not None:
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    except ValueError:
        return f"{_scheme(url)}://{REDACTED}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_SECRET_PARAM.search(key) for key, _ in pairs):
        hidden = [(key, REDACTED if _SECRET_PARAM.search(key) else value) for key, value in pairs]
        query = urlencode(hidden, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_secret_url(url: str) -> str:
    """A URL that is a credential as `scheme://host[:port]/***`: where it goes, nothing more."""
    try:
        parts = urlsplit(url)
        if _stray_password(url) is not None or not parts.hostname:
            raise ValueError("no plain host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return f"{_scheme(url)}://{REDACTED}"
    return f"{parts.scheme}://{host}{port}/{REDACTED}"


def shown(value: Any, kind: Secrecy) -> Any:
    """A secret value as it may be shown: `***`, a redacted URL; lists and mappings keep their
    shape (a mapping its keys)."""
    if isinstance(value, Mapping):
        return {key: shown(item, kind) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shown(item, kind) for item in value]
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if kind is CONNECTION:
        return redact_url(text)
    if kind is SECRET_URL:
        return redact_secret_url(text)
    return REDACTED


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme) else "url"


def _escaped_forms(secret: str) -> set[str]:
    """The secret as written and as it reads in a URL, a form body or after unescaping."""
    return {secret, unquote(secret), quote(secret), quote(secret, safe=""), quote_plus(secret)}


class Redactor:
    """Replaces every registered secret (and its escaped forms) in a text with `***`, and any
    `scheme://user:password@` it was not told about. Secrets shorter than `min_length` are
    ignored: they would mangle ordinary words."""

    def __init__(self, secrets: Iterable[str] = (), *, min_length: int = 6) -> None:
        self._min_length = min_length
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Add secret values (a reload brings new ones; old ones stay hidden)."""
        forms = {form for secret in secrets for form in _escaped_forms(secret)}
        added = {form for form in forms if len(form) >= self._min_length}
        if added - self._secrets:
            self._secrets |= added
            alternatives = sorted(self._secrets, key=len, reverse=True)  # longest first
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def scrub(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        if "://" in text:
            text = _URL_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)
        return text


class _Shown:
    """A hidden value in a repr: its text bare, so a repr reads `token=***`."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return self._value if isinstance(self._value, str) else repr(self._value)


class HidesSecrets(BaseModel):
    """A model whose repr and str show its marked fields hidden (pydantic shows a `str` field,
    such as a webhook's headers, as it is), and whose validation errors quote no input (they
    would quote a refused URL whole, password and all)."""

    model_config = ConfigDict(hide_input_in_errors=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            kind = secrecy(fields[name]) if name in fields else None
            yield name, value if kind is None or value is None else _Shown(shown(value, kind))
