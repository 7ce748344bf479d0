"""A Faust table whose writes can be awaited until Kafka has them in the changelog.

Faust sends changelog writes through a producer buffer and commits source offsets after
flushing it, but that flush can return while the last write is between the buffer and
the Kafka client. A worker killed right then has its source offset committed and its
state write lost: seen in the chaos test as a deduct that moved money, replied SUCCESS,
and was gone after the restart, never to be redelivered. So the agents here wait for
their state to be in the changelog before they send anything that depends on it, and
before the event can be acknowledged; a crash at any point then means redelivery of an
event whose effects are either durable or entirely absent.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP, FutureMessage

__all__ = ["DurableTable", "durable_table"]


class DurableTable(faust.Table[str, Any]):
    _unacked: list[FutureMessage] | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        future: FutureMessage = super().send_changelog(*args, **kwargs)
        if self._unacked is None:
            self._unacked = []
        self._unacked.append(future)
        return future

    def partition_of(self, key: str) -> TP:
        """The changelog partition a row keyed ``key`` lives in.

        A row is written in the partition of the event that wrote it, and events are
        keyed by the plain id; Faust's own ``router.key_store`` hashes the key as the
        changelog serializes it (JSON, in quotes) and finds another partition half the
        time.
        """
        return self.app.producer.key_partition(self.changelog_topic.get_topic_name(), key.encode())

    def holds(self, key: str) -> bool:
        """Whether this worker holds ``key``'s partition as an active one (with several
        workers per role, each holds some partitions; a standby copy does not count)."""
        return self.partition_of(key) in self.app.assignor.assigned_actives()

    async def written(self) -> None:
        """Return once every write so far is acknowledged by Kafka (raise if one failed)."""
        pending, self._unacked = self._unacked or [], []
        for future in pending:
            await future


def durable_table(app: faust.App, name: str, partitions: int, help: str) -> DurableTable:
    """``app.Table(...)``, but a ``DurableTable``."""
    table = DurableTable(
        app, name=name, partitions=partitions, key_type=str, help=help, beacon=app.tables.beacon
    )
    app.tables.add(table)
    return table
