"""describe() and text_message(): each family in a table, the generic form, the formatting."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.events import Event
from dispatcher.render import Description, describe, text_message
from dispatcher.render.values import duration, size, when
from dispatcher.subscriptions.models import Subscription

WHERE = {"project": "web", "environment": "prod-eu", "envtype": "PRODUCTION"}


def make(type_: str, data: Any = None, **attributes: str) -> Event:
    attributes = {"time": "2026-11-23T08:30:00Z", **attributes}
    everything = {"specversion": "1.0", "id": "evt-1", "source": "urn:acme:test", "type": type_}
    return Event("evt-1", "urn:acme:test", type_, {**everything, **attributes}, data, b"{}")


def fields(description: Description) -> dict[str, str]:
    return dict(description.fields)


# --- created / updated / deleted -------------------------------------------------------------

STATUS_OF = {"created": "info", "updated": "info", "deleted": "warning"}
EMOJI_OF = {"created": ":heavy_plus_sign:", "updated": ":pencil2:", "deleted": ":wastebasket:"}


@pytest.mark.parametrize("action", ["created", "updated", "deleted"])
@pytest.mark.parametrize("resource", ["parameter", "value"])
def test_named_changes(resource: str, action: str) -> None:
    event = make(
        f"{resource}.{action}", {"parameter": "DB"}, subject="DB_URL", actor="alice", **WHERE
    )
    d = describe(event)
    label = resource.capitalize()
    assert d.title == f"{label} DB_URL {action}"
    assert d.headline == f"{label} DB_URL {action} in web / prod-eu (PRODUCTION) by alice"
    assert (d.status, d.emoji) == (STATUS_OF[action], EMOJI_OF[action])
    assert fields(d)[label] == "DB_URL"
    assert fields(d)["Environment"] == "prod-eu (PRODUCTION)"
    assert fields(d)["Who"] == "alice"
    assert fields(d)["When"] == "2026-11-23 08:30:00 UTC"
    assert d.where == "web / prod-eu (PRODUCTION)"


@pytest.mark.parametrize("action", ["created", "updated", "deleted"])
def test_project_changes(action: str) -> None:
    d = describe(make(f"project.{action}", subject="analytics", organization="acme", actor="bob"))
    assert d.title == f"Project analytics {action}"
    assert d.headline == f"Project analytics {action} in acme by bob"
    assert fields(d)["Project"] == "analytics"
    assert fields(d)["Organization"] == "acme"
    assert d.status == STATUS_OF[action]


@pytest.mark.parametrize("action", ["created", "updated", "deleted"])
def test_environment_changes(action: str) -> None:
    d = describe(make(f"environment.{action}", subject="staging", envtype="STAGING", project="web"))
    assert d.title == f"Environment staging {action}"
    assert d.headline == f"Environment staging (STAGING) {action} in web"
    assert fields(d)["Environment"] == "staging (STAGING)"
    assert d.status == STATUS_OF[action]


@pytest.mark.parametrize(
    ("action", "headline", "status", "emoji"),
    [
        ("uploaded", "File app-1.2.jar uploaded to maven-releases by ci", "info", ":arrow_up:"),
        (
            "downloaded",
            "File app-1.2.jar downloaded from maven-releases by ci",
            "info",
            ":arrow_down:",
        ),
        (
            "deleted",
            "File app-1.2.jar deleted from maven-releases by ci",
            "warning",
            ":wastebasket:",
        ),
        (
            "created",
            "File app-1.2.jar created in maven-releases by ci",
            "info",
            ":heavy_plus_sign:",
        ),
        ("updated", "File app-1.2.jar updated in maven-releases by ci", "info", ":pencil2:"),
    ],
)
def test_file_events(action: str, headline: str, status: str, emoji: str) -> None:
    data = {"path": "com/acme/app/1.2/app-1.2.jar", "size": 5 * 1024 * 1024, "sha256": "ab12"}
    d = describe(make(f"file.{action}", data, repository="maven-releases", actor="ci"))
    assert d.title == f"File app-1.2.jar {action}"
    assert (d.headline, d.status, d.emoji) == (headline, status, emoji)
    assert fields(d)["File"] == "com/acme/app/1.2/app-1.2.jar"
    assert fields(d)["Size"] == "5.0 MiB"
    assert fields(d)["Repository"] == "maven-releases"
    assert d.details == (("sha256", "ab12"),)  # path and size are shown as fields


def test_names_come_from_the_subject_then_name_key_path() -> None:
    assert describe(make("parameter.created", {"name": "A", "key": "B"})).name == "A"
    assert describe(make("parameter.created", {"key": "B", "path": "C"})).name == "B"
    assert describe(make("parameter.created", {"path": "C"})).name == "C"
    assert describe(make("parameter.created", {"name": "A"}, subject="S")).name == "S"
    nameless = describe(make("parameter.created"))
    assert (nameless.title, nameless.name) == ("Parameter created", None)


# --- deployments -----------------------------------------------------------------------------


def scalingo(status: str, duration_s: int = 40) -> dict[str, Any]:
    """Scalingo's deployment notification body (seed 004)."""
    return {
        "id": "54dcdd4a73636100011a0000",
        "created_at": "2015-02-12T18:05:14.226+01:00",
        "user": {"username": "johndoe", "email": "john@doe.com", "id": "51e6bc626edfe40bbb000001"},
        "app_id": "5343eccd646173000a140000",
        "app_name": "appname",
        "type": "deployment",
        "type_data": {
            "deployment_id": "5343eccd646aa3012a140230",
            "pusher": "johndoe",
            "git_ref": "0123456789abcdef",
            "status": status,
            "duration": duration_s,
        },
    }


