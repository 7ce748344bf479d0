"""A participant's HTTP API: ``GET /balance`` and ``GET /accounts``.

Any worker of the participant answers for any account: it reads the accounts it holds
and asks the other workers for theirs (see web/routing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import faust
from faust.web import Request, Response, View

from saga_streams.money import dollars
from saga_streams.tables.accounts import AccountStore
from saga_streams.web.routing import (
    Unavailable,
    answer_for_key,
    gather_from_peers,
    is_forwarded,
    unavailable,
)
from saga_streams.web.validation import BadRequest, parse_account_query

__all__ = ["register_account_views"]


def register_account_views(
    app: faust.App, accounts: AccountStore, owned: Mapping[str, int], default_account: str
) -> None:
    """``owned``: every account of this participant -> its opening balance in cents."""
    account_ids = sorted(owned)

    def balance_json(account_id: str) -> dict[str, Any]:
        return {"account": account_id, "balance": dollars(accounts.read(account_id).balance_cents)}

    @app.page("/balance")
    class Balance(View):
        async def get(self, request: Request) -> Response:
            unknown = sorted(set(request.query) - {"account"})
            if unknown:
                return self.json({"error": f"unknown parameter {unknown[0]!r}"}, status=400)
            account_id = request.query.get("account", default_account)
            if account_id not in owned:
                return self.json(
                    {"error": f"no account {account_id!r} here ({app.conf.id})"}, status=404
                )

            async def local() -> Response:
                return self.json(balance_json(account_id))

            return await answer_for_key(self, request, accounts.table, account_id, local)

    @app.page("/accounts")
    class AccountList(View):
        async def get(self, request: Request) -> Response:
            try:
                query = parse_account_query(request.query)
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            after = [a for a in account_ids if query.cursor is None or a > query.cursor]
            page = after[: query.limit]

            def local() -> dict[str, Any]:
                # Only the accounts in this worker's partitions: a peer answers the rest.
                return {"accounts": [balance_json(a) for a in page if accounts.holds(a)]}

            try:
                shares = await gather_from_peers(self, request, accounts.table, local)
            except Unavailable as exc:
                return unavailable(self, str(exc))
            if is_forwarded(request):
                return self.json(shares[0])
            found = {item["account"]: item for share in shares for item in share["accounts"]}
            missing = [a for a in page if a not in found]
            if missing:
                return unavailable(self, f"no worker holds account {missing[0]!r} right now")
            next_path = None
            if len(after) > query.limit:
                next_path = "/accounts?" + urlencode({"cursor": page[-1], "limit": query.limit})
            return self.json(
                {"accounts": [found[a] for a in page], "count": len(account_ids), "next": next_path}
            )
