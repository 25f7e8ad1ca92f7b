"""The families: created/updated/deleted changes (files uploaded and downloaded too),
deployments (flat data or Scalingo's `type_data`), and a generic form for any other type."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from dispatcher.render.facts import ACTIONS, Facts, Pairs, Status
from dispatcher.render.values import DataReader, duration, git_ref, shorten, size

NAME_CHARS = 100  # a longer name is shortened in titles and headlines (fields show it whole)

#: The status and emoji an action word suggests.
_STYLES: dict[str, tuple[Status, str]] = {
    "created": ("info", ":heavy_plus_sign:"),
    "updated": ("info", ":pencil2:"),
    "deleted": ("warning", ":wastebasket:"),
    "uploaded": ("info", ":arrow_up:"),
    "downloaded": ("info", ":arrow_down:"),
    "started": ("info", ":rocket:"),
    "succeeded": ("success", ":white_check_mark:"),
    "failed": ("failure", ":x:"),
    "cancelled": ("warning", ":no_entry_sign:"),
    "running": ("info", ":hourglass_flowing_sand:"),
    "warning": ("warning", ":warning:"),
}
_NEUTRAL: tuple[Status, str] = ("neutral", ":bell:")
#: The actions each resource's change family takes; other actions get the generic form.
CHANGES = {
    "file": frozenset({"created", "updated", "deleted", "uploaded", "downloaded"}),
    **{
        resource: frozenset({"created", "updated", "deleted"})
        for resource in ("parameter", "project", "environment", "value", "template", "secret")
    },
}
_FILE_PREPOSITIONS = {"uploaded": "to", "downloaded": "from", "deleted": "from"}
_WORDS = re.compile(r"[^._:/\-\s]+")


@dataclass(frozen=True, slots=True)
class Family:
    """A family's part of a description."""

    title: str
    headline: str
    status: Status
    emoji: str
    fields: Pairs
    where: str
    name: str | None


def change(
    facts: Facts, reader: DataReader, resource: str, action: str, name: str | None
) -> Family:
    """`parameter.created`, `environment.deleted`, `file.uploaded`, ..."""
    label = resource.capitalize()
    shown = _short_name(name, resource)
    title = f"{label} {shown} {action}" if shown else f"{label} {action}"
    if resource == "environment":  # the headline names it with its type
        about = f"{label} {shorten(facts.environment, NAME_CHARS)}" if facts.environment else label
        where = facts.project or facts.app or facts.organization or ""
    else:
        about = f"{label} {shown}" if shown else label
        where = _change_scope(facts, resource)
    preposition = _FILE_PREPOSITIONS.get(action, "in") if resource == "file" else "in"
    headline = f"{about} {action}" + (f" {preposition} {where}" if where else "") + _by(facts)
    status, emoji = _STYLES[action]
    fields = _lead(reader, resource, label, name) + facts.where_fields() + facts.who_when_fields()
    return Family(title, headline, status, emoji, fields, where, name)


def _short_name(name: str | None, resource: str) -> str | None:
    """The name for a title: a file by its base name ("app-1.2.jar"), at most NAME_CHARS."""
    if not name:
        return None
    if resource == "file":
        name = posixpath.basename(name.rstrip("/")) or name
    return shorten(name, NAME_CHARS)


def _change_scope(facts: Facts, resource: str) -> str:
    if resource == "project":
        return facts.organization or ""
    if resource == "file":
        return facts.scope(facts.repository, facts.project, facts.app)
    return facts.scope(facts.project, facts.app, facts.repository)


def _lead(reader: DataReader, resource: str, label: str, name: str | None) -> Pairs:
    """The fields naming what changed, shown first."""
    pairs: Pairs = []
    if name and resource not in ("project", "environment"):  # those two are where-fields
        pairs.append((label, name))
    if resource == "value":
        parameter = reader.text("parameter", "parameter_name", "parameter.name")
        if parameter:
            pairs.append(("Parameter", parameter))
    if resource == "file":
        size_bytes = reader.number("size", "size_bytes", "bytes")
        if size_bytes is not None:
            pairs.append(("Size", size(size_bytes)))
    return pairs