FLAT = {"git_ref": "0123abc", "pusher": "johndoe", "duration": 40}


@pytest.mark.parametrize(
    ("type_", "data", "title", "headline", "status"),
    [
        (
            "deployment.started",
            scalingo("building"),
            "Deployment started",
            "Deployment of appname started by johndoe",
            "info",
        ),
        (
            "deployment.succeeded",
            scalingo("success", 185),
            "Deployment succeeded",
            "Deployment of appname succeeded in 3 min 5 s",
            "success",
        ),
        (
            "deployment.failed",
            scalingo("build-error"),
            "Deployment failed",
            "Deployment of appname failed after 40 s (build-error)",
            "failure",
        ),
        (
            "deployment.cancelled",
            scalingo("aborted"),
            "Deployment cancelled",
            "Deployment of appname was cancelled after 40 s (aborted)",
            "warning",
        ),
        (  # Scalingo's own type: the outcome is read from the status
            "deployment",
            scalingo("crashed-error"),
            "Deployment failed",
            "Deployment of appname failed after 40 s (crashed-error)",
            "failure",
        ),
    ],
)
def test_scalingo_deployments(
    type_: str, data: dict[str, Any], title: str, headline: str, status: str
) -> None:
    d = describe(make(type_, data))
    assert (d.title, d.headline, d.status) == (title, headline, status)
    assert fields(d)["App"] == "appname"
    assert fields(d)["Git ref"] == "0123456789ab"
    assert fields(d)["Status"] == data["type_data"]["status"]
    assert fields(d)["Who"] == "johndoe"
    assert "Pushed by" not in fields(d)  # the same person as Who
    assert ("type_data.deployment_id", "5343eccd646aa3012a140230") in d.details
    assert "type_data.status" not in dict(d.details)


@pytest.mark.parametrize(
    ("action", "headline", "status", "emoji"),
    [
        ("started", "Deployment of web to prod-eu (PRODUCTION) started by deploy-bot", "info", ":rocket:"),  # noqa: E501
        ("succeeded", "Deployment of web to prod-eu (PRODUCTION) succeeded in 40 s", "success", ":white_check_mark:"),  # noqa: E501
        ("failed", "Deployment of web to prod-eu (PRODUCTION) failed after 40 s", "failure", ":x:"),
        ("cancelled", "Deployment of web to prod-eu (PRODUCTION) was cancelled after 40 s", "warning", ":no_entry_sign:"),  # noqa: E501
    ],
)  # fmt: skip
def test_flat_deployments(action: str, headline: str, status: str, emoji: str) -> None:
    d = describe(make(f"deployment.{action}", FLAT, subject="v1.4.2", actor="deploy-bot", **WHERE))
    assert (d.title, d.headline, d.status, d.emoji) == (
        f"Deployment {action}",
        headline,
        status,
        emoji,
    )
    assert fields(d) == {
        "Project": "web",
        "Environment": "prod-eu (PRODUCTION)",
        "Subject": "v1.4.2",
        "Duration": "40 s",
        "Git ref": "0123abc",
        "Pushed by": "johndoe",
        "Who": "deploy-bot",
        "When": "2026-11-23 08:30:00 UTC",
    }
    assert d.where == "web / prod-eu (PRODUCTION)"
    assert d.details == ()


def test_deployment_link_and_app_attribute() -> None:
    data = {**FLAT, "logs_url": "https://ci.example.com/runs/7"}
    d = describe(make("deployment.failed", data, app="api", **WHERE))
    assert d.headline.startswith("Deployment of api to prod-eu (PRODUCTION) failed")
    assert d.link == "https://ci.example.com/runs/7"
    assert "logs_url" not in dict(d.details)


# --- the generic form ------------------------------------------------------------------------


