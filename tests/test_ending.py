"""The one wait until every saga has ended (saga_streams.local.ending), on scripted
listings: it returns once they ended, is bounded in time and count, and says what is
still pending."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from saga_streams.local.ending import SagasStillRunning, wait_until_ended

Saga = dict[str, Any]


def saga(saga_id: str, status: str) -> Saga:
    return {"saga_id": saga_id, "status": status}


def listings(*polls: list[Saga] | OSError) -> tuple[Callable[[], list[Saga]], list[int]]:
    """A ``list_sagas`` answering ``polls`` in turn (the last one again and again), and
    a list whose length counts the calls."""
    calls: list[int] = []

    def list_sagas() -> list[Saga]:
        answer = polls[min(len(calls), len(polls) - 1)]
        calls.append(1)
        if isinstance(answer, OSError):
            raise answer
        return answer

    return list_sagas, calls


def test_returns_once_the_awaited_sagas_have_ended() -> None:
    list_sagas, calls = listings(
        [saga("s1", "STARTED")],
        [saga("s1", "COMPENSATING"), saga("s2", "STARTED")],
        [saga("s1", "ROLLED_BACK"), saga("s2", "COMPLETED"), saga("other", "STARTED")],
    )
    ending = wait_until_ended(list_sagas, ["s1", "s2"], timeout=5, interval=0.01)
    assert ending.ended and ending.polls == len(calls) == 3
    assert (ending.in_flight, ending.unknown, ending.pending()) == ([], [], "")
    assert {k: v["status"] for k, v in ending.by_id().items()} == {
        "s1": "ROLLED_BACK",
        "s2": "COMPLETED",
        "other": "STARTED",  # not awaited: it may still run
    }
    assert ending.raise_unless_ended() is ending


def test_every_listed_waits_for_sagas_not_named_too() -> None:
    list_sagas, calls = listings(
        [saga("s1", "COMPLETED"), saga("other", "STARTED")],
        [saga("s1", "COMPLETED"), saga("other", "FAILED")],
    )
    ending = wait_until_ended(list_sagas, ["s1"], every_listed=True, timeout=5, interval=0.01)
    assert ending.ended and len(calls) == 2


def test_bounded_in_count_and_time_and_says_what_is_pending() -> None:
    list_sagas, calls = listings([saga("s1", "STARTED"), saga("s2", "COMPLETED")])
    ending = wait_until_ended(list_sagas, ["s1", "s2", "s3"], timeout=0.2, interval=0.05)
    assert not ending.ended
    assert 1 <= len(calls) == ending.polls <= 0.2 / 0.05 + 1
    assert 0.2 <= ending.seconds < 2
    assert (ending.in_flight, ending.unknown) == (["s1"], ["s3"])
    assert ending.pending() == "1 sagas in flight ['s1'], 1 sagas not listed ['s3']"
    with pytest.raises(SagasStillRunning, match=r"after 0.2s .*in flight \['s1'\]"):
        ending.raise_unless_ended()


def test_a_failed_listing_shows_nothing_new() -> None:
    list_sagas, calls = listings(OSError("restarting"), [saga("s1", "COMPLETED")])
    assert wait_until_ended(list_sagas, ["s1"], timeout=5, interval=0.01).ended
    assert len(calls) == 2

    never, _ = listings(OSError("down"))
    ending = wait_until_ended(never, every_listed=True, timeout=0.05, interval=0.01)
    assert not ending.ended and ending.sagas == []
    assert ending.pending() == "the orchestrator never answered"


def test_the_final_condition_is_asked_once_every_saga_has_ended() -> None:
    list_sagas, _ = listings([saga("s1", "STARTED")], [saga("s1", "COMPLETED")])
    asked: list[int] = []

    def caught_up() -> bool:
        asked.append(1)
        return len(asked) >= 2

    ending = wait_until_ended(list_sagas, ["s1"], timeout=5, interval=0.01, settled=caught_up)
    assert ending.ended and len(asked) == 2 and ending.polls == 3

    list_sagas, _ = listings([saga("s1", "COMPLETED")])
    ending = wait_until_ended(
        list_sagas, ["s1"], timeout=0.05, interval=0.01, settled=lambda: False
    )
    assert not ending.ended and not ending.settled
    assert ending.pending() == "every saga ended, but the final condition did not hold"
