"""The benchmark runs end to end and reports what it promises (figures are not asserted:
performance is measured, never tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_streams.local.bench import run_bench, table_row

pytestmark = pytest.mark.kafka


def test_bench_runs_both_phases_and_reports_every_figure(tmp_path: Path) -> None:
    result = run_bench(tmp_path, mode="topic", seconds=3, concurrency=4, rate=0, accounts=5)
    assert result.sent > 0 and result.completed_in_window > 0
    assert result.statuses.get("COMPLETED") == result.sent  # failure injection is off
    assert set(result.latency_ms) == {"p50", "p95", "p99", "max"}
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["max"]
    assert set(result.cpu_s_per_saga) == {
        "orchestrator",
        "service-a",
        "service-b",
        "service-c",
        "kafka",
        "load generator",
    }
    assert result.ceiling_round_trips_per_s > 0 and result.ratio_to_ceiling > 0
    assert "sagas / ceiling" in result.render()
    assert table_row(result, "smoke").startswith("| smoke | ")
