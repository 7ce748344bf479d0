"""Stream time: how far a participant has read each partition of its command topics.

The ledger window (accounts.py) is measured on it rather than on the wall clock. Per
partition of each command topic, it is the latest record timestamp processed, never ahead
of this worker's clock (a record stamped in the future cannot age everything). A worker
that was down for a day reads its backlog at the backlog's own time and forgets nothing
meanwhile. Kept in memory: after a restart a partition's time starts again from its next
record.

The sweep of the archive needs more: an entry of table partition ``p`` may still be
needed by a command waiting on *any* command topic's partition ``p``, so it may go only
once every one of them is past its window (``horizon``). A partition that has nothing
left to read counts as at the worker's clock less ``ARRIVAL_MARGIN_MS``: whatever comes
on it next was sent no earlier than that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from faust.types import TP, EventT

from saga_streams.saga.policy import ARRIVAL_MARGIN_MS
from saga_streams.saga.state import now_ms

__all__ = ["CaughtUp", "StreamClock"]

#: (partition, the offset of the last record processed on it since the worker started, or
#: None) -> whether nothing is left to read on it.
CaughtUp = Callable[[TP, int | None], bool]


class StreamClock:
    def __init__(
        self, topics: Collection[str], caught_up: CaughtUp, wall: Callable[[], int] = now_ms
    ) -> None:
        self.topics = tuple(topics)
        self.caught_up = caught_up
        self.wall = wall
        self._times: dict[TP, int] = {}
        self._offsets: dict[TP, int] = {}

    def observe(self, event: EventT[bytes]) -> int:
        """Advance the stream time of ``event``'s partition past it; return that time."""
        message = event.message
        wall = self.wall()
        stamp = wall if message.timestamp is None else round(message.timestamp * 1000)
        time = min(stamp, wall)
        time = max(self._times.get(message.tp, time), time)
        self._times[message.tp] = time
        self.passed(event)
        return time

    def passed(self, event: EventT[bytes]) -> None:
        """Note ``event`` as processed without taking its time: a record that is not a
        command (junk on the topic) says nothing about when commands were sent, and
        leaving it out only keeps the stream time lower, which errs on remembering."""
        self._offsets[event.message.tp] = event.message.offset

    def now(self, tp: TP) -> int:
        """The stream time of ``tp`` (call after ``observe`` of one of its events)."""
        return self._times[tp]

    def horizon(self, partition: int) -> int | None:
        """The stream time every command topic's ``partition`` has reached, or None while
        one of them has neither been read since the start nor is known to be at its end."""
        lanes = []
        for topic in self.topics:
            tp = TP(topic, partition)
            lane = self._times.get(tp)
            if self.caught_up(tp, self._offsets.get(tp)):
                lane = max(lane or 0, self.wall() - ARRIVAL_MARGIN_MS)
            if lane is None:
                return None
            lanes.append(lane)
        return min(lanes, default=None)
