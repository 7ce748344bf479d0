"""A participant's account table: account id -> balance and its latest actions (one value,
one write), and ``<account id>/<action id>`` -> an older action's ledger entry.

Archived entries are written in the partition of the account's command, like the account
itself: an account and its whole ledger always live in one partition, and move together.
"""

from __future__ import annotations

from collections.abc import Mapping

import faust

from saga_streams.accounts import Account, Entry, Recall
from saga_streams.tables.durable import durable_table

__all__ = ["AccountStore", "archive_key"]


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
