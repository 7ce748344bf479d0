"""A worker's local tables (RocksDB), discarded at start when too old to trust.

Every table's changelog is compacted: the brokers keep the latest value of each key, and
the tombstone of a removed key (an expired saga, a forgotten ledger entry) for
``delete.retention.ms`` once compaction reached it (TOMBSTONE_RETENTION). A worker that
starts again reads each changelog on from the offset its local tables stopped at. If it
was away for longer than the tombstone retention, a key removed meanwhile may have left
nothing it can read: the value written before the removal compacted away, then the
tombstone too. Its local table would keep the key for good; a saga expired everywhere
else would be back on this worker, in a state it left long ago.

So a worker notes that it runs (``LAST_SEEN``, a file in its table folder touched
regularly) and at start discards its local tables if it last ran more than half the
tombstone retention ago. It then recovers them whole from the changelogs: always right,
only slower. A tombstone written after the worker stopped outlives that stop by the
retention at least, so the other half is left for the recovery to read the changelogs.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

__all__ = ["LAST_SEEN", "discard_if_stale", "note_interval_s", "note_running"]

log = logging.getLogger(__name__)

#: The file whose modification time says when the worker last ran.
LAST_SEEN = ".last-seen"


def note_interval_s(tombstone_retention_ms: int) -> float:
    """How often a running worker touches ``LAST_SEEN``: every minute, or a tenth of the
    retention if that is shorter, so the file is never far behind the worker's stop."""
    return min(60.0, tombstone_retention_ms / 10_000)


def note_running(tabledir: Path) -> None:
    """This worker runs now."""
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / LAST_SEEN).touch()


def discard_if_stale(tabledir: Path, tombstone_retention_ms: int, now: float | None = None) -> bool:
    """Remove ``tabledir`` if its tables may miss a removal (see the module); return
    whether it was removed. Tables without ``LAST_SEEN`` are of unknown age: removed too."""
    if not tabledir.is_dir() or not any(p.name != LAST_SEEN for p in tabledir.iterdir()):
        return False
    now = time.time() if now is None else now
    marker = tabledir / LAST_SEEN
    age_s = now - marker.stat().st_mtime if marker.exists() else None
    limit_s = tombstone_retention_ms / 2000
    if age_s is not None and age_s <= limit_s:
        return False
    shutil.rmtree(tabledir)
    log.warning(
        "🗑️  Discarded the local tables in %s: this worker last ran %s, and tables "
        "older than half the changelogs' tombstone retention (%.0fs: TOMBSTONE_RETENTION) "
        "may miss removals; they are recovered whole from the changelogs",
        tabledir,
        "at an unknown time" if age_s is None else f"{age_s:.0f}s ago",
        tombstone_retention_ms / 1000,
    )
    return True
