"""The ledger window: entries expire on stream time, and no late duplicate applies twice.

``execute`` under a ``Window`` (pure), the participant's ``StreamClock``, and the real
participant agent in memory (the plumbing of tests/test_agents.py) with records stamped
in the past, so an hour of stream time passes in a few deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import faust
import pytest
from faust.types import TP

from saga_streams.accounts import RECENT_ACTIONS, Account, Entry, Window, execute
from saga_streams.agents.stream_time import StreamClock
from saga_streams.messages import Command, Reply
from saga_streams.saga.policy import ARRIVAL_MARGIN_MS, RetryPolicy
from saga_streams.saga.state import now_ms
from saga_streams.tables.accounts import SWEEP_MIN, SWEEP_SLICE, sweep_slice
from saga_streams.workflows import WORKFLOWS
from tests.test_agents import (
    AgentDriver,
    Outbox,
    accounts,
    build_service_a,
)

#: The defaults: K = 3 x 35 s + 60 s + 10 s, the limit on an action's age 35 s + 10 s.
POLICY = RetryPolicy()
K = POLICY.ledger_retention_ms(max(len(w.steps) for w in WORKFLOWS.values()))
LIMIT = POLICY.action_window_ms() + ARRIVAL_MARGIN_MS
T0 = 1_700_000_000_000


def at(now: int) -> Window:
    return Window(now, K, LIMIT)


def deduct(n: int = 1, amount: int = 100_00, issued_at: int = T0, account: str = "A") -> Command:
    return Command(f"s{n}-1", f"s{n}", 1, "ACTION", "deduct", account, amount, issued_at)


def refund(n: int = 1, amount: int = 100_00, issued_at: int = T0, account: str = "A") -> Command:
    return Command(
        f"s{n}-1-undo", f"s{n}", 1, "COMPENSATION", "refund", account, amount, issued_at,
        undoes=f"s{n}-1",
    )  # fmt: skip


def test_the_default_window_is_the_documented_figure() -> None:
    assert (POLICY.action_window_ms(), K, LIMIT) == (35_000, 175_000, 45_000)


# -- execute under a window --------------------------------------------------------------


def test_an_entry_lives_k_after_its_last_touch_then_is_forgotten() -> None:
    live, gone = Account("A", 1000_00), Account("A", 1000_00)
    for account in (live, gone):
        assert execute(account, deduct(), "debit", None, window=at(T0)).what == "applied"
    assert live.ledger["s1-1"].touched_at == T0

    undone = execute(live, refund(), "debit", None, window=at(T0 + K))
    assert (undone.what, live.balance_cents) == ("applied", 1000_00)

    # One millisecond later the deduct is forgotten: its compensation finds nothing,
    # records VOIDED and moves nothing, whatever the deduct did.
    late = execute(gone, refund(), "debit", None, window=at(T0 + K + 1))
    assert (late.status, late.what, gone.balance_cents) == ("SUCCESS", "voided", 900_00)
    assert gone.ledger["s1-1"] == Entry("VOIDED", 100_00, T0, None, T0 + K + 1)


def test_a_stale_action_is_refused_never_applied_nor_recorded() -> None:
    account = Account("A", 1000_00)
    now = T0 + LIMIT + 1
    result = execute(account, deduct(), "debit", None, window=at(now))
    assert (result.status, result.what, result.recorded) == ("FAILED", "expired", False)
    assert (result.error or "").startswith("EXPIRED: issued 45s ago")
    assert account == Account("A", 1000_00)
    # At the limit itself it runs: the orchestrator may still be sending it.
    assert execute(account, deduct(), "debit", None, window=at(T0 + LIMIT)).what == "applied"


def test_an_action_that_ran_is_answered_from_the_ledger_however_old() -> None:
    """The age is checked only when the ledger has no answer: an action that ran is never
    answered FAILED (an operator's retry may send it past its window)."""
    account = Account("A", 1000_00)
    execute(account, deduct(), "debit", None, window=at(T0))
    now = T0 + LIMIT + 60_000
    again = execute(account, deduct(), "debit", None, window=at(now))
    assert (again.status, again.what, again.recorded) == ("SUCCESS", "repeated", True)
    # ...and the duplicate refreshed the entry, which now lives K after it.
    assert account.ledger["s1-1"].touched_at == now
    assert execute(account, refund(), "debit", None, window=at(now + K)).what == "applied"
    assert account.balance_cents == 1000_00


def test_a_compensation_refused_for_funds_refreshes_its_entry() -> None:
    add = Command("s1-2", "s1", 2, "ACTION", "add", "B", 100_00, issued_at=T0)
    remove = Command("s1-2-undo", "s1", 2, "COMPENSATION", "remove", "B", 100_00, T0, undoes="s1-2")
    account = Account("B", 0)
    execute(account, add, "credit", None, window=at(T0))
    account.balance_cents = 40_00  # spent since

    refused_at = T0 + K - 1
    refused = execute(account, remove, "credit", None, window=at(refused_at))
    assert (refused.status, refused.what, refused.recorded) == ("FAILED", "refused", True)
    assert account.ledger["s1-2"] == Entry("APPLIED", 100_00, T0, None, refused_at)

    # Funds back, long after the add's own window: the compensation still finds it.
    account.balance_cents = 100_00
    done = execute(account, remove, "credit", None, window=at(refused_at + K))
    assert (done.what, account.balance_cents) == ("applied", 0)


def test_entries_stored_without_a_touch_read_as_touched_when_issued() -> None:
    stored = {"account_id": "A", "balance_cents": 900_00, "ledger": {"s1-1": [
        "APPLIED", 100_00, T0, None]}}  # fmt: skip
    account = Account.from_dict(stored)
    assert account.ledger["s1-1"].touched_at == T0
    assert execute(account, deduct(), "debit", None, window=at(T0 + K)).what == "repeated"
    old = Account.from_dict(stored)
    late = execute(old, refund(), "debit", None, window=at(T0 + K + 1))
    assert (late.what, old.balance_cents) == ("voided", 900_00)


def test_an_expired_archived_entry_is_absent_before_any_sweep() -> None:
    archive = {"s1-1": Entry("APPLIED", 100_00, T0, None, T0)}
    account = Account("A", 900_00)
    replay = execute(account, deduct(), "debit", None, archive.get, at(T0 + K + 1))
    assert (replay.status, replay.what, account.balance_cents) == ("FAILED", "expired", 900_00)
    live = execute(account, refund(), "debit", None, archive.get, at(T0 + K))
    assert (live.what, account.balance_cents) == ("applied", 1000_00)


def test_an_expired_copy_in_the_value_shadows_an_older_archived_one() -> None:
    """The account value is written after the archive: its copy is the latest word."""
    archive = {"s1-1": Entry("APPLIED", 100_00, T0, None, T0 + K)}  # stale leftover
    account = Account("A", 1000_00, {"s1-1": Entry("COMPENSATED", 100_00, T0, None, T0)})
    late = execute(account, refund(), "debit", None, archive.get, at(T0 + K + 1))
    assert (late.what, account.balance_cents) == ("voided", 1000_00)


def test_expired_entries_leave_the_value_without_being_archived() -> None:
    account = Account("A", 10**9)
    for n in range(RECENT_ACTIONS):
        execute(account, deduct(n, 1), "debit", None, window=at(T0))
    later = T0 + K + 1
    execute(account, deduct(100, 1, issued_at=later), "debit", None, window=at(later))
    execute(account, deduct(101, 1, issued_at=T0 + 10), "debit", None, window=at(T0 + 10))
    assert len(account.ledger) == RECENT_ACTIONS
    assert list(account.archived) == ["s1-1"]  # s0-1 expired and went nowhere


# -- stream time -------------------------------------------------------------------------


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, stamp_ms: int) -> None:
        self.tp = TP(topic, partition)
        self.offset = offset
        self.timestamp = stamp_ms / 1000


