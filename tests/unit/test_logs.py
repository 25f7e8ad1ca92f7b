"""Secret redaction in log events."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from dispatcher.logs import SecretRedactor, configure
from dispatcher.redaction import redact_url, url_secrets


def test_registered_secrets_and_url_passwords_are_scrubbed_everywhere() -> None:
    redactor = SecretRedactor(["xoxb-very-secret", "abc"])  # too short to register: ignored
    event = redactor(
        None,
        "info",
        {
            "event": "posting with xoxb-very-secret",
            "nested": {"list": ["amqp://user:p4ss@host:5672/", "fine"]},
            "exc": ValueError("token xoxb-very-secret rejected"),
            "n": 3,
            "short": "abc",
        },
    )
    assert event == {
        "event": "posting with ***",
        "nested": {"list": ["amqp://user:***@host:5672/", "fine"]},
        "exc": "ValueError: token *** rejected",
        "n": 3,
        "short": "abc",
    }


def test_json_output_and_stdlib_loggers_are_redacted() -> None:
    stream = io.StringIO()
    redactor = configure("info", "json", stream=stream)
    redactor.update(["hunter2-secret"])
    structlog.get_logger("t").info("hello", token="hunter2-secret")
    logging.getLogger("aiormq.connection").warning("lost amqp://guest:guest@127.0.0.1/")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "hello"
    assert lines[0]["token"] == "***"
    assert lines[0]["level"] == "info"
    assert lines[1]["event"] == "lost amqp://guest:***@127.0.0.1/"
    assert "hunter2" not in stream.getvalue()


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("amqp://guest:pw@h:5672/", "amqp://guest:***@h:5672/", ["pw"]),
        ("redis://h/0?password=pw&db=1", "redis://h/0?password=***&db=1", ["pw"]),
        ("https://h/x?token=t0k&sig=abc&a=b", "https://h/x?token=***&sig=***&a=b", ["t0k", "abc"]),
        ("redis://u:p@h/0?x=1", "redis://u:***@h/0?x=1", ["p"]),
        ("amqp://h/", "amqp://h/", []),
    ],
)
def test_urls_are_shown_without_their_secrets(url: str, shown: str, secrets: list[str]) -> None:
    assert redact_url(url) == shown
    assert url_secrets(url) == secrets
