"""Which sagas wait for a reply, and until when: an in-memory index over the saga table.

Derived state only: it is rebuilt from the table when the worker's partitions change (and
now and then, to be safe), and kept current by the agent after every write. Losing it
costs nothing but a rebuild; the deadlines themselves live in the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

from saga_streams.saga.state import Saga

__all__ = ["DeadlineIndex"]


class DeadlineIndex:
    #: Rebuild at least this often, even when the partitions did not change.
    REBUILD_EVERY_S = 30.0

    def __init__(self) -> None:
        self._deadlines: dict[str, int] = {}  # saga id -> deadline (epoch ms)
        self._fired: dict[str, int] = {}  # saga id -> deadline a timeout was sent for
        self._built_for: Hashable = None  # the partition assignment it was built for
        self._built_at = float("-inf")  # time.monotonic() of the last rebuild

    def track(self, saga: Saga) -> None:
        """Record a saga's latest state (called after every write of the saga)."""
        if saga.deadline is None:
            self._deadlines.pop(saga.saga_id, None)
            self._fired.pop(saga.saga_id, None)
        else:
            self._deadlines[saga.saga_id] = saga.deadline

    def rebuild(self, sagas: Iterable[Saga]) -> None:
        self._deadlines = {s.saga_id: s.deadline for s in sagas if s.deadline is not None}
        self._fired = {}  # a timeout lost in flight is sent again

    def refresh(self, assignment: Hashable, read_sagas: Callable[[], Iterable[Saga]]) -> None:
        """Rebuild when this worker's partitions changed, or when the index is old."""
        now = time.monotonic()
        if assignment != self._built_for or now - self._built_at > self.REBUILD_EVERY_S:
            self.rebuild(read_sagas())
            self._built_for, self._built_at = assignment, now

    def due(self, now: int, limit: int) -> list[tuple[str, int]]:
        """Overdue sagas not yet told, oldest deadline first; marks them told."""
        overdue = sorted(
            (deadline, saga_id)
            for saga_id, deadline in self._deadlines.items()
            if deadline <= now and self._fired.get(saga_id) != deadline
        )[:limit]
        for deadline, saga_id in overdue:
            self._fired[saga_id] = deadline
        return [(saga_id, deadline) for deadline, saga_id in overdue]
