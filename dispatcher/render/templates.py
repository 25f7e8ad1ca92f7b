"""Per-subscription templates: Jinja2 in a sandbox, checked at config load, never fatal at send.

A template sees `event` (the attributes and `data`), `data`, `subscription` (`name`,
`description`) and `describe` (the `Description`), plus a `mrkdwn` filter that escapes for
Slack. A missing data item renders empty (data differs between events); anything the sandbox
forbids raises. Every render is held to a `TemplateBudget` (steps, seconds, characters; see
`dispatcher/template_budget.py`): at load a template that exceeds it is a config error, and at
send time a failing template, over budget or not, is logged and the default rendering is used.

When a template's output goes to Slack (`slack_blocks`, and `text` as Slack's fallback), every
string it sees from the event is escaped for mrkdwn before it renders, whatever the template
does with it (`tojson` included), so no event can make a team's template ping `<!channel>`; there
the `mrkdwn` filter does nothing more.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog
from jinja2 import Template, TemplateError, TemplateSyntaxError, Undefined

from dispatcher.errors import TemplateBudgetExceeded
from dispatcher.events import Event, encode
from dispatcher.render.describe import Description, describe
from dispatcher.render.sandbox import Sandbox, metered_render
from dispatcher.render.values import escape_mrkdwn, shorten
from dispatcher.template_budget import DEFAULT_BUDGET, TemplateBudget

if TYPE_CHECKING:
    from dispatcher.subscriptions.models import Subscription

log = structlog.get_logger(__name__)

Part = Literal["text", "slack_blocks", "email_subject", "email_html"]
PARTS: tuple[Part, ...] = ("text", "slack_blocks", "email_subject", "email_html")
_ERROR_CHARS = 300

#: What rendering a team's template may raise: Jinja's errors (the sandbox's SecurityError among
#: them), the budget's, and Python's for an operation the template asked for (`1/0`, `'a' + 1`,
#: `x|dictsort` of a list). Anything else is a bug in dispatcher, which the fuzz tests look for.
RENDER_ERRORS = (
    TemplateError,
    TemplateBudgetExceeded,
    ArithmeticError,
    AttributeError,
    LookupError,
    TypeError,
    ValueError,
)


def _sandbox(*, autoescape: bool, escaped_input: bool = False) -> Sandbox:
    mrkdwn = str if escaped_input else escape_mrkdwn
    environment = Sandbox(autoescape=autoescape, filters={"mrkdwn": mrkdwn})
    # A missing data item is null in `tojson`, as it is empty in text: data differs by event.
    environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
    return environment


def _json_default(value: object) -> None:
    if isinstance(value, Undefined):
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: Text, subjects and Slack JSON are not HTML: no autoescaping. `email_html` autoescapes.
_TEXT = _sandbox(autoescape=False)
_HTML = _sandbox(autoescape=True)
_SLACK = _sandbox(autoescape=False, escaped_input=True)  # its context is escaped for mrkdwn


def compile_template(source: str, *, html: bool = False) -> Template:
    """The template, or ValueError("template line N: <message>") for a syntax error."""
    try:
        return (_HTML if html else _TEXT).from_string(source)
    except TemplateSyntaxError as error:
        raise ValueError(f"template line {error.lineno}: {error.message}") from None
    except (RecursionError, SyntaxError, MemoryError):  # Jinja's parser or Python's compiler
        raise ValueError("nested too deeply to compile") from None


@functools.lru_cache(maxsize=512)
def _compiled(source: str, html: bool, slack: bool) -> Template:
    if slack:
        return _SLACK.from_string(source)  # compiled once already by compile_template at load
    return compile_template(source, html=html)


def validate_template(part: Part, source: str, budget: TemplateBudget = DEFAULT_BUDGET) -> None:
    """Compile one template and render it against the sample event within `budget`, or
    ValueError."""
    template = compile_template(source, html=part == "email_html")
    values = context(sample_description(), "sample", "")
    try:
        rendered = metered_render(template, values, budget)
    except TemplateBudgetExceeded as error:
        raise ValueError(
            f"exceeds delivery.template_budget on a sample deployment event: {_explain(error)}"
        ) from None
    except Exception as error:  # noqa: BLE001 (any failure of a team's template is a config error)
        raise ValueError(f"fails on a sample deployment event: {_explain(error)}") from None
    if part == "slack_blocks":
        parse_blocks(rendered)


def context(
    description: Description, name: str, summary: str, *, slack: bool = False
) -> dict[str, Any]:
    """What a template sees; for Slack, with every string from the event escaped for mrkdwn."""
    event = description.event
    attributes: dict[str, Any] = {**event.attributes, "data": event.data}
    data = event.data
    if slack:
        attributes, data = _escaped(attributes), _escaped(data)
        description = _escaped_description(description)
    return {
        "event": attributes,
        "data": data,
        "subscription": {"name": name, "description": summary},
        "describe": description,
    }


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape_mrkdwn(value)
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_escaped(item) for item in value)
    return value


def _escaped_description(description: Description) -> Description:
    return dataclasses.replace(
        description,
        title=escape_mrkdwn(description.title),
        headline=escape_mrkdwn(description.headline),
        fields=_escaped(description.fields),
        details=_escaped(description.details),
        link=None if description.link is None else escape_mrkdwn(description.link),
        where=escape_mrkdwn(description.where),
        name=None if description.name is None else escape_mrkdwn(description.name),
    )


def source_of(subscription: Subscription, part: Part) -> str | None:
    """The subscription's template for that part, if it has one."""
    templates = subscription.template
    return None if templates is None else getattr(templates, part)


