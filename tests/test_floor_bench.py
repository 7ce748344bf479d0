"""The floor bench: events through a Faust worker that only batches, writes durably and
sends on (local/floor.py), on a broker of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_streams.local.floor import run_floor

pytestmark = pytest.mark.kafka


def test_every_event_goes_through_the_floor_worker_once_written_to_its_table(
    tmp_path: Path,
) -> None:
    result = run_floor(tmp_path, events=300, in_flight=16, warmup=50)

    # _drive raises if an event does not come out within 30 s.
    assert result.events == 300
    # One durable table write per event, warm-up included: the floor does what a hop does.
    assert result.changelog_records == 350
    assert result.events_per_s > 0
    assert set(result.cpu_ms_per_event) == {"floor worker", "kafka", "load generator"}
    assert result.cpu_ms_per_event["floor worker"] > 0
    assert result.cpu_ms_per_event["kafka"] > 0