def test_generic_type_shows_every_scalar() -> None:
    data = {"widget": "w-7", "count": 3, "nested": {"ok": True, "none": None}, "tags": ["a", "b"]}
    d = describe(make("acme.thing.happened", data, subject="thing-1", project="web"))
    assert d.title == "Acme thing happened"
    assert d.headline == "Acme thing happened: thing-1 in web"
    assert (d.status, d.emoji) == ("neutral", ":bell:")
    assert fields(d)["Type"] == "acme.thing.happened"
    assert fields(d)["Subject"] == "thing-1"
    assert d.details == (("widget", "w-7"), ("count", "3"), ("nested.ok", "true"), ("tags", "a, b"))


@pytest.mark.parametrize(
    ("type_", "status"),
    [("build.errored", "failure"), ("job.failed", "failure"), ("job.succeeded", "success"),
     ("disk.warning", "warning"), ("parameter.renamed", "neutral"), ("x", "neutral")],
)  # fmt: skip
def test_generic_status_from_the_last_word(type_: str, status: str) -> None:
    assert describe(make(type_)).status == status


def test_non_object_data_is_a_detail() -> None:
    assert describe(make("acme.note", "plain text")).details == (("data", "plain text"),)
    assert describe(make("acme.note", [1, 2])).details == (("data", "1, 2"),)


# --- what every family shares ----------------------------------------------------------------


def test_actor_attribute_wins_over_data_user() -> None:
    data = {"user": {"username": "johndoe"}}
    assert fields(describe(make("acme.x", data, actor="alice")))["Who"] == "alice"
    assert fields(describe(make("acme.x", data)))["Who"] == "johndoe"


def test_secret_looking_data_is_hidden() -> None:
    data = {"api_token": "xoxb-1", "password": "hunter2", "value": "ok"}
    details = dict(describe(make("value.updated", data)).details)
    assert details == {"api_token": "(hidden)", "password": "(hidden)", "value": "ok"}


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2"),
        ("http://example.com/<!channel>", "http://example.com/%3C!channel%3E"),
        ("https://example.com/a b|c", "https://example.com/a%20b%7Cc"),
        ("javascript:alert(1)", None),
        ("/relative/path", None),
        ("https://", None),
    ],
)
def test_links_are_absolute_http_and_safe(url: str, link: str | None) -> None:
    d = describe(make("acme.x", {"url": url}))
    assert d.link == link
    assert ("url" in dict(d.details)) is (link is None)  # an unusable URL is still shown


def test_one_line_titles_and_short_names() -> None:
    d = describe(make("parameter.created", subject="A\nWho: forged\r\n" + "x" * 500))
    assert "\n" not in d.title + d.headline
    assert "\r" not in d.title + d.headline
    assert len(d.title) < 130
    assert d.name is not None
    assert d.name.endswith("x" * 500)


@pytest.mark.parametrize(
    ("time", "shown"),
    [
        ("2026-11-23T08:30:00Z", "2026-11-23 08:30:00 UTC"),
        ("2026-11-23T09:30:00.123456+01:00", "2026-11-23 08:30:00 UTC"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60Z"),  # a leap second, shown as sent
        (None, None),
    ],
)
def test_when(time: str | None, shown: str | None) -> None:
    assert when(time) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.25, "0.25 s"), (5, "5 s"), (40, "40 s"), (60, "1 min"), (185, "3 min 5 s"),
     (3600, "1 h"), (3720, "1 h 2 min")],
)  # fmt: skip
def test_duration(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("size_bytes", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**5, "3072.0 TiB")],  # noqa: E501
)  # fmt: skip
def test_size(size_bytes: int, shown: str) -> None:
    assert size(size_bytes) == shown


# --- text_message ----------------------------------------------------------------------------

SUBSCRIPTION = Subscription.model_validate(
    {"name": "audit", "events": ["*"], "target": {"type": "log"}}
)


def test_text_message_is_a_headline_then_label_lines() -> None:
    event = make("deployment.failed", {**FLAT, "url": "https://ci.example.com/1"}, **WHERE)
    lines = text_message(event, SUBSCRIPTION).splitlines()
    assert lines[0] == "Deployment of web to prod-eu (PRODUCTION) failed after 40 s"
    assert "Git ref: 0123abc" in lines
    assert "Link: https://ci.example.com/1" in lines
    assert ":x:" not in "\n".join(lines)


def test_text_message_values_cannot_forge_lines() -> None:
    event = make("acme.x", {"note": "first\nWho: admin"})
    lines = text_message(event, SUBSCRIPTION).splitlines()
    assert "note: first" in lines
    assert "Who: admin" not in lines
    assert "    Who: admin" in lines
