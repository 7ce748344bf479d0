"""Which sagas this worker holds, newest first, overall and per status: an in-memory
index over the saga table that lets ``GET /sagas`` cost a page instead of the table.

Derived state only, like ``DeadlineIndex``: it is rebuilt from the table when the worker's
partitions change (after the recovery that follows a rebalance or a restart), and kept
current by the agent after every write. Losing it costs nothing but a rebuild.

Sagas are ordered by ``(created_at, saga_id)``, the key of the listing's cursor. Each
ordered list is a ``SortedList``: finding where a cursor falls is O(log n) and a page is
read off with ``islice``, so a page costs O(log n + limit) however many sagas there are.
One key tuple per saga is shared by the overall list, its status's list and the lookup
by saga id, so 100,000 sagas take tens of megabytes, not hundreds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from faust.types import AppT
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from saga_streams.saga.state import Saga

__all__ = ["Page", "SagaIndex", "generation"]

#: (created_at, saga_id): the order of the listing, and its cursor.
Key = tuple[int, str]
#: The saga ids of a page, newest first; how many sagas match in all; how many match and
#: come after the cursor (the page's own included).
Page = tuple[list[str], int, int]


def generation(app: AppT) -> Hashable:
    """What the index was built for: this worker's active partitions, and which rebalance
    assigned them. A rebalance that hands back the same partitions still counts, since
    another worker may have written sagas in them in between."""
    return (app.rebalancing_count, frozenset(app.assignor.assigned_actives()))


class SagaIndex:
    def __init__(self) -> None:
        self._all: Any = SortedList()  # of Key
        self._by_status: dict[str, Any] = {}  # status -> SortedList of Key
        self._held: dict[str, tuple[Key, str]] = {}  # saga id -> (its key, its status)
        self._built_for: Hashable = None

    def __len__(self) -> int:
        return len(self._held)

    def track(self, saga: Saga) -> None:
        """Record a saga's latest state (called after every write of the saga): a new one
        is added, one whose status changed moves to its new status's list."""
        self._put(saga.saga_id, saga.created_at, saga.status)

    def forget(self, saga_id: str) -> None:
        """Drop a saga removed from the table (nothing if it is not held)."""
        held = self._held.pop(saga_id, None)
        if held is not None:
            key, status = held
            self._all.remove(key)
            self._by_status[status].remove(key)

    def rebuild(self, stored: Iterable[Mapping[str, Any]]) -> None:
        """Start over from the table's sagas, as stored (``SagaStore.stored``)."""
        held: dict[str, tuple[Key, str]] = {}
        grouped: dict[str, list[Key]] = {}
        for data in stored:
            saga_id: str = data["saga_id"]
            key = (data["created_at"], saga_id)
            status = sys.intern(data["status"])
            held[saga_id] = (key, status)
            grouped.setdefault(status, []).append(key)
        # One sort per list instead of one insertion per saga.
        self._all = SortedList(key for key, _ in held.values())
        self._by_status = {status: SortedList(keys) for status, keys in grouped.items()}
        self._held = held

    def refresh(
        self, assignment: Hashable, read: Callable[[], Iterable[Mapping[str, Any]]]
    ) -> None:
        """Rebuild when this worker's partitions changed (``generation``). Call it only
        while the tables are recovered: built from a half-recovered table, the index
        would miss the rest until the next rebalance."""
        if assignment != self._built_for:
            self.rebuild(read())
            self._built_for = assignment

    def page(
        self, status: str | None, cursor: Key | None, limit: int, created_at_most: int | None
    ) -> Page:
        """The ``limit`` newest sagas (of ``status``, created at ``created_at_most`` or
        earlier) that come strictly after ``cursor``, newest first; with the count of all
        matches and of the matches after the cursor."""
        keys = self._all if status is None else self._by_status.get(status, SortedList())
        # Every key below (created_at_most + 1, "") was created at created_at_most or
        # earlier: "" sorts before every saga id.
        count: int = (
            len(keys) if created_at_most is None else keys.bisect_left((created_at_most + 1, ""))
        )
        end = count if cursor is None else min(count, keys.bisect_left(cursor))
        start = max(0, end - limit)
        return [saga_id for _, saga_id in keys.islice(start, end, reverse=True)], count, end

    def counts(self) -> dict[str, int]:
        """How many sagas this worker holds in each status (statuses it has none of are
        left out)."""
        return {status: len(keys) for status, keys in self._by_status.items() if keys}

    def _put(self, saga_id: str, created_at: int, status: str) -> None:
        held = self._held.get(saga_id)
        if held is not None:
            if held == ((created_at, saga_id), status):
                return  # most writes of a saga leave its place in the index as it was
            self.forget(saga_id)
        key = (created_at, saga_id)
        status = sys.intern(status)
        self._held[saga_id] = (key, status)
        self._all.add(key)
        keys = self._by_status.get(status)
        if keys is None:
            keys = self._by_status[status] = SortedList()
        keys.add(key)
