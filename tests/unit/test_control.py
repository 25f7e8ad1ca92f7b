"""Operators' commands as the daemon reads them off the control exchange: garbage is named, not
obeyed, and never raises."""

from __future__ import annotations

import pytest

from dispatcher.amqp.control import MAX_COMMAND_BYTES, EnableTarget, decode, encode


def test_a_command_survives_the_round_trip() -> None:
    command = EnableTarget("webhook:0123abcd")
    assert decode(encode(command)) == command


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"command": "drop_all_queues"}', "unknown control command 'drop_all_queues'"),
        (b'{"command": "enable_target"}', "without a target"),
        (b'{"command": "enable_target", "target": ""}', "without a target"),
        (b'{"command": "enable_target", "target": 7}', "without a target"),
        (b" " * (MAX_COMMAND_BYTES + 1), f"at most {MAX_COMMAND_BYTES}"),
    ],
)
def test_anything_else_is_refused_with_a_reason(body: bytes, why: str) -> None:
    reason = decode(body)
    assert isinstance(reason, str)
    assert why in reason
