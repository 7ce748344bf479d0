"""A participant's account table: account id -> balance and ledger (one value, one write)."""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TableT

from saga_streams.accounts import Account

__all__ = ["AccountStore"]


class AccountStore:
    def __init__(self, app: faust.App, partitions: int, opening_balances: dict[str, int]) -> None:
        self.opening_balances = opening_balances
        self.table: TableT[str, Any] = app.Table(
            "accounts",
            partitions=partitions,
            key_type=str,
            help="Account id to balance and the ledger of applied commands",
        )

    def is_open(self, account_id: str) -> bool:
        return account_id in self.opening_balances

    def get(self, account_id: str) -> Account:
        """The account as stored, or as opened if no command has touched it yet."""
        data = self.table.get(account_id)
        if data is None:
            return Account(account_id, self.opening_balances[account_id])
        return Account.from_dict(data)

    def put(self, account: Account) -> None:
        """Only from inside the participant agent (see SagaStore.put)."""
        self.table[account.account_id] = account.to_dict()
