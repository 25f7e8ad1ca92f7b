"""Sample events: what `dispatcher test-target` sends so a person can see a target work."""

from __future__ import annotations

import uuid
from typing import Any

from dispatcher.events import Event, decode, encode, new_event
from dispatcher.subscriptions.matcher import compile_glob
from dispatcher.subscriptions.models import Subscription

#: Realistic types, tried in order against a subscription's event patterns.
KNOWN_TYPES = (
    "deployment.failed",
    "deployment.succeeded",
    "deployment.started",
    "deployment.cancelled",
    "parameter.created",
    "parameter.updated",
    "parameter.deleted",
    "value.updated",
    "environment.created",
    "project.created",
    "file.uploaded",
    "file.downloaded",
    "file.deleted",
)

_DATA: dict[str, dict[str, Any]] = {
    "deployment": {
        "deployment_id": "5343eccd646aa3012a140230",
        "git_ref": "0123456789abcdef",
        "pusher": "johndoe",
        "status": "failed",
        "duration": 40,
    },
    "parameter": {"name": "DB_URL", "secret": False},
    "file": {"path": "com/acme/app/1.2.0/app-1.2.0.jar", "size": 1048576},
}

_DEFAULTS = {
    "organization": "acme",
    "project": "web",
    "environment": "prod-eu",
    "envtype": "PRODUCTION",
    "repository": "maven-releases",
    "app": "web-api",
    "actor": "johndoe",
}


def _fill(pattern: str, default: str) -> str:
    """A value the glob matches: the default if it does, else the wildcards filled in."""
    if compile_glob(pattern)(default):
        return default
    return pattern.replace("*", "sample").replace("?", "x")


def sample_type(subscription: Subscription) -> str:
    for known in KNOWN_TYPES:
        if any(compile_glob(pattern)(known) for pattern in subscription.events):
            return known
    return _fill(subscription.events[0], "sample.event")


def sample_event(subscription: Subscription) -> Event:
    """A well-formed event this subscription matches, marked as a test in its source and id."""
    type_ = sample_type(subscription)
    constraints = subscription.filter.constraints()
    extensions = {
        name: _fill(constraints[name][0], default) if name in constraints else default
        for name, default in _DEFAULTS.items()
    }
    data = dict(_DATA.get(type_.split(".", 1)[0], {"example": True}))
    if type_.startswith("deployment."):
        data["status"] = type_.split(".", 1)[1]
    body = new_event(
        type_,
        "urn:dispatcher:test-target",
        id=f"test-{uuid.uuid4()}",
        subject="v1.4.2" if type_.startswith("deployment.") else "DB_URL",
        data=data,
    )
    body.update(extensions)
    decoded = decode(encode(body))
    assert isinstance(decoded, Event), decoded
    return decoded
