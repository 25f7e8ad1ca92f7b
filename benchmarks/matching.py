"""Matching: the cost per event of finding the subscriptions that want it, against 10, 1,000 and
10,000 subscriptions of the shapes teams write (a project each, project globs, environment
types, environment globs, a few type families), in process: no broker, no network."""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks.report import Figure
from dispatcher.events import Event, decode, encode, new_event
from dispatcher.subscriptions.matcher import Matcher
from dispatcher.subscriptions.models import Subscription

SIZES = (10, 1_000, 10_000)
TYPES = (
    "deployment.started",
    "deployment.succeeded",
    "deployment.failed",
    "parameter.created",
    "parameter.updated",
    "environment.deleted",
    "file.uploaded",
)
ENVTYPES = ("PRODUCTION", "STAGING", "DEVELOPMENT", "PREVIEW")


def subscription(i: int) -> Subscription:
    """The i-th subscription: mostly one project each, some globs and broader ones."""
    shape = i % 10
    filter_: dict[str, Any] = {"organization": ["acme"]}
    events = ["deployment.*"]
    if shape < 6:
        filter_["projects"] = [f"proj-{i}"]
        if shape % 2:
            filter_["environment_types"] = ["PRODUCTION", "STAGING"]
            events = ["deployment.failed", "parameter.*"]
    elif shape == 6:
        filter_["projects"] = [f"team{i}-*"]
        events = ["*.deleted", "deployment.failed"]
    elif shape == 7:
        filter_["projects"] = [f"*-svc{i}"]
        filter_["environments"] = ["prod-*"]
    elif shape == 8:
        filter_["environments"] = [f"env-{i}", f"env-{i}-*"]
        filter_["environment_types"] = ["PRODUCTION"]
        events = ["environment.*", "deployment.*"]
    else:
        filter_["projects"] = [f"proj-{i}", f"proj-{i + 1}"]
        filter_["environment_types"] = [random.Random(i).choice(ENVTYPES)]
    return Subscription.model_validate(
        {"name": f"sub-{i}", "events": events, "filter": filter_, "target": {"type": "log"}}
    )


def events(count: int, size: int, seed: int = 7) -> list[Event]:
    """Events about the projects and environments that `size` subscriptions name (so each set
    is asked about what it holds), and some that no subscription wants."""
    rng = random.Random(seed)
    made: list[Event] = []
    for _ in range(count):
        k = rng.randrange(size)
        shape = k % 10
        project = {6: f"team{k}-web", 7: f"api-svc{k}", 8: f"app-{k}"}.get(shape, f"proj-{k}")
        document = new_event(
            rng.choice(TYPES),
            "urn:acme:bench",
            organization="acme",
            project=project if rng.random() < 0.9 else f"nobody-{k}",
            environment=rng.choice((f"env-{k}", f"prod-{k}", f"env-{k}-blue", "dev")),
            envtype=rng.choice(ENVTYPES),
        )
        decoded = decode(encode(document))
        assert isinstance(decoded, Event)
        made.append(decoded)
    return made


def cost_us(matcher: Matcher, sample: list[Event], rounds: int) -> tuple[float, float]:
    """(best microseconds per event over `rounds` passes, average matches per event)."""
    best = float("inf")
    matches = 0
    for _ in range(rounds):
        started = time.perf_counter()
        matches = sum(len(matcher.match(event)) for event in sample)
        best = min(best, (time.perf_counter() - started) / len(sample))
    return best * 1e6, matches / len(sample)


def matching(event_count: int, rounds: int) -> list[Figure]:
    figures: list[Figure] = []
    costs: dict[int, float] = {}
    for size in SIZES:
        matcher = Matcher(subscription(i) for i in range(size))
        costs[size], matched = cost_us(matcher, events(event_count, size), rounds)
        note = f"{matched:.2f} matches per event, best of {rounds} x {event_count:,} events"
        figures.append(
            Figure(f"matching.{size}", f"matching: {size:,} subscriptions", costs[size], "µs", note)
        )
    figures.append(
        Figure(
            "matching.ratio",
            f"matching: {SIZES[-1]:,} : {SIZES[0]} subscriptions (target < 2)",
            costs[SIZES[-1]] / costs[SIZES[0]],
            "x",
        )
    )
    return figures
