"""What every description reads the same way: the event's kind, its name, and where, by whom
and when it happened (from the attributes, else from the data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatcher.events import Event
from dispatcher.render.values import DataReader, when

Status = Literal["success", "failure", "warning", "info", "neutral"]
Pairs = list[tuple[str, str]]

#: Resources with a family of their own, and the action words producers use for each action.
RESOURCES = frozenset(
    {"parameter", "project", "environment", "value", "deployment", "file", "template", "secret"}
)
ACTIONS = {
    "created": "created",
    "updated": "updated",
    "deleted": "deleted",
    "uploaded": "uploaded",
    "downloaded": "downloaded",
    "started": "started",
    "succeeded": "succeeded",
    "successful": "succeeded",
    "success": "succeeded",
    "failed": "failed",
    "failure": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}
_WHO_PATHS = (
    "user.username",
    "user.name",
    "user.email",
    "user",
    "actor",
    "pusher",
    "type_data.pusher",
)
_WHEN_PATHS = ("created_at", "timestamp", "time")


def kind(type_: str) -> tuple[str | None, str | None]:
    """(resource, action) of a type: "parameter.created" -> ("parameter", "created"); the
    resource is None outside the known families, the action None for an unknown word."""
    words = type_.lower().split(".")
    if words[-1] == "deployment":  # Scalingo's own type: the outcome is in the data
        return "deployment", None
    resource = words[-2] if len(words) >= 2 and words[-2] in RESOURCES else None
    return resource, ACTIONS.get(words[-1])


def read_name(event: Event, reader: DataReader, resource: str | None) -> str | None:
    """The thing the event is about: the subject, else the data's name, key or path."""
    if event.subject:
        return event.subject
    if resource == "file":
        return reader.text("path", "name", "key", "filename")
    return reader.text("name", "key", "path")


@dataclass(frozen=True, slots=True)
class Facts:
    """Where and by whom, read once."""

    organization: str | None
    project: str | None
    environment: str | None  # with its type: "prod-eu (PRODUCTION)"
    repository: str | None
    app: str | None
    who: str | None
    when: str | None

    def where_fields(self) -> Pairs:
        pairs = [
            ("Organization", self.organization),
            ("Project", self.project),
            ("Environment", self.environment),
            ("Repository", self.repository),
            ("App", self.app),
        ]
        return [(label, value) for label, value in pairs if value]

    def who_when_fields(self) -> Pairs:
        pairs = [("Who", self.who), ("When", self.when)]
        return [(label, value) for label, value in pairs if value]

    def scope(self, *first: str | None) -> str:
        """The first name given, then the environment: "web / prod-eu (PRODUCTION)"."""
        primary = next((name for name in first if name), None)
        return " / ".join(part for part in (primary, self.environment) if part)


def read_facts(event: Event, reader: DataReader, resource: str | None, name: str | None) -> Facts:
    """The facts of an event; for a project or environment event its name is the project or
    environment."""
    environment = event.attr("environment")
    if resource == "environment" and name:
        environment = name
    project = event.attr("project")
    if resource == "project" and name:
        project = name
    repository = event.attr("repository") or reader.text("repository", "repository.name")
    app = event.attr("app") or reader.text("app_name", "app.name", "app")
    return Facts(
        organization=event.attr("organization"),
        project=project,
        environment=_environment(environment, event.attr("envtype")),
        repository=repository,
        app=app,
        who=event.attr("actor") or reader.text(*_WHO_PATHS),
        when=when(event.time or reader.text(*_WHEN_PATHS)),
    )


def _environment(name: str | None, envtype: str | None) -> str | None:
    if name and envtype:
        return f"{name} ({envtype})"
    return name or envtype or None
