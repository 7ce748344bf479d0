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
    Peers,
    Unavailable,
    answer_for_key,
    gather_from_peers,
    is_forwarded,
    unavailable,
)
from saga_streams.web.validation import BadRequest, parse_account_query

__all__ = ["AccountViews", "register_account_views"]


class AccountViews:
    """What a participant's views answer with. ``owned``: every account of the participant
    -> its opening balance in cents; ``peers``: its other workers, which hold the other
    accounts."""

    def __init__(
        self,
        accounts: AccountStore,
        owned: Mapping[str, int],
        default_account: str,
        peers: Peers,
    ) -> None:
        self.accounts = accounts
        self.owned = owned
        self.account_ids = sorted(owned)
        self.default_account = default_account
        self.peers = peers

    def balance_json(self, account_id: str) -> dict[str, Any]:
        balance = self.accounts.read(account_id).balance_cents
        return {"account": account_id, "balance": dollars(balance)}

    async def balance(self, view: View, request: Request) -> Response:
        unknown = sorted(set(request.query) - {"account"})
        if unknown:
            return view.json({"error": f"unknown parameter {unknown[0]!r}"}, status=400)
        account_id = request.query.get("account", self.default_account)
        if account_id not in self.owned:
            here = view.app.conf.id
            return view.json({"error": f"no account {account_id!r} here ({here})"}, status=404)

        async def local() -> Response:
            return view.json(self.balance_json(account_id))

        table = self.accounts.table
        return await answer_for_key(view, request, self.peers, table, account_id, local)

    async def listing(self, view: View, request: Request) -> Response:
        try:
            query = parse_account_query(request.query)
        except BadRequest as exc:
            return view.json({"error": str(exc)}, status=400)
        after = [a for a in self.account_ids if query.cursor is None or a > query.cursor]
        page = after[: query.limit]

        def local() -> dict[str, Any]:
            # Only the accounts in this worker's partitions: a peer answers the rest.
            held = [a for a in page if self.peers.holds(self.accounts.table, a)]
            return {"accounts": [self.balance_json(a) for a in held]}

        try:
            shares = await gather_from_peers(request, self.peers, self.accounts.table, local)
        except Unavailable as exc:
            return unavailable(view, str(exc))
        if is_forwarded(request):
            return view.json(shares[0])
        found = {item["account"]: item for share in shares for item in share["accounts"]}
        missing = [a for a in page if a not in found]
        if missing:
            return unavailable(view, f"no worker holds account {missing[0]!r} right now")
        next_path = None
        if len(after) > query.limit:
            next_path = "/accounts?" + urlencode({"cursor": page[-1], "limit": query.limit})
        listed = [found[a] for a in page]
        return view.json({"accounts": listed, "count": len(self.account_ids), "next": next_path})


def register_account_views(app: faust.App, views: AccountViews) -> None:
    """``GET /balance`` and ``GET /accounts``."""

    @app.page("/balance")
    class Balance(View):
        async def get(self, request: Request) -> Response:
            return await views.balance(self, request)

    @app.page("/accounts")
    class AccountList(View):
        async def get(self, request: Request) -> Response:
            return await views.listing(self, request)
