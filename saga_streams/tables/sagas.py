"""The orchestrator's saga table: saga id -> saga state.

Its changelog is ``saga-orchestrator-sagas-changelog``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust

from saga_streams.saga.state import Saga
from saga_streams.tables.durable import durable_table

__all__ = ["SagaStore"]


class SagaStore:
    """Typed access to the saga table; values are stored as plain JSON dicts."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.table = durable_table(app, "sagas", partitions, help="Saga id to saga state")

    def get(self, saga_id: str) -> Saga | None:
        """The saga, inside the agent: read in the partition of the event being handled,
        which is the saga's own (the agent forwards any other, agents/strays.py)."""
        data = self.table.get(saga_id)
        return None if data is None else Saga.from_dict(data)

    def read(self, saga_id: str) -> Saga | None:
        """The saga, outside the agent (views): read in its own partition only."""
        data = self.table.read(saga_id)
        return None if data is None else Saga.from_dict(data)

    def put(self, saga: Saga) -> None:
        """Store the saga; ``written()`` waits for it to reach the changelog.

        Only from inside the orchestrator agent: Faust writes the changelog partition of
        the event being processed. See tables/durable.py for why the agent waits.
        """
        self.table[saga.saga_id] = saga.to_dict()

    async def written(self) -> None:
        """Return once every saga put so far is acknowledged by Kafka."""
        await self.table.written()

    def stored(self) -> Iterator[dict[str, Any]]:
        """Every saga this worker holds, as stored: cheaper than ``all()`` when most are
        only filtered out (``Saga.from_dict`` is most of the cost of reading one)."""
        yield from self.table.values()

    def all(self) -> Iterator[Saga]:
        """Every saga this worker holds (all of them while one worker runs the role)."""
        for data in self.table.values():
            yield Saga.from_dict(data)
