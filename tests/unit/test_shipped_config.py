"""The config files we ship load as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.config import load_settings, summarize

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "summary"),
    [
        ("config/dispatcher.yaml", "1 subscription (1 enabled): 1 log"),
        ("config/container.yaml", "1 subscription (1 enabled): 1 log"),
        (
            "config/examples/seeds.yaml",
            "8 subscriptions (7 enabled): 1 email, 1 log, 1 slack, 2 slack_webhook, 3 webhook",
        ),
    ],
)
def test_shipped_config_loads(path: str, summary: str) -> None:
    settings = load_settings(ROOT / path, environ={})
    assert summarize(settings) == summary


def test_seed_event_names_arrive_normalised() -> None:
    settings = load_settings(ROOT / "config/examples/seeds.yaml", environ={})
    qovery = next(s for s in settings.subscriptions if s.name == "qovery-deployments")
    assert qovery.events == [
        "deployment.started",
        "deployment.cancelled",
        "deployment.succeeded",
        "deployment.failed",
    ]
