"""AckWindow: batched acks never cover an event still running (tables, and hypothesis against a
model of the broker's outstanding tags)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.amqp.acks import AckWindow


def window(delivered: int, hold: int = 50) -> AckWindow:
    acks = AckWindow(hold=hold)
    for tag in range(1, delivered + 1):
        acks.delivered(tag)
    return acks


def test_in_order_endings_make_one_multiple_ack() -> None:
    acks = window(3)
    for tag in (1, 2, 3):
        acks.ended(tag, ack=True)
    assert acks.ready == 3
    assert acks.take() == [(3, True)]
    assert acks.take() == []
    assert acks.ready == 0


def test_a_running_event_stops_the_window() -> None:
    acks = window(4)
    for tag in (1, 3, 4):
        acks.ended(tag, ack=True)
    assert acks.take() == [(1, True)]  # 2 still runs: 3 and 4 wait behind it
    acks.ended(2, ack=True)
    assert acks.ready == 3
    assert acks.take() == [(4, True)]


def test_nothing_ends_first_nothing_to_take() -> None:
    acks = window(2)
    acks.ended(2, ack=True)
    assert acks.ready == 0
    assert acks.take() == []


def test_nacked_events_are_passed_over_but_not_acked_alone() -> None:
    acks = window(3)
    acks.ended(1, ack=False)
    acks.ended(2, ack=False)
    assert acks.take() == []  # only nacks: no ack to send
    acks.ended(3, ack=True)
    assert acks.take() == [(3, True)]  # covers 1 and 2, which the broker no longer holds


def test_a_skipped_tag_switches_to_single_acks() -> None:
    acks = window(2)
    acks.ended(2, ack=True)  # behind 1, still running
    acks.delivered(4)  # 3 never reached us: a multiple ack could cover it
    acks.ended(4, ack=True)
    acks.ended(1, ack=True)
    assert sorted(acks.take()) == [(1, False), (2, False), (4, False)]


def test_a_channel_that_does_not_start_at_one_gets_single_acks() -> None:
    acks = AckWindow()
    acks.delivered(5)
    acks.ended(5, ack=True)
    assert acks.take() == [(5, False)]


@pytest.mark.parametrize("first", [1, 2])
def test_taken_acks_are_not_taken_again(first: int) -> None:
    acks = window(2)
    acks.ended(first, ack=True)
    taken = acks.take()
    acks.ended(3 - first, ack=True)
    assert taken + acks.take() == ([(1, True), (2, True)] if first == 1 else [(2, True)])


@given(
    case=st.integers(min_value=1, max_value=40).flatmap(
        lambda n: st.tuples(
            st.permutations(range(1, n + 1)),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
        )
    ),
    hold=st.integers(min_value=1, max_value=50),
)
def test_acks_match_the_broker_model(
    case: tuple[list[int], list[bool], list[bool]], hold: int
) -> None:
    """Events end in any order, some nacked, with takes in between: every ack sent covers only
    ended events, each acked event is acked exactly once, and in the end all of them are."""
    order, nacked, take_after = case
    acks = window(len(order), hold)
    outstanding = set(order)  # the broker's unacked tags
    ended: set[int] = set()
    acked: list[int] = []

    def send() -> None:
        for tag, multiple in acks.take():
            covered = {t for t in outstanding if t <= tag} if multiple else {tag}
            assert covered <= ended, "an ack covered an event still running"
            assert covered, "an ack that covers nothing"
            acked.extend(covered)
            outstanding.difference_update(covered)

    for step, tag in enumerate(order):
        ended.add(tag)
        if nacked[tag - 1]:
            outstanding.discard(tag)  # nacked with requeue: no longer outstanding
            acks.ended(tag, ack=False)
        else:
            acks.ended(tag, ack=True)
        if take_after[step]:
            send()
    send()
    assert sorted(acked) == sorted(t for t in order if not nacked[t - 1])
    assert not outstanding


def test_events_ended_behind_a_running_one_are_acked_singly_once_enough_wait() -> None:
    """A slow event must not hold back the acks of everything after it: they count against the
    prefetch, and the consumer would stop."""
    acks = AckWindow(hold=3)
    for tag in range(1, 7):
        acks.delivered(tag)
    acks.ended(2, ack=True)
    acks.ended(3, ack=True)
    assert acks.take() == []  # 1 still runs; two waiting are below the hold
    acks.ended(4, ack=True)
    assert acks.ready == 3
    assert acks.take() == [(2, False), (3, False), (4, False)]
    acks.ended(1, ack=True)
    acks.ended(5, ack=True)
    assert acks.take() == [(5, True)]  # passes over 2-4, already acked, and covers 1 and 5
    acks.ended(6, ack=True)
    assert acks.take() == [(6, True)]
