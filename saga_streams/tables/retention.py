"""Which ended sagas are due for removal: an in-memory queue per partition over the saga
table, and how long an ended saga is kept.

Derived state only, like ``deadlines.py``: rebuilt from the table when the worker's
partitions change, and kept current by the agent after every write. Each partition's
queue holds its terminal sagas ordered by when they ended, ``(updated_at, saga_id)``, so
the agent finds the expired ones by looking at the head of a queue instead of scanning
the table. A saga that is written again (a late reply recorded in its history) keeps its
``updated_at`` and its place; a saga id that starts over (a new request under an expired
id) leaves the queue until it ends again. Stale heap entries are dropped when they reach
the head.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from saga_streams.partitions import partition_for
from saga_streams.saga.dsl import Registry
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import TERMINAL, Saga

__all__ = ["RetentionQueue", "describe_duration", "effective_retention_ms"]

#: Where an ended saga stands in the order of removal: (updated_at, saga_id).
Ended = tuple[int, str]


def effective_retention_ms(saga_retention_ms: int, policy: RetryPolicy, workflows: Registry) -> int:
    """How long an ended saga is kept: ``SAGA_RETENTION``, but never less than the
    participants' ledgers remember its commands (``RetryPolicy.ledger_retention_ms`` for
    the longest workflow). Within that window a late reply or a redelivered request
    still finds the saga that explains it."""
    steps = max(len(workflow.steps) for workflow in workflows.values())
    return max(saga_retention_ms, policy.ledger_retention_ms(steps))


def describe_duration(ms: int) -> str:
    """``7 days``, ``1 hour``, ``18.5 seconds``: a retention as a person reads it."""
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size and ms % size == 0:
            count = ms // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    seconds = ms / 1000
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class RetentionQueue:
    """The terminal sagas of each partition this worker holds, oldest end first."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._heaps: dict[int, list[Ended]] = {}
        #: saga id -> its current place; a heap entry that differs is stale.
        self._ended: dict[str, Ended] = {}
        self._built_for: Hashable = None  # the partition assignment it was built for

    def __len__(self) -> int:
        return len(self._ended)

    def track(self, saga: Saga) -> None:
        """Record a saga's latest state (called after every write of the saga)."""
        self._note(saga.saga_id, saga.status, saga.updated_at)

    def forget(self, saga_id: str) -> None:
        """The saga is gone from the table (its heap entry goes stale)."""
        self._ended.pop(saga_id, None)

    def _note(self, saga_id: str, status: str, updated_at: int) -> None:
        if status not in TERMINAL:
            self._ended.pop(saga_id, None)
            return
        place = (updated_at, saga_id)
        if self._ended.get(saga_id) == place:
            return
        self._ended[saga_id] = place
        heap = self._heaps.setdefault(partition_for(saga_id, self.partitions), [])
        heapq.heappush(heap, place)

    def rebuild(self, stored: Iterable[Mapping[str, Any]]) -> None:
        """From the sagas as stored (plain dicts: no ``Saga.from_dict`` per saga)."""
        self._heaps = {}
        self._ended = {}
        for data in stored:
            self._note(data["saga_id"], data["status"], data["updated_at"])

    def refresh(
        self, assignment: Hashable, read_stored: Callable[[], Iterable[Mapping[str, Any]]]
    ) -> None:
        """Rebuild when this worker's partitions changed."""
        if assignment != self._built_for:
            self.rebuild(read_stored())
            self._built_for = assignment

    def heads(self) -> list[tuple[int, Ended]]:
        """Each partition's oldest ended saga, with its partition (stale entries at the
        head of a queue are dropped on the way)."""
        heads: list[tuple[int, Ended]] = []
        for partition, heap in sorted(self._heaps.items()):
            while heap and self._ended.get(heap[0][1]) != heap[0]:
                heapq.heappop(heap)
            if heap:
                heads.append((partition, heap[0]))
        return heads

    def take_expired(self, partition: int, ended_before: int, limit: int) -> list[Ended]:
        """Take up to ``limit`` sagas of ``partition`` that ended before ``ended_before``
        (epoch ms), oldest first, off the queue: the caller removes them from the table
        and ``forget``s them. Only the head of the queue is looked at."""
        heap = self._heaps.get(partition, [])
        taken: list[Ended] = []
        while heap and len(taken) < limit and heap[0][0] < ended_before:
            place = heapq.heappop(heap)
            if self._ended.get(place[1]) == place:
                taken.append(place)
        return taken