def render(
    source: str | None,
    part: Part,
    description: Description,
    subscription: Subscription,
    *,
    slack: bool = False,
    budget: TemplateBudget = DEFAULT_BUDGET,
) -> str | None:
    """The rendered template, or None when there is none or it failed or ran over `budget`
    (logged as a warning). With `slack`, the template sees the event escaped for mrkdwn."""
    if source is None:
        return None
    try:
        template = _compiled(source, part == "email_html", slack)
        values = context(description, subscription.name, subscription.description, slack=slack)
        return metered_render(template, values, budget)
    except Exception as error:  # noqa: BLE001 (bad data must not stop a notification: fall back)
        _warn(part, description, subscription, error)
        return None


def render_blocks(
    description: Description,
    subscription: Subscription,
    budget: TemplateBudget = DEFAULT_BUDGET,
) -> list[dict[str, Any]] | None:
    """The `slack_blocks` template rendered and parsed, or None (a failure is logged)."""
    rendered = render(
        source_of(subscription, "slack_blocks"),
        "slack_blocks",
        description,
        subscription,
        slack=True,
        budget=budget,
    )
    if rendered is None:
        return None
    try:
        return parse_blocks(rendered)
    except ValueError as error:
        _warn("slack_blocks", description, subscription, error)
        return None


def parse_blocks(rendered: str) -> list[dict[str, Any]]:
    """Rendered `slack_blocks` as a non-empty JSON list of objects each with a `type`."""
    try:
        blocks = orjson.loads(rendered)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"does not render to JSON: {error}") from None
    if not isinstance(blocks, list) or not blocks:
        raise ValueError("must render to a non-empty JSON list of Block Kit blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise ValueError(f"block {index} is not a JSON object with a 'type'")
    return blocks


def _warn(
    part: Part, description: Description, subscription: Subscription, error: Exception
) -> None:
    log.warning(
        "template_failed_using_default",
        part=part,
        subscription=subscription.name,
        event_id=description.event.id,
        error=_explain(error),
    )


def _explain(error: Exception) -> str:
    """ "template line 3: ZeroDivisionError: division by zero"."""
    line, frame = None, error.__traceback__
    while frame is not None:  # Jinja rewrites tracebacks so template lines show as <template>
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    where = f"template line {line}: " if line is not None else ""
    return shorten(f"{where}{type(error).__name__}: {error}", _ERROR_CHARS)


_SAMPLE = {
    "specversion": "1.0",
    "id": "0b6f1c1e-6d4e-4c55-9a7e-3f0a9b1c2d3e",
    "source": "urn:acme:deployer",
    "type": "deployment.failed",
    "time": "2026-11-23T08:30:00Z",
    "subject": "v1.4.2",
    "organization": "acme",
    "project": "web",
    "environment": "prod-eu",
    "envtype": "PRODUCTION",
    "app": "web-api",
    "actor": "johndoe",
    "datacontenttype": "application/json",
    "data": {
        "git_ref": "0123456789abcdef0123456789abcdef01234567",
        "pusher": "johndoe",
        "duration": 40,
        "status": "build-error",
        "url": "https://deploy.example.com/web/deployments/42",
        "user": {"username": "johndoe", "email": "john@example.com"},
    },
}


@functools.cache
def sample_description() -> Description:
    """The description of a realistic deployment.failed event that templates are checked on."""
    attributes = {name: value for name, value in _SAMPLE.items() if name != "data"}
    event = Event(
        str(_SAMPLE["id"]),
        str(_SAMPLE["source"]),
        str(_SAMPLE["type"]),
        attributes,
        _SAMPLE["data"],
        encode(_SAMPLE),
    )
    return describe(event)
