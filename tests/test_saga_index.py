"""The orchestrator's in-memory listing index: pages of GET /sagas without the table scan,
checked against a brute-force listing of the same sagas."""

from __future__ import annotations

import random
from typing import Any

import pytest

from saga_streams.saga.state import STATUSES, Saga, StepState
from saga_streams.tables.saga_index import Page, SagaIndex


def saga(saga_id: str, created_at: int, status: str = "STARTED") -> Saga:
    return Saga(
        saga_id=saga_id,
        workflow="transfer",
        amount_cents=100,
        from_account="A",
        to_account="B",
        status=status,  # type: ignore[arg-type]
        steps=(StepState(), StepState()),
        created_at=created_at,
        updated_at=created_at,
    )


def brute_force(
    held: dict[str, Saga],
    status: str | None,
    cursor: tuple[int, str] | None,
    limit: int,
    created_at_most: int | None,
) -> Page:
    """The listing as it was before the index: filter every saga, sort, cut."""
    matching = [
        (s.created_at, s.saga_id)
        for s in held.values()
        if status in (None, s.status)
        and (created_at_most is None or s.created_at <= created_at_most)
    ]
    after = sorted((k for k in matching if cursor is None or k < cursor), reverse=True)
    return [saga_id for _, saga_id in after[:limit]], len(matching), len(after)


def random_sagas(rng: random.Random, n: int) -> dict[str, Saga]:
    # Few distinct creation times, so that many sagas share one and the saga id decides.
    return {
        f"s{i:05d}": saga(f"s{i:05d}", rng.randrange(50), rng.choice(STATUSES)) for i in range(n)
    }


def all_pages(index: SagaIndex, status: str | None, limit: int, most: int | None) -> list[str]:
    """Follow the cursor from the first page to the last, as a client does."""
    listed: list[str] = []
    cursor: tuple[int, str] | None = None
    while True:
        ids, _, remaining = index.page(status, cursor, limit, most)
        listed += ids
        if remaining <= limit:
            return listed
        cursor = index_key(index, ids[-1])


def index_key(index: SagaIndex, saga_id: str) -> tuple[int, str]:
    key: tuple[int, str] = index._held[saga_id][0]
    return key


