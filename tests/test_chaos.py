"""The chaos test: faults under load on a real broker and real workers, then every invariant.

``make chaos`` runs the same with thousands of transfers and twenty-odd faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_streams.local.chaos import ChaosPlan, run_chaos

pytestmark = pytest.mark.kafka


def test_kills_pauses_broker_restart_and_replays_break_no_invariant(tmp_path: Path) -> None:
    plan = ChaosPlan(transfers=300, kills=3, pauses=1, broker_restarts=1, replays=60, seed=3)
    result = run_chaos(tmp_path, plan)
    print(result.render())
    assert result.ok, result.render()
    assert len(result.accepted) == 300
    kills = [what for _, what in result.faults if what.startswith("SIGKILL")]
    assert len(kills) >= 3 + 1, result.faults  # three workers and the broker
    assert (result.replayed, result.replayed_astray) == (60, 30)
    assert sum(result.statuses.values()) >= 300
    assert {"COMPLETED", "FAILED", "ROLLED_BACK"} <= set(result.statuses)
