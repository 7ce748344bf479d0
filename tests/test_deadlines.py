"""The orchestrator's in-memory index of deadlines: what the timer tells the agent."""

from __future__ import annotations

from saga_streams.saga.state import Saga, StepState
from saga_streams.tables.deadlines import DeadlineIndex


def saga(saga_id: str, deadline: int | None) -> Saga:
    return Saga(
        saga_id=saga_id,
        workflow="transfer",
        amount_cents=100,
        from_account="A",
        to_account="B",
        status="STARTED",
        steps=(StepState(), StepState()),
        created_at=0,
        updated_at=0,
        deadline=deadline,
    )


def test_each_deadline_is_told_once_then_again_only_if_still_overdue_long_after() -> None:
    index = DeadlineIndex()
    index.track(saga("late", 1_000))
    index.track(saga("later", 5_000))
    index.track(saga("done", None))
    assert index.due(now=2_000, limit=10) == [("late", 1_000)]
    assert index.due(now=3_000, limit=10) == []  # told already
    resend = 2_000 + int(DeadlineIndex.RESEND_AFTER_S * 1000) + 1
    assert index.due(now=resend, limit=10) == [("late", 1_000), ("later", 5_000)]

    index.track(saga("late", 40_000))  # the agent moved it on: a new deadline
    index.track(saga("later", None))  # finished
    assert index.due(now=resend + 1, limit=10) == []
    assert index.due(now=40_000, limit=10) == [("late", 40_000)]


def test_oldest_first_and_at_most_limit() -> None:
    index = DeadlineIndex()
    for n in range(5):
        index.track(saga(f"s{n}", 1_000 - n))
    assert index.due(now=2_000, limit=2) == [("s4", 996), ("s3", 997)]


def test_rebuilt_from_the_table_only_when_the_partitions_change() -> None:
    index = DeadlineIndex()
    reads = []

    def read() -> list[Saga]:
        reads.append(1)
        return [saga("a", 1_000), saga("b", None)]

    index.refresh(frozenset({1, 2}), read)
    index.refresh(frozenset({1, 2}), read)
    assert len(reads) == 1
    assert index.due(now=1_000, limit=10) == [("a", 1_000)]
    index.refresh(frozenset({1}), read)  # a rebalance: rebuilt, and told again
    assert len(reads) == 2
    assert index.due(now=1_000, limit=10) == [("a", 1_000)]
