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

from collections.abc import Callable
from typing import Any

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP, FutureMessage

from saga_streams.partitions import partition_for

__all__ = ["DurableTable", "Misplaced", "durable_table"]

#: A key found in a partition it does not belong to: (key, its own partition, the
#: partitions this worker holds it in, its own one included if it is there too).
Misplaced = tuple[str, int, list[int]]


class DurableTable(faust.Table[str, Any]):
    _unacked: list[FutureMessage] | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        future: FutureMessage = super().send_changelog(*args, **kwargs)
        if self._unacked is None:
            self._unacked = []
        self._unacked.append(future)
        return future

    @property
    def partition_count(self) -> int:
        """Partitions of the table (always set: ``durable_table`` names them)."""
        assert self.partitions is not None
        return self.partitions

    def partition_of(self, key: str) -> TP:
        """The changelog partition a row keyed ``key`` lives in.

        A row is written in the partition of the event that wrote it; the agents handle an
        event only in the partition its key hashes to (``partitions.py``). Faust's own
        ``router.key_store`` hashes the key as the changelog serializes it (JSON, in
        quotes) and finds another partition half the time.
        """
        return TP(self.changelog_topic.get_topic_name(), partition_for(key, self.partition_count))

    def read(self, key: str) -> Any:
        """``key``'s value in the partition it belongs to, or None.

        For reads outside an agent (views, timers). Faust's own ``get`` there follows its
        key index, which points at the partition a key was last written or read in, and
        else searches every partition: a copy of an account written in a wrong partition
        would be found and shown. This reads the one partition the key belongs to, which
        the caller holds (``holds``). In memory (the unit tests) there is one store.
        """
        store = self.data
        if not isinstance(store, RocksDBStore):
            return self.get(key)
        partition = partition_for(key, self.partition_count)
        raw = store._db_for_partition(partition).get(store._encode_key(key))
        return None if raw is None else store._decode_value(raw)

    def misplaced(self, home_of: Callable[[str], str]) -> list[Misplaced]:
        """Every key this worker holds in a partition it does not belong to.

        ``home_of(key)`` names the key whose hash places it (an archive key lives with its
        account). A scan of every key held: for an audit, not for a request path.
        """
        store = self.data
        if not isinstance(store, RocksDBStore):
            return []
        topic = self.changelog_topic.get_topic_name()
        actives = self.app.assignor.assigned_actives()
        held = {p: db for p, db in store._dbs.items() if TP(topic, p) in actives}
        found: dict[str, list[int]] = {}
        for partition, db in sorted(held.items()):
            for raw in store._visible_keys(db):
                key = str(store._decode_key(raw))
                if partition_for(home_of(key), self.partition_count) != partition:
                    found.setdefault(key, []).append(partition)
        result: list[Misplaced] = []
        for key, partitions in found.items():
            home = partition_for(home_of(key), self.partition_count)
            if home in held and held[home].get(store._encode_key(key)) is not None:
                partitions = sorted([home, *partitions])
            result.append((key, home, partitions))
        return result

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
