"""``GET /retention``: how long ended sagas are kept, and what the expired ones add up to.

Every worker of the orchestrator answers for the partitions it holds (the settled
totals, ``tables/settled.py``); the answer gathers every worker's share, as the listing
does. ``python -m saga_streams audit`` adds the totals to the sagas still held, and uses
each partition's ``through`` to count a saga that expired while it read the listing once.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT
from faust.web import Request, Response, View

from saga_streams.app import SagaApp
from saga_streams.money import dollars
from saga_streams.saga.state import STATUSES, TERMINAL, iso_ms
from saga_streams.tables.retention import describe_duration, effective_retention_ms
from saga_streams.tables.settled import Settled, SettledStore
from saga_streams.web.routing import (
    Peers,
    Unavailable,
    gather_from_peers,
    is_forwarded,
    unavailable,
)

__all__ = ["no_saga_error", "register_retention_view", "retention_json"]


def no_saga_error(app: AppT, saga_id: str) -> str:
    """What ``GET /sagas/{id}`` answers for a saga the table does not hold: it may have
    ended long ago and been removed."""
    if not isinstance(app, SagaApp):
        return f"no saga {saga_id!r}: it never existed, or it ended long ago and expired"
    retention = effective_retention_ms(
        app.settings.saga_retention_ms, app.settings.retry_policy, app.workflows
    )
    return (
        f"no saga {saga_id!r}: it never existed, or it ended more than "
        f"{describe_duration(retention)} ago and expired (SAGA_RETENTION)"
    )


def _share(settled: SettledStore) -> dict[str, Any]:
    """This worker's partitions' totals, as stored (cents)."""
    return {"partitions": [row.to_dict() for row in settled.held()]}


def retention_json(
    shares: list[dict[str, Any]], retention_ms: int, partitions: int
) -> dict[str, Any]:
    """The answer, from every worker's share: effective retention, expired sagas by
    status, the effects of the expired COMPLETED ones (dollars), and each partition's
    totals with its ``through``."""
    rows: dict[int, Settled] = {}
    for share in shares:
        for data in share["partitions"]:
            row = Settled.from_dict(data)
            # During a rebalance two workers may both answer for a partition: the one
            # that folded further is the newer.
            known = rows.get(row.partition)
            if known is None or (row.through or (0, "")) > (known.through or (0, "")):
                rows[row.partition] = row
    expired = {status: 0 for status in STATUSES if status in TERMINAL}
    effects: dict[str, int] = {}
    listed = []
    for partition, row in sorted(rows.items()):
        for status, n in row.expired.items():
            expired[status] = expired.get(status, 0) + n
        for account, delta in row.effects.items():
            effects[account] = effects.get(account, 0) + delta
        through = row.through
        listed.append(
            {
                "partition": partition,
                "expired": sum(row.expired.values()),
                "through": None
                if through is None
                else {"updated_at": iso_ms(through[0]), "saga_id": through[1]},
            }
        )
    return {
        "retention_s": retention_ms / 1000,
        "expired": expired,
        "effects": {account: dollars(cents) for account, cents in sorted(effects.items())},
        "partition_count": partitions,
        "partitions": listed,
    }


def register_retention_view(
    app: faust.App, settled: SettledStore, peers: Peers, retention_ms: int
) -> None:
    """``GET /retention`` on the orchestrator."""

    def local() -> dict[str, Any]:
        return _share(settled)

    @app.page("/retention")
    class Retention(View):
        async def get(self, request: Request) -> Response:
            if request.query:
                return self.json({"error": "GET /retention takes no parameters"}, status=400)
            try:
                shares = await gather_from_peers(request, peers, settled.table, local)
            except Unavailable as exc:
                return unavailable(self, str(exc))
            if is_forwarded(request):
                return self.json(shares[0])
            return self.json(retention_json(shares, retention_ms, settled.partitions))
