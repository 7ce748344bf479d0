"""GET /sagas is read off the orchestrator's listing index, which a rebalance makes stale:
the first listing after one rebuilds it from the saga table before answering."""

from __future__ import annotations

import asyncio

from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.config import load_settings
from saga_streams.workflows import WORKFLOWS
from tests.test_agents import (
    REQUESTS,
    Http,
    OrchestratorDriver,
    Outbox,
    fake_wiring,
    in_memory,
    transfer,
)


def listed(http: Http, path: str = "/sagas") -> tuple[list[str], int]:
    status, body = http.get(path)
    assert status == 200, body
    return [s["saga_id"] for s in body["sagas"]], body["count"]


def test_the_first_listing_after_a_rebalance_rebuilds_the_index_from_the_table() -> None:
    with asyncio.Runner() as runner:
        role = Orchestrator(load_settings({}), WORKFLOWS, fake_wiring(Outbox()))
        in_memory(role.app, runner)
        sagas = OrchestratorDriver(runner, role)
        http = Http(runner, role.app)
        try:
            for n, saga_id in enumerate(["old", "mid", "new"]):
                sagas.deliver(REQUESTS, transfer(saga_id, at=1_000 + n))
            assert listed(http) == (["new", "mid", "old"], 3)
            # The index is what answers: what it does not hold is not listed...
            role.index.forget("mid")
            assert listed(http) == (["new", "old"], 2)
            assert listed(http, "/sagas?status=STARTED") == (["new", "old"], 2)
            # ...until a rebalance, after which the table is read again.
            role.app.rebalancing_count += 1
            assert listed(http) == (["new", "mid", "old"], 3)
            assert listed(http, "/sagas?status=STARTED&limit=1") == (["new"], 3)
        finally:
            http.close()
            sagas.stop()
