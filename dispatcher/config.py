"""Load the YAML config into `Settings`, reporting every problem as `file:line: field: message`.

The YAML is composed rather than loaded, so each value keeps its line; `${VAR}` references are
expanded from the environment; `subscriptions_file` is appended to the inline subscriptions; and
pydantic's errors are mapped back to the file and line each value came from. Error messages never
quote a value: it may be a secret.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dispatcher.errors import ConfigError, ConfigProblem
from dispatcher.settings import Settings, template_budget_in
from dispatcher.subscriptions.models import SlackWebhookTarget, WebhookTarget
from dispatcher.template_budget import validation_context

BROKER_URL_ENV = "DISPATCHER_BROKER_URL"
#: a config or subscriptions file larger than this is refused before it is parsed
MAX_CONFIG_BYTES_ENV = "DISPATCHER_MAX_CONFIG_BYTES"
DEFAULT_MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: more values than this means aliases nested to blow up the walk ("billion laughs")
_MAX_VALUES = 100_000
#: deeper than this would run the composer or the walk (which recurse once a level) out of stack;
#: an alias inside itself nests forever. No config needs a tenth of it.
_MAX_DEPTH = 100
_TOO_DEEP = f"nested more than {_MAX_DEPTH} levels deep"
_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
#: `${NAME}` or `${NAME:-default}`; the JSON Schema of the file takes one wherever a value goes
REFERENCE = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"
_REFERENCE = re.compile(r"\$(\$\{)|" + REFERENCE + r"|\$\{")
_BAD_REFERENCE = "a '${' must open ${NAME} or ${NAME:-default}; write $${ for a literal '${'"

#: where a value sits in the data: mapping keys and list indices from the top
DataPath = tuple[Any, ...]


class _Issue(NamedTuple):
    """A problem at a data path; its file and line are looked up when it is reported."""

    path: DataPath
    message: str
    file: str | None = None  # given, with line, when the path alone would not say
    line: int | None = None
    by_index: bool = False  # name a subscription by its index, not by its (clashing) name


class _Parsed(NamedTuple):
    file: str
    data: Any
    lines: dict[DataPath, int]
    issues: list[_Issue]
    problems: list[ConfigProblem]


class Trace(NamedTuple):
    """Where the values of a loaded config came from, for `dispatcher config show`."""

    data: Any  # the combined data, `${VAR}` references expanded
    #: the file and line each data path is written at (`$DISPATCHER_BROKER_URL`, None: overridden)
    where: dict[DataPath, tuple[str, int | None]]
    #: the environment variables whose values went into each string
    variables: dict[DataPath, list[str]]
    field: Callable[[DataPath], str]  # a data path for people: `subscriptions[ops].target.url`


class _Loader(yaml.SafeLoader):
    """SafeLoader, refusing nesting deeper than `_MAX_DEPTH` as it composes."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= _MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # types-PyYAML
            raise yaml.composer.ComposerError(None, None, _TOO_DEEP, mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Walker:
    """Turns a composed node tree into plain values, noting the line of every data path."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file, self.loader = file, loader
        self.lines: dict[DataPath, int] = {}
        self.issues: list[_Issue] = []
        self._flattened: set[int] = set()

    def value(self, node: yaml.Node, path: DataPath) -> Any:
        if len(self.lines) > _MAX_VALUES:
            raise yaml.YAMLError(f"more than {_MAX_VALUES} values: aliases nested too deep?")
        if len(path) > _MAX_DEPTH:  # composed no deeper: an alias brought its own value back
            problem = f"{_TOO_DEEP}: an alias inside its own value?"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self._entry(item, (*path, i), item) for i, item in enumerate(node.value)]
        return self._construct(node)  # scalars and explicitly tagged values

    def _entry(self, node: yaml.Node, path: DataPath, where: yaml.Node) -> Any:
        self.lines[path] = where.start_mark.line + 1
        return self.value(node, path)

    def _mapping(self, node: yaml.MappingNode, path: DataPath) -> dict[Any, Any]:
        if id(node) not in self._flattened:  # an alias brings the same node back, flattened
            self._flattened.add(id(node))
            self._find_duplicates(node, path)
            self.loader.flatten_mapping(node)  # `<<` merge keys, as yaml.safe_load does
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            result[key] = self._entry(value_node, (*path, key), key_node)
        return result

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            problem = "a key must be a plain value, not a list or mapping"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, LookupError, AttributeError):  # PyYAML's: `!!int x`, `!!int`
            problem = f"not a valid {node.tag.rsplit(':', 1)[-1]}"  # without the value
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def _find_duplicates(self, node: yaml.MappingNode, path: DataPath) -> None:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key, line = self._key(key_node), key_node.start_mark.line + 1
            if key in first:
                message = f"duplicate key (first at line {first[key]})"
                self.issues.append(_Issue((*path, key), message, self.file, line))
            first.setdefault(key, line)


def _parse(file: str, text: str) -> _Parsed:
    try:
        loader = _Loader(text)  # the reader checks every character of a string here
    except yaml.reader.ReaderError as exc:  # a control character, say
        at = text.count("\n", 0, exc.position) + 1
        why = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        return _Parsed(file, None, {}, [], [ConfigProblem(file, at, "", why)])
    walker = _Walker(file, loader)
    try:
        node = loader.get_single_node()
        data = None if node is None else walker.value(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = ConfigProblem(file, line, "", exc.problem or "not valid YAML")
        return _Parsed(file, None, {}, [], [problem])
    except yaml.YAMLError as exc:  # the reader's, which carry no line, and the walk's own
        return _Parsed(file, None, {}, [], [ConfigProblem(file, None, "", str(exc).split("\n")[0])])
    finally:
        loader.dispose()
    if node is not None:
        walker.lines[()] = node.start_mark.line + 1
    return _Parsed(file, data, walker.lines, walker.issues, [])


def read_yaml(file: str, text: str) -> Any:
    """Plain data from YAML text under the config loader's rules (nesting, aliases, control
    characters, duplicate keys): for files other than the config, such as what `dispatcher
    subscriptions import` reads. ConfigError, with lines, for what it refuses."""
    parsed = _parse(file, text)
    problems = parsed.problems + [
        ConfigProblem(file, issue.line, "", f"{_dotted(issue.path)}: {issue.message}")
        for issue in parsed.issues
    ]
    if problems:
        raise ConfigError(problems)
    return parsed.data


def _dotted(path: DataPath) -> str:
    return ".".join(str(part) for part in path)


class _TooLarge(ValueError):
    """A file over the size limit: not read whole, not parsed."""


def _read(file: str, max_bytes: int) -> str:
    """The file's text; OSError or ValueError (UnicodeDecodeError, `_TooLarge`) when it has
    none. At most `max_bytes` + 1 bytes are read, so a huge file (or a device) is never held."""
    with Path(file).open("rb") as stream:
        raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise _TooLarge(
            f"larger than {max_bytes} bytes, the limit (${MAX_CONFIG_BYTES_ENV}); not parsed"
        )
    return raw.decode("utf-8")


def max_config_bytes(environ: Mapping[str, str]) -> int:
    """The size limit of a config file: `$DISPATCHER_MAX_CONFIG_BYTES`, else 8 MiB."""
    value = environ.get(MAX_CONFIG_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_CONFIG_BYTES
    if not value.isdigit() or int(value) < 1:
        message = "must be a whole number of bytes, at least 1"
        raise ConfigError([ConfigProblem(f"${MAX_CONFIG_BYTES_ENV}", None, "", message)])
    return int(value)


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)


def _rekey(path: DataPath, prefix: DataPath, start: int) -> DataPath | None:
    """Where a subscription item's path in its own file lands in the combined list, if it is one."""
    n = len(prefix)
    if len(path) <= n or path[:n] != prefix or not isinstance(path[n], int):
        return None  # not inside an item (or the file has the wrong shape)
    return ("subscriptions", start + path[n], *path[n + 1 :])


