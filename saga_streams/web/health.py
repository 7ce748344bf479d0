"""``GET /health``: is this worker assigned, recovered and serving? For tests and operators."""

from __future__ import annotations

from typing import cast

import faust
from faust.tables.manager import TableManager
from faust.types import AppT
from faust.web import Request, Response, View

from saga_streams.roles import Role

__all__ = ["register_health_view", "tables_ready"]


def tables_ready(app: AppT) -> bool:
    """Whether the tables hold everything their changelogs do for this worker's active
    partitions. The first recovery sets ``completed`` for good; after a later rebalance
    the partitions the worker took over are recovered again, so that is checked too."""
    recovery = cast(TableManager, app.tables).recovery
    return (
        recovery.completed.is_set()
        and not recovery.in_recovery
        and recovery.active_remaining_total() == 0
    )


def register_health_view(app: faust.App, role: Role) -> None:
    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            # Tables answer reads only after recovery from their changelogs; until then a
            # balance or saga list could be stale, so the worker says it is not ready.
            recovered = tables_ready(app)
            ready = recovered and not app.rebalancing
            body = {
                "role": role.name,
                "app_id": role.app_id,
                "ready": ready,
                "rebalancing": app.rebalancing,
                "recovered": recovered,
                "assigned_partitions": len(app.assignor.assigned_actives()),
            }
            return self.json(body, status=200 if ready else 503)
