"""What the expired sagas of each partition add up to: the orchestrator's settled totals.

Once an ended saga is removed from the saga table (``tables/retention.py``), the audit
can no longer read what it did to the balances. So before removing sagas, the agent
folds them into one row per partition of this table: how many expired in each status,
and the summed per-account effects of the COMPLETED ones (``effects.py``). The audit adds
the totals to what the sagas still held say (``audit.py``).

Each row lives in the partition whose sagas it sums: its key is chosen to hash there
(``settled_key``), so it is written while acting for an event of that partition, like
the sagas, and ``DurableTable.misplaced`` finds nothing wrong with it.

Crash safety: a row carries ``through``, the (updated_at, saga_id) of the last saga
folded into it. The agent writes the row and waits for Kafka to acknowledge it before
it writes any tombstone of the sagas folded; a saga at or below ``through`` is never
folded again. A crash before the row is acknowledged leaves every saga in the table and
the totals as they were (the fold is done again); a crash after it, before or among the
tombstones, leaves some folded sagas in the table, and the next sweep, finding them at or
below ``through``, removes them without counting them twice. Sagas are folded in the
order of (updated_at, saga_id), and a saga still held ends later than ``through``: an
expired saga ended more than the retention ago, and a saga ending now ends later than
that, as long as the workers' clocks do not go back by more than the retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import count
from typing import Any

import faust

from saga_streams.effects import saga_effects
from saga_streams.partitions import partition_for
from saga_streams.saga.dsl import Registry
from saga_streams.saga.state import TERMINAL, Saga
from saga_streams.tables.durable import durable_table

__all__ = ["Settled", "SettledStore", "settled_key"]


@cache
def settled_key(partition: int, partitions: int) -> str:
    """The key of ``partition``'s row: ``settled-<partition>``, with the first suffix
    ``.<n>`` that makes it hash to ``partition`` itself (``partitions.py``)."""
    for suffix in count():
        key = f"settled-{partition}.{suffix}"
        if partition_for(key, partitions) == partition:
            return key
    raise AssertionError("unreachable")  # count() never ends


@dataclass(frozen=True)
class Settled:
    """The totals of one partition's expired sagas."""

    partition: int
    #: (updated_at, saga_id) of the last saga folded in; None before the first.
    through: tuple[int, str] | None = None
    #: terminal status -> how many sagas in it expired
    expired: Mapping[str, int] = field(default_factory=dict)
    #: account -> signed cents the expired COMPLETED sagas moved
    effects: Mapping[str, int] = field(default_factory=dict)

    def covers(self, saga: Saga) -> bool:
        """Whether ``saga`` is folded in already (its tombstone may have been lost)."""
        return self.through is not None and (saga.updated_at, saga.saga_id) <= self.through

    def folded(self, sagas: Iterable[Saga], workflows: Registry) -> Settled:
        """These totals with ``sagas`` (terminal, oldest end first) added, each once."""
        expired, effects, through = dict(self.expired), dict(self.effects), self.through
        for saga in sagas:
            assert saga.status in TERMINAL, saga
            if self.covers(saga):
                continue
            place = (saga.updated_at, saga.saga_id)
            assert through is None or place > through, (place, through)
            expired[saga.status] = expired.get(saga.status, 0) + 1
            if saga.status == "COMPLETED":
                workflow = workflows.get(saga.workflow)
                parties = saga.from_account, saga.to_account
                for account, delta in saga_effects(workflow, saga.amount_cents, *parties).items():
                    effects[account] = effects.get(account, 0) + delta
            through = place
        return replace(self, through=through, expired=expired, effects=effects)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "through": None if self.through is None else list(self.through),
            "expired": dict(self.expired),
            "effects_cents": dict(self.effects),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settled:
        through = data["through"]
        return cls(
            partition=data["partition"],
            through=None if through is None else (int(through[0]), str(through[1])),
            expired=dict(data["expired"]),
            effects=dict(data["effects_cents"]),
        )


class SettledStore:
    """Typed access to the settled table (changelog ``saga-orchestrator-settled-changelog``);
    values are plain JSON dicts, readable with kcat."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.partitions = partitions
        self.table = durable_table(
            app, "settled", partitions, help="Partition to the totals of its expired sagas"
        )

    def get(self, partition: int) -> Settled:
        """``partition``'s totals, inside the agent acting for an event of ``partition``."""
        data = self.table.get(settled_key(partition, self.partitions))
        return Settled(partition) if data is None else Settled.from_dict(data)

    def put(self, settled: Settled) -> None:
        """Store the totals (acting for an event of their partition); ``table.written()``
        waits for the changelog."""
        self.table[settled_key(settled.partition, self.partitions)] = settled.to_dict()

    def held(self) -> Iterator[Settled]:
        """The totals of every partition this worker holds (outside the agent: views)."""
        for data in self.table.values():
            yield Settled.from_dict(data)
