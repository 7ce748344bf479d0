"""The chaos test: faults under load on a real broker and real workers, then every invariant.

``make chaos`` runs the same with thousands of transfers and twenty-odd faults, ``make
soak`` with 100,000 transfers and two hundred faults. Here the retry policy is short, so
the effective saga retention is too (57 s): sagas expire while the run goes on, and every
accepted saga must still be accounted for, listed or counted as expired.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_streams.local.chaos import ChaosPlan, run_chaos

pytestmark = pytest.mark.kafka


def test_kills_pauses_broker_restart_and_replays_break_no_invariant(tmp_path: Path) -> None:
    plan = ChaosPlan(
        transfers=300,
        kills=3,
        pauses=1,
        broker_restarts=1,
        replay_bursts=1,
        replays=60,
        seed=3,
        rate=15,
        accounts=20,
        # Retention max(1 s, ledger window) = 3 x (1 + 2 + 2) + 2 s, the 10 s arrival
        # margin and 30 s of grace for the faults' stretching of a saga = 57 s.
        saga_retention_s=1,
        ledger_grace_s=30,
        # The load takes 20-40 s; then no traffic until 90 s into the run. Sagas that
        # ended in the first half minute expire meanwhile, woken by the timer.
        quiet_until_s=90,
        worker_env=(("STEP_TIMEOUT", "1"), ("RETRY_MAX_DELAY", "2")),
    )
    report = tmp_path / "RELIABILITY.md"
    result = run_chaos(tmp_path / "run", plan, report)
    print(result.render())
    assert result.ok, result.render()
    assert len(result.accepted) == 300
    kills = [what for _, what in result.faults if what.startswith("SIGKILL")]
    assert len(kills) >= 3 + 1, result.faults  # three workers and the broker
    assert (result.replayed, result.replayed_astray) == (60, 30)
    assert {"COMPLETED", "FAILED", "ROLLED_BACK"} <= set(result.statuses)
    # Sagas of this run expired during it, and each accepted one gone is one expired.
    assert result.expired is not None and sum(result.expired.values()) > 0, result.render()
    assert 0 < sum(result.gone.values()) <= sum(result.expired.values())
    assert [c.label for c in result.checkpoints] == ["30", "150", "300", "end"]
    assert "✅ every invariant holds" in report.read_text()
