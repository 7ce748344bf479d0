"""Removing expired sagas: the orchestrator agent's sweep after each batch.

A terminal saga that ended more than the effective retention ago
(``tables/retention.py``) is removed from the saga table with a changelog tombstone, so
that compaction frees its space. Faust writes a table in the partition of the event
being handled, and only the agent handling an event of a partition may write it; so
after each batch, for each partition among the batch's events, the agent acts for one of
them and removes that partition's expired sagas, at most ``SLICE`` of them: a backlog
(after a long stop, or a lowered SAGA_RETENTION) drains over the following batches
without holding the event loop for long. Any event of a partition will do (a request, a
reply, a timeout, even input that is skipped). A partition without traffic is woken:
once its oldest ended saga is past the retention and it had no sweep for ``QUIET_S``,
the orchestrator's timer sends that saga a ``TimeoutElapsed`` (``wake_ups``). The engine
ignores a timeout for an ended saga, and the batch it arrives in is swept like any
other. So sagas expire on a quiet system too, and removal still only ever happens in
the agent, the table's one writer.

Before any tombstone, the sagas are folded into the settled totals of their partition
(``tables/settled.py``, where the argument for crash safety is), and the agent waits for
Kafka to acknowledge that write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import faust
from faust.types import EventT

from saga_streams.agents.batches import acting_for
from saga_streams.saga.dsl import Registry
from saga_streams.saga.state import Saga, now_ms
from saga_streams.tables.durable import DurableTable
from saga_streams.tables.retention import RetentionQueue
from saga_streams.tables.saga_index import generation
from saga_streams.tables.sagas import SagaStore
from saga_streams.tables.settled import SettledStore

__all__ = ["QUIET_S", "SLICE", "SagaExpiry"]

#: At most this many sagas are removed per partition per batch.
SLICE = 100
#: A partition with expired sagas and no sweep for this long is woken (seconds).
QUIET_S = 2.0


@dataclass
class SagaExpiry:
    app: faust.App
    sagas: SagaStore
    settled: SettledStore
    workflows: Registry
    #: How long an ended saga is kept (``effective_retention_ms``).
    retention_ms: int
    #: Wait until every write of a table so far is in its changelog (``Wiring.durable``).
    durable: Callable[[DurableTable], Awaitable[None]]
    #: Whether the tables are recovered and no rebalance is under way (``Peers.serving``).
    serving: Callable[[], bool]
    clock: Callable[[], int] = now_ms
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("saga_streams.expiry"))
    #: Told the id of each saga removed (indexes kept over the saga table).
    on_removed: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.queue = RetentionQueue(self.settled.partitions)
        #: partition -> when (``time.monotonic``) it was last swept or woken.
        self.swept_at: dict[int, float] = {}

    def track(self, saga: Saga) -> None:
        """Record a saga's latest state (called after every write of the saga)."""
        self.queue.track(saga)

    async def sweep(self, events: Sequence[EventT[bytes]]) -> int:
        """Remove the expired sagas of each partition among ``events`` (one slice each);
        return how many were removed. Call after the batch's writes and sends."""
        # The queue is rebuilt for a new assignment only once its tables are recovered:
        # built from a half-recovered table, it would miss the rest until the next
        # rebalance, and those sagas would never expire. Meanwhile nothing is removed.
        if not events or not self.serving():
            return 0
        self.queue.refresh(generation(self.app), self.sagas.stored)
        ended_before = self.clock() - self.retention_ms
        acting: dict[int, EventT[bytes]] = {}
        for event in events:
            acting.setdefault(event.message.partition, event)
        began = time.perf_counter()
        for partition in acting:
            self.swept_at[partition] = time.monotonic()
        slices = [
            (event, self._settle(partition, event, ended_before))
            for partition, event in sorted(acting.items())
        ]
        if any(changed for _, (_, changed) in slices):
            # The totals reach the changelog before any tombstone (tables/settled.py):
            # one wait for every partition's.
            await self.durable(self.settled.table)
        removed = 0
        for event, (expired, _) in slices:
            self._remove(event, expired)
            removed += len(expired)
        if removed:
            self.log.debug(
                "🧹 Removed %d expired saga(s) of %d partition(s) in %.1f ms",
                removed,
                len(acting),
                (time.perf_counter() - began) * 1000,
            )
        return removed

    def wake_ups(self) -> list[tuple[str, int]]:
        """The sagas to send a ``TimeoutElapsed`` so that quiet partitions are swept: for
        each partition this worker holds whose oldest ended saga is past the retention
        and that was neither swept nor woken for ``QUIET_S``, that saga's id and when its
        retention ended (the timeout's deadline)."""
        if not self.serving():
            return []
        self.queue.refresh(generation(self.app), self.sagas.stored)
        ended_before = self.clock() - self.retention_ms
        now = time.monotonic()
        due: list[tuple[str, int]] = []
        for partition, (updated_at, saga_id) in self.queue.heads():
            quiet = now - self.swept_at.get(partition, float("-inf")) >= QUIET_S
            if updated_at < ended_before and quiet:
                self.swept_at[partition] = now  # one wake-up per quiet spell
                due.append((saga_id, updated_at + self.retention_ms))
        return due

    def _settle(
        self, partition: int, event: EventT[bytes], ended_before: int
    ) -> tuple[list[Saga], bool]:
        """Take a slice of ``partition``'s expired sagas and fold them into its settled
        totals, acting for ``event``; return them, and whether the totals changed."""
        places = self.queue.take_expired(partition, ended_before, SLICE)
        if not places:
            return [], False
        with acting_for(event):
            expired = self._held(places)
            settled = self.settled.get(partition)
            again = [saga.saga_id for saga in expired if settled.covers(saga)]
            if again:
                # Their tombstones were lost (a crash after the totals were written).
                self.log.warning(
                    "🧹 %d expired saga(s) of partition %d already settled (e.g. %s): "
                    "removed without counting them again",
                    len(again),
                    partition,
                    again[0],
                )
            folded = settled.folded(expired, self.workflows)
            if folded != settled:
                self.settled.put(folded)
        return expired, folded != settled

    def _remove(self, event: EventT[bytes], expired: list[Saga]) -> None:
        """Tombstone the settled sagas, acting for ``event`` (their partition's)."""
        with acting_for(event):
            for saga in expired:
                del self.sagas.table[saga.saga_id]
        for saga in expired:
            self.queue.forget(saga.saga_id)
            for forget in self.on_removed:
                forget(saga.saga_id)

    def _held(self, places: Sequence[tuple[int, str]]) -> list[Saga]:
        """The sagas at ``places`` as the table holds them, acting for their partition.
        The queue is derived state: a saga the table no longer holds is forgotten, one
        it holds in another state stays as ``track`` last saw it."""
        held: list[Saga] = []
        for place in places:
            saga = self.sagas.get(place[1])
            if saga is None:
                self.queue.forget(place[1])
            elif saga.is_terminal and (saga.updated_at, saga.saga_id) == place:
                held.append(saga)
        return held
