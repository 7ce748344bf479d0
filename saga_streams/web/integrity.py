"""``GET /integrity``: keys held in a partition they do not belong to.

Every key of a role's table belongs to one partition (``partitions.py``), and the agents
write it there only. A copy elsewhere (a "phantom", left by a message handled on the
wrong partition, before the agents forwarded strays, or written into the changelog by
hand) is money or a saga that no saga explains. Every worker scans the partitions it
holds; the answer gathers every worker's share. ``python -m saga_streams audit`` counts
each key listed as a violation.

It reads every key the worker holds: a check for operators and the audit, not for a
request path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View

from saga_streams.tables.durable import DurableTable
from saga_streams.web.routing import (
    Peers,
    Unavailable,
    gather_from_peers,
    is_forwarded,
    unavailable,
)

__all__ = ["register_integrity_view"]


def register_integrity_view(
    app: faust.App, table: DurableTable, peers: Peers, home_of: Callable[[str], str] = str
) -> None:
    """``home_of``: the key whose partition a table key belongs in (itself by default)."""

    def local() -> dict[str, Any]:
        return {
            "misplaced": [
                {"key": key, "partition": home, "held_in": held}
                for key, home, held in table.misplaced(home_of)
            ]
        }

    @app.page("/integrity")
    class Integrity(View):
        async def get(self, request: Request) -> Response:
            if request.query:
                return self.json({"error": "GET /integrity takes no parameters"}, status=400)
            try:
                shares = await gather_from_peers(request, peers, table, local)
            except Unavailable as exc:
                return unavailable(self, str(exc))
            if is_forwarded(request):
                return self.json(shares[0])
            held: dict[str, tuple[int, set[int]]] = {}
            for share in shares:
                for item in share["misplaced"]:
                    _, partitions = held.setdefault(item["key"], (item["partition"], set()))
                    partitions.update(item["held_in"])
            misplaced = [
                {"key": key, "partition": home, "held_in": sorted(partitions)}
                for key, (home, partitions) in sorted(held.items())
            ]
            return self.json({"table": table.name, "misplaced": misplaced})