@pytest.mark.parametrize("seed", range(20))
def test_pages_counts_and_cursors_match_a_brute_force_listing(seed: int) -> None:
    rng = random.Random(seed)
    held = random_sagas(rng, rng.randrange(0, 300))
    index = SagaIndex()
    for s in held.values():
        index.track(s)
    # Status changes move sagas between the status lists.
    for saga_id in rng.sample(sorted(held), len(held) // 3):
        moved = saga(saga_id, held[saga_id].created_at, rng.choice(STATUSES))
        held[saga_id] = moved
        index.track(moved)
    keys = sorted((s.created_at, s.saga_id) for s in held.values())
    for _ in range(200):
        status = rng.choice([None, *STATUSES])
        cursor = rng.choice(
            [None, (rng.randrange(-1, 52), f"s{rng.randrange(400):05d}"), *keys[:3]]
        )
        limit = rng.randrange(1, 40)
        most = rng.choice([None, rng.randrange(-1, 52)])
        assert index.page(status, cursor, limit, most) == brute_force(
            held, status, cursor, limit, most
        ), (status, cursor, limit, most)
    assert len(index) == len(held)
    expected_counts = {st: sum(s.status == st for s in held.values()) for st in STATUSES}
    assert index.counts() == {st: n for st, n in expected_counts.items() if n}


def test_following_the_cursor_lists_every_match_once_newest_first() -> None:
    rng = random.Random(7)
    held = random_sagas(rng, 500)
    index = SagaIndex()
    for s in held.values():
        index.track(s)
    for status, most in [(None, None), ("COMPLETED", None), (None, 20), ("FAILED", 30)]:
        expected, _, _ = brute_force(held, status, None, len(held), most)
        assert all_pages(index, status, 7, most) == expected


def test_a_cursor_excludes_its_own_saga_and_a_page_is_newest_first() -> None:
    index = SagaIndex()
    for s in (saga("a", 10), saga("b", 10), saga("c", 20), saga("d", 5, "COMPLETED")):
        index.track(s)
    assert index.page(None, None, 2, None) == (["c", "b"], 4, 4)
    assert index.page(None, (10, "b"), 2, None) == (["a", "d"], 4, 2)
    assert index.page(None, (10, "a"), 2, None) == (["d"], 4, 1)
    assert index.page("COMPLETED", None, 10, None) == (["d"], 1, 1)
    assert index.page("COMPENSATING", None, 10, None) == ([], 0, 0)
    assert index.page(None, None, 10, 10) == (["b", "a", "d"], 3, 3)  # created at 10 or before
    assert index.page(None, None, 10, 9) == (["d"], 1, 1)


def test_a_status_change_moves_the_saga_and_a_rewrite_changes_nothing() -> None:
    index = SagaIndex()
    index.track(saga("a", 10))
    index.track(saga("a", 10))  # written again, same status
    assert index.counts() == {"STARTED": 1}
    index.track(saga("a", 10, "COMPLETED"))
    assert index.counts() == {"COMPLETED": 1}
    assert index.page("STARTED", None, 10, None) == ([], 0, 0)
    assert index.page("COMPLETED", None, 10, None) == (["a"], 1, 1)
    assert index.page(None, None, 10, None) == (["a"], 1, 1)


def test_forget_removes_a_saga_from_every_list() -> None:
    index = SagaIndex()
    for s in (saga("a", 1, "COMPLETED"), saga("b", 2, "FAILED"), saga("c", 3, "COMPLETED")):
        index.track(s)
    index.forget("a")
    index.forget("never-held")  # nothing to do
    assert len(index) == 2
    assert index.page(None, None, 10, None) == (["c", "b"], 2, 2)
    assert index.page("COMPLETED", None, 10, None) == (["c"], 1, 1)
    assert index.counts() == {"COMPLETED": 1, "FAILED": 1}
    index.track(saga("a", 1, "COMPLETED"))  # a saga forgotten can come back
    assert index.page("COMPLETED", None, 10, None) == (["c", "a"], 2, 2)


def stored(sagas: list[Saga]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in sagas]


def test_rebuild_starts_over_from_the_stored_sagas() -> None:
    index = SagaIndex()
    index.track(saga("gone", 99))  # in a partition this worker no longer holds
    rows = stored([saga("a", 1), saga("b", 2, "COMPLETED"), saga("c", 3)])
    index.rebuild(rows)
    assert index.page(None, None, 10, None) == (["c", "b", "a"], 3, 3)
    assert index.counts() == {"STARTED": 2, "COMPLETED": 1}
    index.track(saga("a", 1, "FAILED"))  # tracked as usual after a rebuild
    assert index.counts() == {"STARTED": 1, "COMPLETED": 1, "FAILED": 1}


def test_refresh_rebuilds_only_when_the_assignment_changes() -> None:
    index = SagaIndex()
    reads: list[int] = []

    def read(rows: list[Saga]) -> Any:
        def reader() -> list[dict[str, Any]]:
            reads.append(len(rows))
            return stored(rows)

        return reader

    index.refresh((1, frozenset({0, 1})), read([saga("a", 1)]))
    index.refresh((1, frozenset({0, 1})), read([saga("x", 1)]))  # same: no read
    assert (reads, index.page(None, None, 10, None)) == ([1], (["a"], 1, 1))
    # Another rebalance, even one handing back the same partitions, rebuilds.
    index.refresh((2, frozenset({0, 1})), read([saga("a", 1), saga("b", 2)]))
    assert (reads, index.page(None, None, 10, None)) == ([1, 2], (["b", "a"], 2, 2))
