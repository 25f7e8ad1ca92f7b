"""What `dispatcher config show` and `dispatcher config schema` print: the effective settings,
each value with where it came from and every secret hidden, and the JSON Schema of the file.

`effective_config` gives one `Setting` per leaf value, in the models' field order:

- `key`: the value's path as a `ConfigError` names it: `broker.prefetch`, `smtp.from`,
  `subscriptions[deploys-to-ops].target.headers.X-Team` (a subscription by its name). A list of
  plain values, or an empty list or mapping, is one leaf.
- `value`: the validated value, as JSON, each secret hidden as its field's marker says
  (`dispatcher.redaction`): a token, a password or a header's value is `"***"`, a webhook URL
  `"https://host/***"`, a broker, database or Redis URL shows with only its password and secret
  parameters as `***`; in every other string any known secret and URL password is `***`.
- `origin`: `FILE:LINE` where the key is written (for a subscription from `subscriptions_file`,
  in that file); `$VAR` (`$A, $B` for several) when the environment supplied the value, through
  a `${VAR}` reference or the `DISPATCHER_BROKER_URL` override; or `default`. A
  `${VAR:-fallback}` whose variable is unset or empty took its value from the file: `FILE:LINE`.

`as_json` is `{"settings": [{"key": "broker.prefetch", "value": 200, "origin": "default"}, ...]}`,
a flat list with exactly those three keys; `render_text` prints `key = value    # origin` lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias, cast

from pydantic import BaseModel, SecretStr

from dispatcher.config import REFERENCE, DataPath, Trace, load_traced
from dispatcher.redaction import SECRET, Redactor, Secrecy, secrecy, secrets_of, shown
from dispatcher.settings import BrokerSettings, Settings, SmtpSettings
from dispatcher.subscriptions.models import Filter

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
#: origins line up after the longest `key = value` up to this long; a longer one (a list of
#: events, a template) has its origin right after it
_ALIGN_UP_TO = 80


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One leaf value of the effective config, as the module docstring describes."""

    key: str
    value: JSONValue
    origin: str


class _Leaf(NamedTuple):
    path: DataPath
    value: Any  # as validated: SecretStr and all
    kind: Secrecy | None  # the marker of the field it comes from


def effective_config(path: str | Path, environ: Mapping[str, str] = os.environ) -> list[Setting]:
    """The settings in the file at `path`, `environ` supplying `${VAR}` references and
    `DISPATCHER_BROKER_URL`; the ConfigError of `load_settings` when the file is not valid."""
    settings, trace = load_traced(path, environ)
    redactor = Redactor(secrets_of(settings))
    return [
        Setting(trace.field(path), _shown(value, kind, redactor), _origin(path, trace))
        for path, value, kind in _leaves(settings, ())
    ]


def as_json(settings: Sequence[Setting]) -> dict[str, Any]:
    """`{"settings": [{"key": ..., "value": ..., "origin": ...}, ...]}`."""
    return {"settings": [dataclasses.asdict(setting) for setting in settings]}


def render_json(settings: Sequence[Setting]) -> str:
    return json.dumps(as_json(settings), indent=2, ensure_ascii=False) + "\n"


def render_text(settings: Sequence[Setting]) -> str:
    """One `key = value    # origin` line per setting, the value in JSON, origins aligned."""
    lines = [(f"{s.key} = {json.dumps(s.value, ensure_ascii=False)}", s.origin) for s in settings]
    width = max((len(text) for text, _ in lines if len(text) <= _ALIGN_UP_TO), default=0)
    return "".join(f"{text.ljust(width)}    # {origin}\n" for text, origin in lines)


def _leaves(value: Any, path: DataPath, kind: Secrecy | None = None) -> Iterator[_Leaf]:
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _leaves(getattr(value, name), (*path, field.alias or name), secrecy(field))
    elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key), kind)
    else:
        yield _Leaf(path, value, kind)


