"""One neutral description of an event, shared by every target: what happened, to what, where.

Known families (parameter, project, environment, value, file and deployment events) read their
specifics from the data; any other type gets a generic form. Either way every scalar data item
that no field shows is kept in `details`, so nothing the producer sent is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.events import Event
from dispatcher.render.facts import Status, kind, read_facts, read_name
from dispatcher.render.families import CHANGES, Family, change, deployment, generic
from dispatcher.render.values import DataReader, one_line

Fields = tuple[tuple[str, str], ...]

#: The colour of each status, for email accents (Slack's own palette).
COLOURS: dict[Status, str] = {
    "success": "#2eb67d",
    "failure": "#e01e5a",
    "warning": "#ecb22e",
    "info": "#1d9bd1",
    "neutral": "#868686",
}
_LINK_KEYS = ("url", "link", "html_url", "web_url", "deployment_url", "logs_url")
_LINK_PATHS = _LINK_KEYS + tuple(f"type_data.{key}" for key in _LINK_KEYS)


@dataclass(frozen=True, slots=True)
class Description:
    """What every target says about one event.

    `title` and `headline` are one line each; `fields` the labelled facts (what, where, the
    family's specifics, who, when), one line each; `details` the data items no field shows
    (dotted keys, values may span lines; secret-looking keys hidden); `where` a short
    "web / prod-eu (PRODUCTION)" for subjects; `link` an absolute http(s) URL with every
    character that could end a link percent-encoded; `name` what the event is about, if known.
    """

    event: Event
    title: str
    headline: str
    status: Status
    emoji: str
    colour: str
    fields: Fields
    details: Fields
    link: str | None
    where: str
    name: str | None


def describe(event: Event) -> Description:
    """The description of any valid event; never raises on odd or hostile data."""
    reader = DataReader(event.data)
    family = _family(event, reader)
    link = reader.url(*_LINK_PATHS)  # read before `rest`, so the link is not a detail too
    return Description(
        event=event,
        title=one_line(family.title),
        headline=one_line(family.headline),
        status=family.status,
        emoji=family.emoji,
        colour=COLOURS[family.status],
        fields=tuple((label, one_line(value)) for label, value in family.fields),
        details=reader.rest(),
        link=link,
        where=one_line(family.where),
        name=family.name,
    )


def _family(event: Event, reader: DataReader) -> Family:
    resource, action = kind(event.type)
    if resource == "deployment":
        name = event.subject or None  # a deployment's name is its app: the subject is extra
        facts = read_facts(event, reader, resource, name)
        return deployment(facts, reader, action, name)
    name = read_name(event, reader, resource)
    facts = read_facts(event, reader, resource, name)
    if resource is not None and action in CHANGES.get(resource, ()):
        assert action is not None  # for mypy: `in` a set of strings does not narrow
        return change(facts, reader, resource, action, name)
    return generic(event.type, action, facts, name)
