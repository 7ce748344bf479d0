"""The long chaos run's bookkeeping, without Kafka: following sagas that expire, accounting
for every accepted one, measuring storage, writing the report."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from saga_streams.local.chaos import ChaosPlan
from saga_streams.local.soak_report import (
    ChaosResult,
    Checkpoint,
    changelog_bytes,
    disk_bytes,
    growth,
    growth_limit,
    render_markdown,
    rss_kib,
)
from saga_streams.local.soak_tracker import SagaTracker, saga_pages
from saga_streams.partitions import partition_for
from saga_streams.saga.state import iso_ms

T0 = 1_800_000_000.0  # epoch seconds
PARTITIONS = 4


def saga(saga_id: str, status: str, created: float = T0, updated: float = T0) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "status": status,
        "created_at": iso_ms(round(created * 1000)),
        "updated_at": iso_ms(round(updated * 1000)),
        "steps": [{"error": "INSUFFICIENT_FUNDS: A"}] if status == "FAILED" else [],
    }


class Orchestrator:
    """What the tracker reads: GET /sagas (pages of ``page`` sagas, newest first, by
    status), GET /sagas/{id}, GET /retention (absent unless ``expired`` is set)."""

    def __init__(self, page: int = 1000) -> None:
        self.sagas: dict[str, dict[str, Any]] = {}
        self.expired: dict[str, int] | None = None
        self.through: dict[int, tuple[str, str]] = {}  # partition -> last settled
        self.page = page
        self.paths: list[str] = []

    def put(self, *sagas: dict[str, Any]) -> None:
        self.sagas.update((s["saga_id"], s) for s in sagas)

    def expire(self, saga_id: str) -> None:
        """Settle a saga into its partition's totals, then remove it."""
        gone = self.sagas.pop(saga_id)
        self.expired = self.expired or {}
        self.expired[gone["status"]] = self.expired.get(gone["status"], 0) + 1
        ended = (gone["updated_at"], saga_id)
        partition = partition_for(saga_id, PARTITIONS)
        self.through[partition] = max(self.through.get(partition, ended), ended)

    def retention(self) -> dict[str, Any]:
        return {
            "expired": self.expired,
            "partition_count": PARTITIONS,
            "partitions": [
                {"partition": p, "through": {"updated_at": at, "saga_id": saga_id}}
                for p, (at, saga_id) in self.through.items()
            ],
        }

    def get(self, path: str) -> tuple[int, Any]:
        self.paths.append(path)
        url = urlsplit(path)
        if url.path == "/retention":
            return (404, None) if self.expired is None else (200, self.retention())
        if url.path.startswith("/sagas/"):
            found = self.sagas.get(url.path.removeprefix("/sagas/"))
            return (200, found) if found else (404, {"error": "no saga"})
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        listed = sorted(
            (s for s in self.sagas.values() if query.get("status") in (None, s["status"])),
            key=lambda s: (s["created_at"], s["saga_id"]),
            reverse=True,
        )
        start = int(query.get("cursor", 0))
        page = listed[start : start + self.page]
        more = start + self.page < len(listed)
        status = f"&status={query['status']}" if "status" in query else ""
        next_path = f"/sagas?cursor={start + self.page}{status}" if more else None
        return 200, {"sagas": page, "count": len(listed), "next": next_path}


def test_a_status_going_back_or_a_terminal_one_changing_is_a_violation() -> None:
    tracker = SagaTracker()
    tracker.observe([saga("s1", "STARTED"), saga("s2", "COMPLETED")])
    tracker.observe([saga("s1", "COMPENSATING"), saga("s2", "COMPLETED")])
    assert tracker.violations == []
    tracker.observe([saga("s1", "STARTED"), saga("s2", "FAILED")])
    assert tracker.violations == [
        "monotonic state: saga s1 went COMPENSATING -> STARTED",
        "monotonic state: saga s2 went COMPLETED -> FAILED",
    ]


def test_the_longest_finish_counts_from_the_last_fault_while_the_saga_ran() -> None:
    tracker = SagaTracker()
    for at in (T0 + 1, T0 + 4, T0 + 50):
        tracker.fault_at(at)
    tracker.observe([saga("hit", "FAILED", created=T0, updated=T0 + 10)])
    tracker.observe([saga("missed", "COMPLETED", created=T0 + 5, updated=T0 + 40)])
    assert tracker.longest_after_fault_s == pytest.approx(6.0)  # from T0 + 4
    assert tracker.longest_saga == "hit"
    assert tracker.errors == Counter({"INSUFFICIENT_FUNDS": 1})


