"""What dispatcher declares, as data: names after `broker.queue`, quorum queues with an explicit
delivery limit (RabbitMQ 4 sets 20 otherwise, and drops past it where nothing dead-letters)."""

from __future__ import annotations

from dispatcher.amqp.topology import DEAD_LETTER_DELIVERY_LIMIT, topology
from dispatcher.settings import BrokerSettings


def test_every_queue_is_quorum_with_an_explicit_delivery_limit_and_named_after_the_queue() -> None:
    broker = BrokerSettings(queue="team.events", exchange="team.x", delivery_limit=7)
    spec = topology(broker, [10.0, 60.0])
    names = {queue.name: queue.arguments for queue in spec.queues}
    assert set(names) == {
        "team.events",
        "team.events.deliveries",
        "team.events.dead",
        "team.events.retry.10s",
        "team.events.retry.1m",
    }
    for arguments in names.values():
        assert arguments["x-queue-type"] == "quorum"
        assert isinstance(arguments["x-delivery-limit"], int)
    assert names["team.events"]["x-delivery-limit"] == 7
    assert names["team.events.deliveries"]["x-delivery-limit"] == 7
    # reading dead letters returns them to the queue: that must never drop one
    assert names["team.events.dead"]["x-delivery-limit"] == DEAD_LETTER_DELIVERY_LIMIT
    assert {e.name for e in spec.exchanges} == {"team.x", "team.events.dead", "team.events.control"}