def deployment(facts: Facts, reader: DataReader, action: str | None, name: str | None) -> Family:
    """`deployment.started|succeeded|failed|cancelled`, flat data or Scalingo's shape."""
    state = reader.text("type_data.status", "status")
    outcome = action if action in ("started", "succeeded", "failed", "cancelled") else None
    outcome = outcome or _outcome_of(state)
    took = _took(reader)
    what = facts.app or facts.project
    headline = (
        "Deployment"
        + (f" of {shorten(what, NAME_CHARS)}" if what else "")
        + (f" to {shorten(facts.environment, NAME_CHARS)}" if facts.environment else "")
        + _ending(outcome, state, took, facts.who)
    )
    title = f"Deployment {outcome}" if outcome != "running" else _running_title(state)
    ref = reader.text("type_data.git_ref", "git_ref", "type_data.commit", "commit")
    pusher = reader.text("type_data.pusher", "pusher")
    specifics = [
        ("Subject", name),
        ("Status", state),  # the producer's own word; the title already says the outcome
        ("Duration", took),
        ("Git ref", git_ref(ref) if ref else None),
        ("Pushed by", pusher if pusher != facts.who else None),
    ]
    fields = (
        facts.where_fields()
        + [(label, value) for label, value in specifics if value]
        + facts.who_when_fields()
    )
    status, emoji = _STYLES[outcome]
    where = facts.scope(facts.app, facts.project)
    return Family(title, headline, status, emoji, fields, where, name)


def _took(reader: DataReader) -> str | None:
    seconds = reader.number("type_data.duration", "duration", "duration_s")
    if seconds is None:
        milliseconds = reader.number("duration_ms")
        seconds = None if milliseconds is None else milliseconds / 1000
    return None if seconds is None else duration(seconds)


def _outcome_of(state: str | None) -> str:
    """Scalingo's statuses: success, aborted, build-error, crashed-error, ..., building."""
    word = (state or "").lower()
    if word in ACTIONS:
        return ACTIONS[word]
    if "error" in word or "fail" in word or "crash" in word:
        return "failed"
    if "abort" in word or "cancel" in word:
        return "cancelled"
    return "running"


def _running_title(state: str | None) -> str:
    return f"Deployment {shorten(state, 40)}" if state else "Deployment in progress"


def _ending(outcome: str, state: str | None, took: str | None, who: str | None) -> str:
    if outcome == "started":
        return " started" + (f" by {who}" if who else "")
    if outcome == "running":
        return f" is {shorten(state, 40)}" if state else " is in progress"
    verb = {"succeeded": " succeeded", "failed": " failed", "cancelled": " was cancelled"}[outcome]
    after = (" in " if outcome == "succeeded" else " after ") + took if took else ""
    why = f" ({shorten(state, 40)})" if state and ACTIONS.get(state.lower()) != outcome else ""
    return verb + after + why


def generic(type_: str, action: str | None, facts: Facts, name: str | None) -> Family:
    """Any other type: "acme.thing.happened" reads "Acme thing happened"."""
    text = " ".join(_WORDS.findall(type_)) or type_
    title = shorten(text[:1].upper() + text[1:], NAME_CHARS)
    where = facts.scope(facts.project, facts.app, facts.repository)
    headline = (
        title
        + (f": {shorten(name, NAME_CHARS)}" if name else "")
        + (f" in {where}" if where else "")
        + _by(facts)
    )
    status, emoji = _STYLES.get(action or _outcome_word(type_), _NEUTRAL)
    lead = [("Type", type_)] + ([("Subject", name)] if name else [])
    fields = lead + facts.where_fields() + facts.who_when_fields()
    return Family(title, headline, status, emoji, fields, where, name)


def _outcome_word(type_: str) -> str:
    """A failure or warning the last word of an unknown type announces ("build.errored")."""
    word = type_.rsplit(".", 1)[-1].lower()
    if "error" in word or "fail" in word or "crash" in word:
        return "failed"
    return "warning" if "warn" in word else ""


def _by(facts: Facts) -> str:
    return f" by {shorten(facts.who, NAME_CHARS)}" if facts.who else ""