def test_a_poll_reads_what_is_in_flight_and_the_detail_of_what_left_unseen() -> None:
    orchestrator = Orchestrator(page=2)
    old = [saga(f"old{n}", "STARTED", created=T0 - 100 - n) for n in range(3)]
    orchestrator.put(*old, *(saga(f"new{n}", "COMPLETED", created=T0 - 10) for n in range(2)))
    tracker = SagaTracker()
    tracker.poll(orchestrator.get, since_s=T0)
    assert tracker.in_flight == {"old0", "old1", "old2"}
    # old0 ended while not among the newest: its detail is read, once.
    orchestrator.put(saga("old0", "ROLLED_BACK", created=T0 - 100, updated=T0 + 1))
    orchestrator.paths.clear()
    tracker.poll(orchestrator.get, since_s=T0 + 1)
    assert tracker.status["old0"] == "ROLLED_BACK"
    assert "/sagas/old0" in orchestrator.paths
    assert tracker.to_fetch == {} and tracker.details == 1
    # The newest pages stop at the first one older than the previous poll.
    assert not any(p.startswith("/sagas?cursor=") and "status" not in p for p in orchestrator.paths)


def test_every_accepted_saga_is_listed_or_explained_by_the_expired_counts() -> None:
    orchestrator = Orchestrator(page=2)
    orchestrator.put(*(saga(f"s{n}", "COMPLETED") for n in range(5)), saga("f", "FAILED"))
    tracker = SagaTracker()
    tracker.observe([saga("s0", "COMPLETED"), saga("f", "FAILED")])
    for gone in ("s0", "s1", "f"):  # s1 was never read before it expired
        orchestrator.expire(gone)
    found = tracker.reconcile(orchestrator.get, ["s0", "s1", "s2", "s3", "s4", "f"])
    assert found.violations == []
    assert found.gone == Counter({"COMPLETED": 1, "unseen": 1, "FAILED": 1})
    assert sorted(found.listed) == ["s2", "s3", "s4"]


def test_a_saga_gone_beyond_what_expired_is_lost() -> None:
    orchestrator = Orchestrator()
    b = saga("b", "COMPLETED", updated=T0 + 10)
    orchestrator.put(saga("a", "COMPLETED"), b, saga("c", "FAILED"))
    tracker = SagaTracker()
    tracker.observe([saga("a", "COMPLETED"), b])
    orchestrator.expire("a")
    del orchestrator.sagas["b"]  # gone without being settled: lost
    del orchestrator.sagas["c"]  # never read, and nothing else expired: lost
    found = tracker.reconcile(orchestrator.get, ["a", "b", "c"])
    assert found.unsettled == ["b"]
    assert found.violations == [
        "lost: 1 accepted sagas are gone though they ended after their partition's last "
        "settled saga (GET /retention), e.g. ['b']",
        "lost: 2 accepted sagas last seen COMPLETED are gone, but only 1 COMPLETED sagas expired",
        "lost: 3 accepted sagas are gone ({'COMPLETED': 2, 'unseen': 1}), 1 sagas expired",
    ]


def test_without_a_retention_endpoint_any_saga_gone_is_lost() -> None:
    orchestrator = Orchestrator()
    orchestrator.put(saga("a", "STARTED"))
    found = SagaTracker().reconcile(orchestrator.get, ["a", "b"])
    assert found.violations == [
        "lost: 1 accepted sagas are no longer listed and the orchestrator counts no "
        "expired sagas (GET /retention): {'unseen': 1}",
        "termination: 1 sagas still in flight, e.g. ['a']",
    ]


def test_more_sagas_expired_than_the_run_could_have_made_is_a_violation() -> None:
    orchestrator = Orchestrator()
    orchestrator.expired = {"COMPLETED": 3}
    found = SagaTracker().reconcile(orchestrator.get, ["a"], maybe=["m"], unknown_outcomes=0)
    assert found.violations == [
        "retention: 3 sagas expired, more than the 2 sagas of this run that could have"
    ]


def test_listing_pages_are_bounded() -> None:
    orchestrator = Orchestrator(page=1)
    orchestrator.put(saga("a", "COMPLETED"), saga("b", "COMPLETED"))
    with pytest.raises(OSError, match="more than 1 pages"):
        list(saga_pages(orchestrator.get, "/sagas?limit=1", max_pages=1))


def test_storage_is_counted_as_du_counts_it(tmp_path: Path) -> None:
    topic = tmp_path / "kraft" / "orchestrator-sagas-changelog-0"
    other = tmp_path / "kraft" / "saga-replies-0"
    for folder in (topic, other):
        folder.mkdir(parents=True)
        (folder / "00.log").write_bytes(b"x" * 10_000)
    assert disk_bytes(topic) >= 10_000
    assert changelog_bytes([tmp_path / "kraft", tmp_path / "absent"]) == disk_bytes(topic)
    assert (rss_kib(os.getpid()) or 0) > 1000
    assert rss_kib(None) is None