def _subscription_items(parsed: _Parsed) -> tuple[list[Any], DataPath, list[_Issue]]:
    """The items of a subscriptions file, the path prefix they sit under, and shape problems."""
    data, file = parsed.data, parsed.file
    if data is None:
        return [], (), []
    if isinstance(data, list):
        return data, (), []
    if isinstance(data, dict) and isinstance(data.get("subscriptions", ()), list):
        extra = [key for key in data if key != "subscriptions"]
        issues = [
            _Issue((key,), _unknown_key(key, ["subscriptions"]), file, parsed.lines.get((key,)))
            for key in extra
        ]
        return data.get("subscriptions", []), ("subscriptions",), issues
    message = "must hold a list of subscriptions (or a mapping with one key, 'subscriptions')"
    return [], (), [_Issue((), message, file, parsed.lines.get(()))]


class _Config:
    """One load: the combined data, where each of its values came from, the problems so far."""

    def __init__(self, main: _Parsed, environ: Mapping[str, str], max_bytes: int) -> None:
        self.file, self.data, self.environ = main.file, main.data, environ
        self.max_bytes = max_bytes  # of each file read
        self.where: dict[DataPath, tuple[str, int | None]] = {
            path: (main.file, line) for path, line in main.lines.items()
        }
        self.issues = list(main.issues)
        self.problems: list[ConfigProblem] = []
        self.unset: set[DataPath] = set()  # values an unset variable left empty
        self.variables: dict[DataPath, list[str]] = {}  # for Trace
        self.file_start: int | None = None  # the first subscription read from subscriptions_file
        self.names_clash = False

    def load(self) -> Settings:
        self.data = self.expand(self.data, ())
        self.override_broker_url()
        self.include_subscriptions()
        self.check_names()
        settings = self.validate()
        if settings is not None:
            self.check_hosts(settings)
        problems = self.problems + [self.problem(issue) for issue in self.issues]
        if settings is None or problems:
            problems.sort(key=lambda p: (p.file != self.file, p.file, p.line or 0))
            raise ConfigError(problems)
        return settings

    def expand(self, value: Any, path: DataPath) -> Any:
        """`value` with the `${VAR}` references in its strings replaced from the environment."""
        if isinstance(value, dict):
            return {key: self.expand(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.expand(item, (*path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value

        def replace(match: re.Match[str]) -> str:
            escaped, name, default = match.groups()
            if escaped:
                return escaped
            if name is None:
                self.issues.append(_Issue(path, _BAD_REFERENCE))
                return match.group()
            found = self.environ.get(name)
            if found is None and default is None:
                self.issues.append(_Issue(path, f"environment variable {name} is not set"))
                self.unset.add(path)
            if found is not None and (found or default is None):
                self.variables.setdefault(path, []).append(name)
            return default if default is not None and not found else found or ""

        return _REFERENCE.sub(replace, value)

    def override_broker_url(self) -> None:
        url, broker = self.environ.get(BROKER_URL_ENV), self.data.get("broker", {})
        if not url or not isinstance(broker, dict):
            return
        path = ("broker", "url")
        self.data["broker"] = {**broker, "url": url}
        self.where[path] = ("$" + BROKER_URL_ENV, None)
        self.issues = [issue for issue in self.issues if issue.path != path]
        self.unset.discard(path)
        self.variables = {p: v for p, v in self.variables.items() if p[: len(path)] != path}

    def include_subscriptions(self) -> None:
        ref, inline = self.data.get("subscriptions_file"), self.data.get("subscriptions", [])
        if not isinstance(ref, str) or not ref or not isinstance(inline, list):
            return  # pydantic reports either of the wrong type
        file = os.path.join(os.path.dirname(self.file), ref)
        try:
            parsed = _parse(file, _read(file, self.max_bytes))
        except (OSError, ValueError) as exc:
            message = f"cannot read {file}: {_reason(exc)}"
            self.issues.append(_Issue(("subscriptions_file",), message))
            return
        items, prefix, issues = _subscription_items(parsed)
        start = self.file_start = len(inline)
        self.data["subscriptions"] = inline + [
            self.expand(item, ("subscriptions", start + index)) for index, item in enumerate(items)
        ]
        for path, line in parsed.lines.items():
            if (moved := _rekey(path, prefix, start)) is not None:
                self.where[moved] = (file, line)
        for issue in parsed.issues + issues:
            self.issues.append(issue._replace(path=_rekey(issue.path, prefix, start) or issue.path))
        self.problems += parsed.problems

    def check_names(self) -> None:
        items = self.data.get("subscriptions")
        first: dict[str, int] = {}
        for index, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in first:
                file, line = self.locate(("subscriptions", first[name], "name"))
                at = file if line is None else f"{file}:{line}"
                message = f"name {name!r} is already used at {at}"
                self.issues.append(_Issue(("subscriptions", index, "name"), message, by_index=True))
                self.names_clash = True
            first.setdefault(name, index)

    def check_hosts(self, settings: Settings) -> None:
        """URLs whose host the network guard refuses outright (a literal address or localhost
        that `delivery.allowed_networks` does not allow): an error now, with its line, rather
        than a refusal at every delivery. Names are judged when they are resolved, at send time."""
        guard = settings.delivery.guard
        urls: list[tuple[DataPath, str]] = [(("slack", "api_url"), settings.slack.api_url)]
        for index, sub in enumerate(settings.subscriptions):
            if isinstance(sub.target, WebhookTarget | SlackWebhookTarget):
                urls.append(
                    (("subscriptions", index, "target", "url"), sub.target.url.get_secret_value())
                )
        for path, url in urls:
            refused = guard.host_refusal(url)
            if refused is not None:
                self.issues.append(_Issue(path, f"refused: {refused}"))

    def validate(self) -> Settings | None:
        try:
            context = validation_context(template_budget_in(self.data))
            return Settings.model_validate(self.data, context=context)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                issue = _issue_of(error)
                # an emptied value fails again, and the model's own check of names has no line
                if issue.path not in self.unset and (issue.path or not self.names_clash):
                    self.issues.append(issue)
            return None

    def problem(self, issue: _Issue) -> ConfigProblem:
        file, line = (issue.file, issue.line) if issue.file else self.locate(issue.path)
        return ConfigProblem(file, line, self.field(issue.path, issue.by_index), issue.message)

    def locate(self, path: DataPath) -> tuple[str, int | None]:
        """The file and line of the longest prefix of `path` that has a line."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.where:
                return self.where[path[:end]]
        return self.file, None

    def field(self, path: DataPath, by_index: bool = False) -> str:
        """`path` for people: `subscriptions[deploys-to-ops].target.url`, `broker.prefetch`."""
        text, node = "", self.data
        for depth, key in enumerate(path):
            if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                text += f"[{self._label(path[:depth], node[key], key, by_index)}]"
                node = node[key]
            else:
                text += f".{key}" if text else str(key)
                node = node.get(key) if isinstance(node, dict) else None
        return text

    def _label(self, parent: DataPath, item: Any, index: int, by_index: bool) -> str:
        if parent != ("subscriptions",):
            return str(index)
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name and not by_index:
            return name
        start = self.file_start
        return str(index - start if start is not None and index >= start else index)


def _issue_of(error: ErrorDetails) -> _Issue:
    loc = tuple(error["loc"])
    path, _ = _resolve(loc)
    if error["type"] == "extra_forbidden":
        _, parent = _resolve(loc[:-1])
        fields = list(parent.model_fields) if _model(parent) else []
        return _Issue(path, _unknown_key(loc[-1], fields))
    ctx = error.get("ctx", {})
    tag = str(ctx.get("discriminator", "type")).strip("'")
    if error["type"] == "union_tag_invalid":
        return _Issue((*path, tag), f"must be one of {ctx.get('expected_tags', '')}")
    if error["type"] == "union_tag_not_found":
        return _Issue((*path, tag), "Field required")
    return _Issue(path, error["msg"].removeprefix("Value error, "))


def _resolve(loc: DataPath) -> tuple[DataPath, Any]:
    """The data path of a pydantic `loc` (less the tags of discriminated unions) and its type."""
    path: list[Any] = []
    kind: Any = Settings
    for key in loc:
        member = _tagged_member(kind, key)
        if member is not None:
            kind = member
            continue
        path.append(key)
        model = _model(kind)
        if model is not None:
            field = model.model_fields.get(key) if isinstance(key, str) else None
            kind = None if field is None else field.annotation
        else:
            args = get_args(kind)
            kind = args[-1] if get_origin(kind) in (list, dict) else None
    return tuple(path), kind


def _model(kind: Any) -> type[BaseModel] | None:
    plain_class = isinstance(kind, type) and get_origin(kind) is None
    return kind if plain_class and issubclass(kind, BaseModel) else None


def _tagged_member(kind: Any, key: Any) -> type[BaseModel] | None:
    """The member of the union `kind` that `key` is the tag of, if it is one."""
    if get_origin(kind) not in (Union, UnionType):
        return None
    for member in get_args(kind):
        model = _model(member)
        literals = [] if model is None else [f.annotation for f in model.model_fields.values()]
        if any(get_origin(lit) is Literal and key in get_args(lit) for lit in literals):
            return model
    return None


def _unknown_key(key: Any, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def load_settings(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings in the YAML file at `path`, or ConfigError listing every problem found.

    `environ` (default `os.environ`) supplies `${VAR}` references and `DISPATCHER_BROKER_URL`.
    """
    return load_traced(path, environ)[0]


def load_traced(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Settings, Trace]:
    """`load_settings`, and where each value came from."""
    file = os.fspath(path)
    environ = os.environ if environ is None else environ
    max_bytes = max_config_bytes(environ)
    try:
        text = _read(file, max_bytes)
    except _TooLarge as exc:
        raise ConfigError([ConfigProblem(file, None, "", str(exc))]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError([ConfigProblem(file, None, "", f"cannot read: {_reason(exc)}")]) from None
    main = _parse(file, text)
    if main.problems:
        raise ConfigError(main.problems)
    if main.data is None:
        main = main._replace(data={})
    if not isinstance(main.data, dict):
        message = "the top level must be a mapping of settings"
        raise ConfigError([ConfigProblem(file, main.lines.get(()), "", message)])
    config = _Config(main, environ, max_bytes)
    settings = config.load()
    return settings, Trace(config.data, config.where, config.variables, config.field)


def summarize(settings: Settings) -> str:
    """One line for `dispatcher check-config`: `5 subscriptions (4 enabled): 3 webhook, 2 log`."""
    subscriptions = settings.subscriptions
    if not subscriptions:
        return "0 subscriptions"
    enabled = sum(sub.enabled for sub in subscriptions)
    by_type = Counter(sub.target.type for sub in subscriptions)
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(by_type.items()))
    noun = "subscription" if len(subscriptions) == 1 else "subscriptions"
    return f"{len(subscriptions)} {noun} ({enabled} enabled): {kinds}"