class FakeEvent:
    def __init__(self, topic: str, partition: int, offset: int, stamp_ms: int) -> None:
        self.message = FakeMessage(topic, partition, offset, stamp_ms)


def test_stream_time_is_the_latest_stamp_never_ahead_of_the_clock() -> None:
    wall = T0 + 1_000
    clock = StreamClock(("deduct", "refund"), lambda tp, offset: False, lambda: wall)
    seen: Any = clock.observe
    assert seen(FakeEvent("deduct", 0, 0, T0)) == T0
    assert seen(FakeEvent("deduct", 0, 1, T0 - 500)) == T0  # an earlier stamp: no step back
    assert seen(FakeEvent("deduct", 0, 2, T0 + 3_600_000)) == wall  # from the future: clamped
    assert seen(FakeEvent("deduct", 1, 0, T0 - 9)) == T0 - 9  # each partition its own
    assert clock.now(TP("deduct", 0)) == wall


def test_the_sweep_horizon_waits_for_every_topic_of_the_partition() -> None:
    wall = T0 + 60_000
    ends: dict[TP, int] = {}
    clock = StreamClock(
        ("deduct", "refund"),
        lambda tp, offset: tp in ends and offset is not None and offset + 1 >= ends[tp],
        lambda: wall,
    )
    observe: Any = clock.observe
    observe(FakeEvent("deduct", 0, 4, T0))
    assert clock.horizon(0) is None  # refund-0 never read, not known to be at its end
    observe(FakeEvent("refund", 0, 7, T0 - 30_000))
    assert clock.horizon(0) == T0 - 30_000  # the lagging one
    ends[TP("refund", 0)] = 8  # nothing left to read on refund-0
    assert clock.horizon(0) == T0  # refund-0 counts as at the clock less the margin
    ends[TP("deduct", 0)] = 5
    assert clock.horizon(0) == wall - ARRIVAL_MARGIN_MS


# -- the participant agent, in memory ----------------------------------------------------