def checkpoint(label: str, accepted: int, table: int, changelog: int) -> Checkpoint:
    return Checkpoint(
        label=label,
        accepted=accepted,
        seconds=accepted / 250,
        rss_kib={"orchestrator": 200_000, "broker": 600_000},
        table_bytes={"orchestrator": table, "service-a": table // 2},
        changelog_bytes=changelog,
        kafka_bytes=changelog * 3,
        listed=20_000,
        expired=accepted - 20_000,
    )


def test_the_report_shows_faults_invariants_checkpoints_and_settings() -> None:
    result = ChaosResult(accepted=[f"s{n}" for n in range(100)], seconds=125, load_seconds=100)
    result.faults = [(1.0, "SIGKILL service-a"), (2.0, "SIGKILL broker; started again")]
    result.faults += [(3.0, "SIGSTOP service-b for 3.0s"), (4.0, "crash service-c exited")]
    result.checkpoints = [
        checkpoint("10,000", 10_000, 40 << 20, 30 << 20),
        checkpoint("50,000", 50_000, 100 << 20, 80 << 20),
        checkpoint("100,000", 100_000, 110 << 20, 170 << 20),
    ]
    result.fail("replays", "at most once: replayed commands moved money")
    text = render_markdown(result, [("SAGA_RETENTION", "60")], "make soak", "today")
    assert text.startswith("# Reliability: 100 transfers under 3 faults")
    assert "❌ 1 violation(s)" in text
    assert "| SIGKILL worker | 1 |" in text and "| SIGKILL broker | 1 |" in text
    assert "| 100,000 | 100,000 | 6 min 40 s | 20,000 | 80,000 | 585.9 | 195.3 |" in text
    assert "- tables: x1.10, levels off" in text
    assert "- changelogs: x2.12, ⚠️ still grows" in text
    assert "a tombstone for each removal" in text
    assert "| SAGA_RETENTION | `60` |" in text
    assert "❌ at most once" in text and "2 min 5 s" in text
    assert growth(result.checkpoints[:1]) == {}


def test_the_soak_plan_opens_numbered_accounts_and_sets_the_retention() -> None:
    plan = ChaosPlan(transfers=2000, accounts=500, saga_retention_s=60)
    env = plan.env()
    assert env["SERVICE_A_ACCOUNTS"] == "A-{001..500}=1000"
    assert env["SERVICE_B_ACCOUNTS"] == "B-{001..500}=1000"
    assert env["SAGA_RETENTION"] == "60"
    assert plan.checkpoint_counts() == [200, 1000, 2000]
    assert ChaosPlan(transfers=10, checkpoints=(5, 50)).checkpoint_counts() == [5]
    assert "SERVICE_A_ACCOUNTS" not in ChaosPlan().env()


def test_levelling_off_is_judged_against_how_much_the_transfers_grew() -> None:
    assert growth_limit(2.0) == 1.5
    assert growth_limit(100_000 / 75_000) == pytest.approx(1 + 1 / 6)
    result = ChaosResult(accepted=["s"], load_seconds=1.0, seconds=2.0)
    result.checkpoints = [
        checkpoint("75,000", 75_000, 100 << 20, 100 << 20),
        checkpoint("100,000", 100_000, 125 << 20, 110 << 20),
    ]
    text = render_markdown(result, [], "make soak", "today")
    assert "(x1.33; levelling off means growing at most x1.17)" in text
    assert "- tables: x1.25, ⚠️ still grows" in text
    assert "- changelogs: x1.10, levels off" in text


def test_changelogs_level_off_judged_on_the_most_sampled_between_checkpoints() -> None:
    """A checkpoint that reads the changelogs just before the cleaner runs reads high;
    the most sampled over the stretch before it is the disk they need."""
    before = checkpoint("75,000", 75_000, 100 << 20, 100 << 20)
    before = replace(before, changelog_stretch=(150 << 20, 120 << 20))
    last = checkpoint("100,000", 100_000, 100 << 20, 160 << 20)
    last = replace(last, changelog_stretch=(160 << 20, 125 << 20))
    result = ChaosResult(accepted=["s"], load_seconds=1.0, seconds=2.0)
    result.checkpoints = [before, last]
    assert growth(result.checkpoints)["changelogs"] == pytest.approx(160 / 150)
    text = render_markdown(result, [], "make soak", "today")
    assert "- changelogs: x1.07, levels off" in text
    assert "| 160.0 (160.0, 125.0) |" in text