def _shown(value: Any, kind: Secrecy | None, redactor: Redactor) -> JSONValue:
    if kind is None and isinstance(value, SecretStr):
        kind = SECRET  # a SecretStr nobody marked is secret whole
    if kind is not None:
        return cast(JSONValue, shown(value, kind))
    if isinstance(value, list):
        return [_shown(item, kind, redactor) for item in value]
    if isinstance(value, dict):
        return {str(key): _shown(item, kind, redactor) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    return redactor.scrub(str(value))


def _origin(path: DataPath, trace: Trace) -> str:
    if path == ("broker", "urls") and _url_list(trace.data):
        path = ("broker", "url")  # `url: [a, b]` sets both
    names = [
        name for at, found in trace.variables.items() if at[: len(path)] == path for name in found
    ]
    if names:
        return ", ".join(f"${name}" for name in dict.fromkeys(names))
    if path in trace.where:
        file, line = trace.where[path]
        return file if line is None else f"{file}:{line}"
    return "default"


def _url_list(data: Any) -> bool:
    broker = data.get("broker")
    return isinstance(broker, dict) and isinstance(broker.get("url"), list)


#: what the loader expands: a string holding one stands for a value of any type
_REFERENCE_SCHEMA = {
    "type": "string",
    "pattern": REFERENCE,
    "description": "a ${VAR} or ${VAR:-default} reference, expanded from the environment on load",
}
#: kept on the outside of a schema wrapped to take a reference, for editors' hovers
_ANNOTATIONS = ("title", "description", "default", "examples")


def config_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a config file, and of a subscriptions file (a list, as
    `subscriptions_file` names) so one `# yaml-language-server: $schema=` serves both.

    It takes what the loader takes: `broker.url` as a list, `filter.organization` as a string,
    and a `${VAR}` reference wherever a number, a boolean, a choice or a string with a pattern
    or a length goes (the loader checks the value it expands to). Secrets are strings.
    """
    settings = Settings.model_json_schema()
    defs = settings.pop("$defs")
    defs["Settings"] = settings
    _accept_written_forms(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dispatcher config",
        "anyOf": [
            {"$ref": "#/$defs/Settings"},
            {"type": "array", "items": {"$ref": "#/$defs/Subscription"}},
        ],
        "$defs": {name: _referable(schema) for name, schema in defs.items()},
    }


def _accept_written_forms(defs: dict[str, Any]) -> None:
    """Widen the fields the loader takes in more forms than their type says (a `mode="before"`
    validator, a field name beside its alias)."""
    broker = defs[BrokerSettings.__name__]["properties"]
    url = {"type": "string", "format": "password"}
    broker["url"] = {
        "title": broker["url"]["title"],
        "description": "one amqp:// URL, or a list: the nodes of a cluster, tried in turn",
        "anyOf": [url, {"type": "array", "items": url, "minItems": 1, "maxItems": 32}],
    }
    queue = broker["dead_letter_queue"]  # null: the default, `<queue>.dead`
    queue["anyOf"] = [{key: queue.pop(key) for key in ("type", "pattern")}, {"type": "null"}]
    smtp = defs[SmtpSettings.__name__]["properties"]
    smtp["sender"] = {**smtp["from"], "description": "the same as `from`"}
    organization = defs[Filter.__name__]["properties"]["organization"]
    organization["anyOf"] = [
        {"type": "string"},
        {key: organization.pop(key) for key in ("type", "items")},
    ]


def _referable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every value that a `${VAR}` string would fail also taking one."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: _referable(sub) for name, sub in schema["properties"].items()}
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            schema[key] = [_referable(sub) for sub in schema[key]]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _referable(schema[key])
    kind = schema.get("type")
    checked_string = kind == "string" and not {"pattern", "minLength", "maxLength"}.isdisjoint(
        schema
    )
    if kind not in ("integer", "number", "boolean") and "enum" not in schema and not checked_string:
        return schema
    outside = {key: schema.pop(key) for key in _ANNOTATIONS if key in schema}
    return {**outside, "anyOf": [schema, _REFERENCE_SCHEMA]}
