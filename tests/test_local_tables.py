"""A worker's local tables are discarded at start when it last ran more than half the
changelogs' tombstone retention ago (``tables/local.py``); on Kafka, the retention test
ages the note by hand and reads the recovered tables (``test_retention_e2e.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from saga_streams.app import changelog_config
from saga_streams.config import ConfigError, load_settings
from saga_streams.tables.local import LAST_SEEN, discard_if_stale, note_interval_s, note_running

DAY_MS = 86_400_000


def tables(root: Path, last_ran_s_ago: float | None) -> Path:
    tabledir = root / "v1" / "tables"
    (tabledir / "saga-orchestrator-sagas-0.db").mkdir(parents=True)
    if last_ran_s_ago is not None:
        note_running(tabledir)
        then = time.time() - last_ran_s_ago
        os.utime(tabledir / LAST_SEEN, (then, then))
    return tabledir


def test_tables_of_a_worker_that_ran_lately_are_kept(tmp_path: Path) -> None:
    tabledir = tables(tmp_path, last_ran_s_ago=DAY_MS / 2000 - 60)
    assert not discard_if_stale(tabledir, DAY_MS)
    assert (tabledir / "saga-orchestrator-sagas-0.db").is_dir()


def test_tables_older_than_half_the_tombstone_retention_are_discarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tabledir = tables(tmp_path, last_ran_s_ago=DAY_MS / 2000 + 60)
    assert discard_if_stale(tabledir, DAY_MS)
    assert not tabledir.exists()
    assert "TOMBSTONE_RETENTION" in caplog.text and "recovered whole" in caplog.text


def test_tables_of_unknown_age_are_discarded(tmp_path: Path) -> None:
    tabledir = tables(tmp_path, last_ran_s_ago=None)
    assert discard_if_stale(tabledir, DAY_MS)
    assert not tabledir.exists()


def test_a_first_start_has_nothing_to_discard(tmp_path: Path) -> None:
    assert not discard_if_stale(tmp_path / "v1" / "tables", DAY_MS)
    note_running(tmp_path / "v1" / "tables")
    assert not discard_if_stale(tmp_path / "v1" / "tables", DAY_MS, now=time.time() + DAY_MS)


def test_the_note_is_touched_often_enough_for_short_retentions() -> None:
    assert note_interval_s(DAY_MS) == 60.0
    assert note_interval_s(120_000) == 12.0


def test_tombstone_retention_is_the_changelogs_delete_retention() -> None:
    settings = load_settings({"TOMBSTONE_RETENTION": "600"})
    assert settings.tombstone_retention_ms == 600_000
    assert changelog_config(600_000)["delete.retention.ms"] == "600000"
    assert load_settings({}).tombstone_retention_ms == DAY_MS
    with pytest.raises(ConfigError, match="TOMBSTONE_RETENTION"):
        load_settings({"TOMBSTONE_RETENTION": "5"})
