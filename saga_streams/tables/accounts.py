"""A participant's account table: account id -> balance and ledger (one value, one write)."""

from __future__ import annotations

from collections.abc import Mapping

import faust

from saga_streams.accounts import Account
from saga_streams.tables.durable import durable_table

__all__ = ["AccountStore"]


class AccountStore:
    def __init__(
        self, app: faust.App, partitions: int, opening_balances: Mapping[str, int]
    ) -> None:
        self.opening_balances = opening_balances
        self.table = durable_table(
            app,
            "accounts",
            partitions,
            help="Account id to balance and the ledger of applied commands",
        )

    def is_open(self, account_id: str) -> bool:
        return account_id in self.opening_balances

    def holds(self, account_id: str) -> bool:
        """Whether this worker holds the account's partition (see web/routing.py)."""
        return self.table.holds(account_id)

    def get(self, account_id: str) -> Account:
        """The account as stored, or as opened if no command has touched it yet."""
        data = self.table.get(account_id)
        if data is None:
            return Account(account_id, self.opening_balances[account_id])
        return Account.from_dict(data)

    def put(self, account: Account) -> None:
        """Store the account; ``written()`` waits for the changelog (see SagaStore.put)."""
        self.table[account.account_id] = account.to_dict()

    async def written(self) -> None:
        await self.table.written()
