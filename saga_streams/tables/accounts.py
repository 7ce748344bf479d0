"""A participant's account table: account id -> balance and its latest actions (one value,
one write), and ``<account id>/<action id>`` -> an older action's ledger entry.

Archived entries are written in the partition of the account's command, like the account
itself: an account and its whole ledger always live in one partition, and move together.

Archived entries expire (accounts.py, "The ledger window"); ``sweep`` removes expired ones
a slice of keys at a time, each removal a tombstone in the changelog, so the archive
holds about as many keys as the window has actions, however long the service runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from functools import partial
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore

from saga_streams.accounts import Account, Entry, Recall
from saga_streams.tables.durable import durable_table

__all__ = ["SWEEP_EVERY_S", "SWEEP_SLICE", "AccountStore", "archive_key", "sweep_slice"]

#: Keys a sweep of a partition reads per command the partition has had since its last
#: sweep. A pass over a partition's keys then takes a fifth of the time its archive
#: takes to fill up (one entry per command at most), so an entry is removed at most a
#: quarter of the window after it expired, and the archive holds at most 1.25 times the
#: window's actions. (A sweep of a fixed 1,000 keys every 0.5 s read 24 keys per command
#: at the bench's 330 commands a second, a sixth of service A's CPU in a profile.)
SWEEP_KEYS_PER_COMMAND = 5
#: But at least this many (an archive filled by a busy hour shrinks however quiet the
#: next one is) and at most this many: a bounded cost added to a batch (a few ms), which
#: binds only above 400 commands a second in one partition.
SWEEP_MIN, SWEEP_SLICE = 100, 1000
#: A partition is swept at most this often (seconds), so that most batches pay nothing.
SWEEP_EVERY_S = 0.5


def sweep_slice(commands: int) -> int:
    """How many keys a partition's sweep reads after ``commands`` commands since its last."""
    return max(SWEEP_MIN, min(SWEEP_SLICE, SWEEP_KEYS_PER_COMMAND * commands))


def archive_key(account_id: str, action_id: str) -> str:
    # Account ids never contain "/" (config.ACCOUNT_ID), so the key is unambiguous.
    return f"{account_id}/{action_id}"


class AccountStore:
    def __init__(
        self, app: faust.App, partitions: int, opening_balances: Mapping[str, int]
    ) -> None:
        self.opening_balances = opening_balances
        self.table = durable_table(
            app,
            "accounts",
            partitions,
            help="Account id to balance and latest actions; account/action to an older action",
        )
        #: Per partition, the key the next sweep starts at (None: the first key).
        self._cursors: dict[int, Any] = {}

    def get(self, account_id: str) -> Account:
        """The account as stored, or as opened if no command has touched it yet; inside
        the agent, whose event is in the account's own partition (agents/strays.py)."""
        return self._account(account_id, self.table.get(account_id))

    def read(self, account_id: str) -> Account:
        """The same, outside the agent (views): read in the account's own partition only,
        never in a copy a wrongly partitioned command may have left elsewhere."""
        return self._account(account_id, self.table.read(account_id))

    def _account(self, account_id: str, data: dict[str, object] | None) -> Account:
        if data is None:
            return Account(account_id, self.opening_balances[account_id])
        return Account.from_dict(data)

    @staticmethod
    def owner_of(key: str) -> str:
        """The account a key of this table belongs to (itself, or an archive key's)."""
        return key.split("/", 1)[0]

    def recall(self, account_id: str) -> Recall:
        """The account's archive, for ``accounts.execute`` (inside the agent only: the
        read goes to the partition of the event being handled)."""

        def find(action_id: str) -> Entry | None:
            data = self.table.get(archive_key(account_id, action_id))
            return None if data is None else Entry.from_list(data)

        return find

    def put(self, account: Account) -> None:
        """Store the account; ``written()`` waits for the changelog (see SagaStore.put).

        The entries it archived go first: they are in the changelog partition ahead of the
        value that no longer holds them, and Kafka keeps a partition's order.
        """
        for action_id, entry in account.archived.items():
            self.table[archive_key(account.account_id, action_id)] = entry.to_list()
        account.archived.clear()
        self.table[account.account_id] = account.to_dict()

    async def written(self) -> None:
        await self.table.written()

    def sweep(self, partition: int, expired: Callable[[Entry], bool], limit: int) -> int:
        """Remove the expired archive entries among the next ``limit`` keys of
        ``partition`` (from where the last sweep of it stopped, starting over at the end);
        return how many. Inside the agent, acting for an event of ``partition``: each
        removal is a tombstone in that changelog partition."""
        found = [
            key
            for key, read in self._archived(partition, limit)
            if expired(Entry.from_list(read()))
        ]
        for key in found:
            del self.table[key]
        return len(found)

    def _archived(self, partition: int, limit: int) -> list[tuple[str, Callable[[], Any]]]:
        """The archive entries among the next ``limit`` keys of ``partition``, in key
        order, each with a way to read its value, and the cursor moved past them. Only
        archive entries are decoded: an account's value is large, and a sweep reads far
        more keys than it removes."""
        store = self.table.data
        if not isinstance(store, RocksDBStore):
            return self._archived_in_memory(partition, limit)
        items = store._db_for_partition(partition).iter()
        cursor = self._cursors.get(partition)
        if cursor is None:
            items.seek_to_first()
        else:
            items.seek(cursor)
        raw: list[tuple[bytes, bytes]] = []
        scanned = 0
        while items.valid() and scanned < limit:
            key = items.key()
            if key != store.offset_key:
                scanned += 1
                # An archive key has a "/" however it is encoded ("/" is never escaped
                # in JSON), so account keys are skipped undecoded. Most keys are archive
                # keys, decoded as before: what makes a sweep cheap is how many it reads.
                if b"/" in key:
                    raw.append((key, items.value()))
            items.next()
        self._cursors[partition] = items.key() if items.valid() else None
        return [(str(store._decode_key(k)), partial(store._decode_value, v)) for k, v in raw]

    def _archived_in_memory(
        self, partition: int, limit: int
    ) -> list[tuple[str, Callable[[], Any]]]:
        # The unit tests' in-memory store: one dict for every partition.
        store = self.table.data
        if not isinstance(store, MemoryStore):
            return []
        data: MutableMapping[str, Any] = store.data
        cursor = self._cursors.get(partition)
        keys = sorted(k for k in data if cursor is None or k >= cursor)
        self._cursors[partition] = keys[limit] if len(keys) > limit else None
        return [(k, partial(data.__getitem__, k)) for k in keys[:limit] if "/" in k]
