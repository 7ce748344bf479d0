"""The benchmark runs end to end and writes what it measured. No threshold is asserted
(performance is measured, never tested), but every figure must be a measurement: sagas
really completed, latencies in order, CPU read for every process, figures that agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from saga_streams.local.bench import main

pytestmark = pytest.mark.kafka

SECONDS = 3
#: The processes whose CPU is read; all but service C work for the transfer workflow.
WORKING = {"orchestrator", "service-a", "service-b", "kafka", "load generator"}


def run_bench_cli(out: Path) -> dict[str, Any]:
    args = ["--mode", "topic", "--seconds", str(SECONDS), "--concurrency", "4"]
    assert main([*args, "--accounts", "5", "--out", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_bench_writes_measured_figures_that_agree(tmp_path: Path) -> None:
    result = run_bench_cli(tmp_path / "bench.json")
    assert (result["mode"], result["seconds"], result["accounts"]) == ("topic", SECONDS, 5)

    # Sagas were sent and completed, every one of them (failure injection is off).
    assert 0 < result["completed_in_window"] <= result["sent"]
    assert result["statuses"]["COMPLETED"] == result["sent"], result["statuses"]
    assert sum(result["statuses"].values()) == result["sent"], result["statuses"]
    assert result["completed_per_s"] == pytest.approx(result["completed_in_window"] / SECONDS)

    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"], latency

    cpu = result["cpu_s_per_saga"]
    assert set(cpu) == WORKING | {"service-c"}, cpu
    assert all(cpu[name] > 0 for name in WORKING), cpu
    assert cpu["service-c"] >= 0, cpu

    assert result["ceiling_round_trips_per_s"] > 0
    assert result["ratio_to_ceiling"] == pytest.approx(
        result["completed_per_s"] / result["ceiling_round_trips_per_s"]
    )


def test_open_loop_counts_every_answer_and_times_the_accepted_sagas(tmp_path: Path) -> None:
    # Open loop: 20 POSTs a second for 3 s whatever the sagas do, MAX_IN_FLIGHT 2.
    out = tmp_path / "open.json"
    args = ["--offered-rate", "20", "--seconds", str(SECONDS), "--max-in-flight", "2"]
    assert main([*args, "--accounts", "5", "--out", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    assert (result["offered_rate"], result["max_in_flight"]) == (20, 2)

    # Every POST was answered 202 or 429 (no errors), and every accepted saga ended,
    # COMPLETED (failure injection is off).
    assert result["sent"] == 20 * SECONDS
    assert result["other_answers"] == {}
    assert result["accepted"] + result["refused"] == result["sent"]
    assert result["accepted"] > 0 and result["not_ended"] == 0
    assert result["statuses"] == {"COMPLETED": result["accepted"]}
    assert 0 < result["completed_in_window"] <= result["accepted"]
    assert result["completed_per_s"] == pytest.approx(result["completed_in_window"] / SECONDS)
    if result["refused"]:
        assert 1 <= result["retry_after_s"]["p50"] <= result["retry_after_s"]["max"]

    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"], latency
    assert all(busy > 0 for name, busy in result["cpu_busy"].items() if name in WORKING)