@pytest.fixture
def service_a(runner: asyncio.Runner, outbox: Outbox) -> Iterator[tuple[AgentDriver, faust.App]]:
    app = build_service_a(runner, outbox, failure_rate="0")
    driver = AgentDriver(runner, app.agents["service-a-execute-commands"])
    yield driver, app
    driver.stop()


def archive_keys(app: faust.App) -> list[str]:
    return sorted(k for k in accounts(app) if k.startswith("A/"))


def replies(outbox: Outbox) -> list[Reply]:
    found = [s.message for s in outbox.take()]
    assert all(isinstance(r, Reply) for r in found), found
    return found  # type: ignore[return-value]


def test_a_replayed_action_is_refused_by_age_and_moves_nothing(
    service_a: tuple[AgentDriver, faust.App], outbox: Outbox
) -> None:
    agent, app = service_a
    hour_ago = now_ms() - 3_600_000
    agent.deliver("service-a-deduct", deduct(issued_at=hour_ago))  # stamped now

    (reply,) = replies(outbox)
    assert (reply.status, reply.command_id) == ("FAILED", "s1-1")
    assert (reply.error or "").startswith("EXPIRED: issued 3600s ago")
    assert accounts(app).get("A") is None  # never applied, never recorded


def fill_archive(agent: AgentDriver, start: int, extra: int) -> None:
    """``RECENT_ACTIONS + extra`` deducts of $0.01, issued and stamped from ``start``."""
    for n in range(RECENT_ACTIONS + extra):
        stamp = start + n
        agent.deliver("service-a-deduct", deduct(n, 1, issued_at=stamp), appended_at=stamp)


def test_expired_archive_entries_are_forgotten_then_swept(
    service_a: tuple[AgentDriver, faust.App], outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    agent, app = service_a
    caplog.set_level(logging.INFO, logger="saga_streams.service-a")
    hour_ago = now_ms() - 3_600_000
    fill_archive(agent, hour_ago, extra=5)
    assert archive_keys(app) == [f"A/s{n}-1" for n in range(5)]
    outbox.take()

    # An hour of stream time later, the archived s1 is forgotten before any sweep: its
    # replay is refused by age...
    now = now_ms()
    agent.deliver("service-a-deduct", deduct(1, 1, issued_at=hour_ago + 1), appended_at=now)
    (expired,) = replies(outbox)
    assert (expired.status, (expired.error or "")[:8]) == ("FAILED", "EXPIRED:")
    # ...and nothing was swept yet: the refund topic's partition of A has not been read
    # since the start, and could hold a compensation that still needs its entry.
    assert len(archive_keys(app)) == 5

    # Its compensation voids it and moves nothing.
    agent.deliver("service-a-refund", refund(1, 1, issued_at=hour_ago + 1), appended_at=now)
    (voided,) = replies(outbox)
    assert (voided.status, voided.error) == ("SUCCESS", None)
    assert accounts(app)["A"]["balance_cents"] == 1000_00 - (RECENT_ACTIONS + 5)
    assert accounts(app)["A"]["ledger"]["s1-1"][0] == "VOIDED"
    # Both topics' partition of A are now at the present: the sweep after the refund
    # removed the five archived entries (and the oldest recent one, pushed out by the
    # VOIDED entry, was dropped rather than archived).
    assert archive_keys(app) == []
    assert "🧹 Removed 5 expired ledger entries from the archive" in caplog.text


def test_recent_archive_entries_are_kept(
    service_a: tuple[AgentDriver, faust.App], outbox: Outbox
) -> None:
    agent, app = service_a
    start = now_ms() - K + 30_000  # 30 s of life left
    fill_archive(agent, start, extra=3)
    agent.deliver("service-a-refund", refund(900, 1, issued_at=start), appended_at=now_ms())
    # The VOIDED entry pushed one more deduct into the archive.
    assert archive_keys(app) == ["A/s0-1", "A/s1-1", "A/s2-1", "A/s3-1"]
    # Still live: redelivered, the deduct is answered from the archive, applied once.
    balance = accounts(app)["A"]["balance_cents"]
    outbox.take()
    agent.deliver("service-a-deduct", deduct(0, 1, issued_at=start), appended_at=now_ms())
    (reply,) = replies(outbox)
    assert (reply.status, accounts(app)["A"]["balance_cents"]) == ("SUCCESS", balance)


def test_a_sweep_reads_keys_in_proportion_to_the_commands_since_the_last() -> None:
    # Five keys per command: a pass over the partition's keys keeps pace with the archive
    # whatever the load, and a quiet partition's sweep reads little.
    assert [sweep_slice(n) for n in (0, 1, 20, 50, 199, 200, 10_000)] == [
        SWEEP_MIN,
        SWEEP_MIN,
        SWEEP_MIN,
        250,
        995,
        SWEEP_SLICE,
        SWEEP_SLICE,
    ]
    assert (SWEEP_MIN, SWEEP_SLICE) == (100, 1000)
