"""Which sagas wait for a reply, and until when: an in-memory index over the saga table.

Derived state only: it is rebuilt from the table when the worker's partitions change, and
kept current by the agent after every write. Losing it costs nothing but a rebuild; the
deadlines themselves live in the table.

A rebuild reads every saga the worker holds, finished ones included, so it happens only
on a rebalance: done every 30 s "to be safe", it blocked the event loop for longer and
longer as history grew (a measurable latency tail after a minute of load). What it used
to guard against, a timeout sent but never acted on, is covered by sending a timeout
again when its saga is still overdue ``RESEND_AFTER_S`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from saga_streams.saga.state import Saga

__all__ = ["DeadlineIndex"]


class DeadlineIndex:
    #: A saga still overdue this long after its timeout was sent gets another one (the
    #: engine ignores a timeout for a deadline the saga has moved past).
    RESEND_AFTER_S = 30.0

    def __init__(self) -> None:
        self._deadlines: dict[str, int] = {}  # saga id -> deadline (epoch ms)
        #: saga id -> (the deadline a timeout was sent for, when: epoch ms)
        self._fired: dict[str, tuple[int, int]] = {}
        self._built_for: Hashable = None  # the partition assignment it was built for
        #: saga id -> (workflow, created_at) of every saga not yet ended: the metrics'
        #: in-flight and stuck gauges read it on scrape instead of the whole saga table.
        self._in_flight: dict[str, tuple[str, int]] = {}

    def track(self, saga: Saga) -> None:
        """Record a saga's latest state (called after every write of the saga)."""
        if saga.deadline is None:
            self._deadlines.pop(saga.saga_id, None)
            self._fired.pop(saga.saga_id, None)
        else:
            self._deadlines[saga.saga_id] = saga.deadline
        if saga.is_terminal:
            self._in_flight.pop(saga.saga_id, None)
        else:
            self._in_flight[saga.saga_id] = (saga.workflow, saga.created_at)

    def rebuild(self, sagas: Iterable[Saga]) -> None:
        self._deadlines = {}
        self._fired = {}  # a timeout lost in flight is sent again
        self._in_flight = {}
        for saga in sagas:
            self.track(saga)

    def in_flight_count(self) -> int:
        """How many sagas not yet ended this worker's partitions hold (asked on every
        POST /transfer, so it counts without building the list)."""
        return len(self._in_flight)

    def in_flight(self) -> list[tuple[str, int]]:
        """(workflow, created_at) of each saga not yet ended on this worker's partitions."""
        return list(self._in_flight.values())

    def refresh(self, assignment: Hashable, read_sagas: Callable[[], Iterable[Saga]]) -> None:
        """Rebuild when this worker's partitions changed."""
        if assignment != self._built_for:
            self.rebuild(read_sagas())
            self._built_for = assignment

    def due(self, now: int, limit: int) -> list[tuple[str, int]]:
        """Overdue sagas not yet told (or told long ago), oldest deadline first; marks
        them told."""
        resend_before = now - round(self.RESEND_AFTER_S * 1000)
        overdue = sorted(
            (deadline, saga_id)
            for saga_id, deadline in self._deadlines.items()
            if deadline <= now and not self._told(saga_id, deadline, resend_before)
        )[:limit]
        for deadline, saga_id in overdue:
            self._fired[saga_id] = (deadline, now)
        return [(saga_id, deadline) for deadline, saga_id in overdue]

    def _told(self, saga_id: str, deadline: int, resend_before: int) -> bool:
        fired = self._fired.get(saga_id)
        return fired is not None and fired[0] == deadline and fired[1] > resend_before
