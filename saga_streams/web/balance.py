"""A participant's HTTP API: ``GET /balance``."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from saga_streams.money import dollars
from saga_streams.tables.accounts import AccountStore

__all__ = ["register_balance_view"]


def register_balance_view(app: faust.App, accounts: AccountStore, account_id: str) -> None:
    @app.page("/balance")
    class Balance(View):
        async def get(self, request: Request) -> Response:
            account = accounts.get(account_id)
            return self.json({"account": account_id, "balance": dollars(account.balance_cents)})
