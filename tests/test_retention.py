"""Removing expired sagas, with their money settled first: the queue, the settled totals,
the orchestrator's sweep after each batch, the views, and the audit over what is left.

The agent tests run the real orchestrator in memory (``tests/test_agents.py``); its
sweep's clock is moved past the retention instead of waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from faust.types import EventT

from saga_streams.agents.batches import acting_for
from saga_streams.agents.expiry import SLICE, SagaExpiry
from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.app import TIMEOUT_TOPIC
from saga_streams.audit import _effects, audit, settled_totals
from saga_streams.config import ConfigError, load_settings
from saga_streams.effects import saga_effects
from saga_streams.messages import Reply, TimeoutElapsed, TransferRequested
from saga_streams.partitions import partition_for
from saga_streams.saga.state import Saga, StepState, now_ms
from saga_streams.tables.durable import DurableTable
from saga_streams.tables.retention import (
    RetentionQueue,
    describe_duration,
    effective_retention_ms,
)
from saga_streams.tables.settled import Settled, settled_key
from saga_streams.web.retention import retention_json
from saga_streams.workflows import TRANSFER, TRANSFER_WITH_FEE, WORKFLOWS
from tests import test_agents as agents
from tests.test_agents import (
    PARTITIONS,
    REPLIES,
    REQUESTS,
    Http,
    OrchestratorDriver,
    Outbox,
    only_command,
    reply_to,
    transfer,
)

WEEK_MS = 7 * 24 * 3600 * 1000


# -- how long, and in which order -------------------------------------------------------


def test_effective_retention_is_saga_retention_or_the_ledger_window_if_longer() -> None:
    default = load_settings({})
    assert effective_retention_ms(default.saga_retention_ms, default.retry_policy, WORKFLOWS) == (
        WEEK_MS
    )
    short = load_settings(
        {"SAGA_RETENTION": "1", "STEP_TIMEOUT": "0.5", "RETRY_MAX_DELAY": "1", "LEDGER_GRACE": "0"}
    )
    # The fee transfer's 3 steps: 3 x (0.5 + 1 + 1) s + 1 s, and the 10 s arrival margin.
    assert effective_retention_ms(short.saga_retention_ms, short.retry_policy, WORKFLOWS) == 18_500


@pytest.mark.parametrize(
    ("ms", "said"),
    [(WEEK_MS, "7 days"), (86_400_000, "1 day"), (7_200_000, "2 hours"), (18_500, "18.5 seconds")],
)
def test_retention_is_described_as_a_person_reads_it(ms: int, said: str) -> None:
    assert describe_duration(ms) == said


def ended(saga_id: str, updated_at: int, status: str = "COMPLETED", amount: int = 100_00) -> Saga:
    return Saga(
        saga_id=saga_id,
        workflow=TRANSFER.name,
        amount_cents=amount,
        from_account="A",
        to_account="B",
        status=status,  # type: ignore[arg-type]  # one of the statuses, as a test names it
        steps=(StepState("SUCCEEDED"), StepState("SUCCEEDED")),
        created_at=updated_at - 10,
        updated_at=updated_at,
    )


def ids_in(partition: int, count: int, prefix: str = "s") -> list[str]:
    """``count`` saga ids that hash to ``partition``."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        n += 1
        if partition_for(f"{prefix}{n}", PARTITIONS) == partition:
            found.append(f"{prefix}{n}")
    return found


def test_queue_gives_the_oldest_ended_sagas_of_a_partition_first() -> None:
    queue = RetentionQueue(PARTITIONS)
    a, b, c = ids_in(0, 3)
    (other,) = ids_in(1, 1)
    for saga in (ended(c, 300), ended(a, 100), ended(b, 100), ended(other, 50)):
        queue.track(saga)
    queue.track(replace(ended("x", 10), status="STARTED"))  # never queued: not ended
    assert queue.take_expired(0, ended_before=301, limit=2) == [(100, a), (100, b)]
    assert queue.take_expired(0, ended_before=300, limit=10) == []  # c ended at 300
    assert queue.take_expired(1, ended_before=1_000, limit=10) == [(50, other)]


def test_queue_follows_rewrites_and_a_saga_id_that_starts_over() -> None:
    queue = RetentionQueue(PARTITIONS)
    a, b = ids_in(2, 2)
    queue.track(ended(a, 100))
    queue.track(ended(a, 100))  # a late reply recorded in its history: same place
    queue.track(ended(b, 100))
    queue.forget(b)
    queue.track(replace(ended(b, 500), status="STARTED"))  # a new request under b's id
    assert queue.take_expired(2, ended_before=1_000, limit=10) == [(100, a)]
    queue.track(ended(b, 600))  # it ends again, later
    assert queue.take_expired(2, ended_before=1_000, limit=10) == [(600, b)]


def test_queue_is_rebuilt_from_the_table_only_when_the_assignment_changes() -> None:
    queue = RetentionQueue(PARTITIONS)
    (a,) = ids_in(3, 1)
    reads: list[int] = []

    def stored() -> list[dict[str, Any]]:
        reads.append(1)
        return [ended(a, 100).to_dict(), replace(ended("y", 1), status="COMPENSATING").to_dict()]

    queue.refresh("first", stored)
    queue.refresh("first", stored)
    assert len(reads) == 1 and len(queue) == 1
    queue.refresh("second", stored)
    assert len(reads) == 2
    assert queue.take_expired(3, ended_before=1_000, limit=10) == [(100, a)]


# -- settled totals ---------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 2, 4, 7, 12, 64, 256])
def test_each_partitions_settled_key_hashes_to_that_partition(partitions: int) -> None:
    for partition in range(partitions):
        key = settled_key(partition, partitions)
        assert key.startswith(f"settled-{partition}.")
        assert partition_for(key, partitions) == partition


def test_folding_counts_statuses_and_sums_completed_effects() -> None:
    sagas = [ended("a", 1), ended("b", 2, "ROLLED_BACK"), ended("c", 3, amount=50_00)]
    sagas.append(ended("d", 4, "FAILED"))
    settled = Settled(0).folded(sagas, WORKFLOWS)
    assert settled.expired == {"COMPLETED": 2, "ROLLED_BACK": 1, "FAILED": 1}
    assert settled.effects == {"A": -150_00, "B": 150_00}
    assert settled.through == (4, "d")
    assert Settled.from_dict(settled.to_dict()) == settled


def test_a_fold_done_again_after_a_crash_counts_nothing_twice() -> None:
    first = [ended("a", 1), ended("b", 2)]
    settled = Settled(0).folded(first, WORKFLOWS)
    # The totals were written, the tombstones lost: a and b are still held, and the next
    # sweep finds them with c, which ended since.
    again = settled.folded([*first, ended("c", 3)], WORKFLOWS)
    assert again.expired == {"COMPLETED": 3}
    assert again.effects == {"A": -300_00, "B": 300_00}
    assert again.folded(first, WORKFLOWS) == again


def test_the_settled_effects_are_the_audits_effects() -> None:
    saga = {"workflow": TRANSFER_WITH_FEE.name, "amount": 200, "from_account": "A-2"}
    saga["to_account"] = "B"
    assert _effects(saga, WORKFLOWS) == saga_effects(TRANSFER_WITH_FEE, 200_00, "A-2", "B")
    assert saga_effects(TRANSFER_WITH_FEE, 200_00, "A-2", "B") == {
        "A-2": -202_00,
        "B": 200_00,
        "C": 2_00,
    }
    assert saga_effects(None, 200_00, "A", "B") == {}


def test_the_answer_sums_every_workers_share() -> None:
    one = Settled(0, (5, "a"), {"COMPLETED": 2}, {"A": -150_00, "B": 150_00})
    two = Settled(3, (9, "z"), {"COMPLETED": 1, "FAILED": 4}, {"A": -1, "B": 1})
    shares = [{"partitions": [one.to_dict()]}, {"partitions": [two.to_dict()]}]
    answer = retention_json(shares, WEEK_MS, PARTITIONS)
    assert answer["retention_s"] == WEEK_MS / 1000
    assert answer["expired"] == {"COMPLETED": 3, "ROLLED_BACK": 0, "FAILED": 4}
    assert answer["effects"] == {"A": -150.01, "B": 150.01}
    assert [p["partition"] for p in answer["partitions"]] == [0, 3]
    assert settled_totals(answer).through == {0: (5, "a"), 3: (9, "z")}


# -- the orchestrator's sweep, in memory ------------------------------------------------


# The in-memory orchestrator of the agent tests.
orchestrator = agents.orchestrator
sagas = agents.sagas


@pytest.fixture
def http(runner: asyncio.Runner, orchestrator: Orchestrator) -> Iterator[Http]:
    client = Http(runner, orchestrator.app)
    yield client
    client.close()


def complete(sagas: OrchestratorDriver, outbox: Outbox, saga_id: str, cents: int) -> None:
    sagas.deliver(REQUESTS, transfer(saga_id, cents))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-a-deduct"), "SUCCESS"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-b-add"), "SUCCESS"))
    assert sagas.saga(saga_id).status == "COMPLETED"


def roll_back(sagas: OrchestratorDriver, outbox: Outbox, saga_id: str) -> None:
    sagas.deliver(REQUESTS, transfer(saga_id, 7_00))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-a-deduct"), "SUCCESS"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-b-add"), "FAILED", "no"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-a-refund"), "SUCCESS"))
    assert sagas.saga(saga_id).status == "ROLLED_BACK"


def later(orchestrator: Orchestrator, ms: int) -> None:
    """The sweep's clock, ``ms`` ahead of now. (A delivery returns before the agent has
    handled the driver's barrier after it, whose batch is swept too: that barrier's
    partition may be swept by the new clock.)"""
    orchestrator.expiry.clock = lambda: now_ms() + ms


def poke(sagas: OrchestratorDriver, partition: int) -> None:
    """Any event of ``partition``: here input the agent skips."""
    sagas.deliver(REQUESTS, b"not a message", partition=partition)


def test_expired_sagas_are_removed_on_their_partitions_next_event(
    orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox, http: Http
) -> None:
    done, rolled_back = ids_in(0, 2)
    (elsewhere,) = ids_in(1, 1)
    complete(sagas, outbox, done, 100_00)
    roll_back(sagas, outbox, rolled_back)
    complete(sagas, outbox, elsewhere, 30_00)
    poke(sagas, 0)
    assert sagas.store.get(done) is not None  # not expired yet

    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 0)
    assert sagas.store.get(done) is None and sagas.store.get(rolled_back) is None
    # Partition 1 had no event since: its saga waits for one.
    assert sagas.store.get(elsewhere) is not None
    status, body = http.get(f"/sagas/{done}")
    assert status == 404 and "ended more than 7 days ago and expired" in body["error"]
    _, listing = http.get("/sagas")
    assert [s["saga_id"] for s in listing["sagas"]] == [elsewhere]
    status, retention = http.get("/retention")
    assert status == 200, retention
    assert retention["expired"] == {"COMPLETED": 1, "ROLLED_BACK": 1, "FAILED": 0}
    assert retention["effects"] == {"A": -100, "B": 100}
    assert retention["retention_s"] == WEEK_MS / 1000
    assert [p["partition"] for p in retention["partitions"]] == [0]

    poke(sagas, 1)
    assert sagas.store.get(elsewhere) is None
    _, retention = http.get("/retention")
    assert retention["expired"]["COMPLETED"] == 2
    assert retention["effects"] == {"A": -130, "B": 130}
    assert http.get("/retention?x=1")[0] == 400


def test_the_audit_still_accounts_for_every_cent_after_removal(
    orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox, http: Http
) -> None:
    old, kept = ids_in(2, 1), ids_in(3, 1, prefix="k")
    complete(sagas, outbox, old[0], 12_34)
    complete(sagas, outbox, kept[0], 5_00)
    poke(sagas, 0)  # no saga there: the barrier left pending is on partition 0
    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 2)  # partition 3 has no event since: kept is kept
    assert sagas.store.get(old[0]) is None and sagas.store.get(kept[0]) is not None

    _, listing = http.get("/sagas")
    _, retention = http.get("/retention")
    settings = load_settings({})
    balances = settings.opening_balances
    balances["A"] -= 12_34 + 5_00
    balances["B"] += 12_34 + 5_00
    report = audit(
        listing["sagas"],
        balances,
        settings.opening_balances,
        60,
        workflows=WORKFLOWS,
        settled=settled_totals(retention),
    )
    assert report.ok, report.render()
    assert report.statuses == {"COMPLETED": 2} and report.expired == {"COMPLETED": 1}
    # Without the totals, the removed saga's money is unexplained.
    alone = audit(listing["sagas"], balances, settings.opening_balances, 60, workflows=WORKFLOWS)
    assert not alone.ok


def test_a_backlog_drains_one_slice_per_partition_per_batch(
    orchestrator: Orchestrator, sagas: OrchestratorDriver
) -> None:
    # Refused requests (an amount of 0) end FAILED at once: one event each.
    many = ids_in(1, SLICE + 20)
    for saga_id in many:
        sagas.deliver(REQUESTS, transfer(saga_id, 0), partition=1)
    assert sagas.saga(many[0]).status == "FAILED"
    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 1)  # a slice for this event's batch, and one for the driver's barrier's
    poke(sagas, 1)
    held = [saga_id for saga_id in many if sagas.store.get(saga_id) is not None]
    assert held == []
    settled = orchestrator.settled.get(1)
    assert settled.expired == {"FAILED": SLICE + 20}


def test_a_slice_removes_at_most_slice_sagas(
    runner: asyncio.Runner, orchestrator: Orchestrator
) -> None:
    expiry = replace(orchestrator.expiry, clock=lambda: 10_000 + WEEK_MS)
    event = on_partition(2)
    saga_ids = ids_in(2, SLICE + 5)
    hold(orchestrator, expiry, event, [ended(saga_id, 100) for saga_id in saga_ids])
    assert runner.run(expiry.sweep([event])) == SLICE
    assert runner.run(expiry.sweep([event])) == 5
    assert runner.run(expiry.sweep([event])) == 0
    assert all(orchestrator.sagas.get(saga_id) is None for saga_id in saga_ids)


def test_nothing_is_removed_while_the_tables_are_recovering(
    runner: asyncio.Runner, orchestrator: Orchestrator
) -> None:
    recovering = replace(orchestrator.expiry, clock=lambda: 10_000 + WEEK_MS, serving=lambda: False)
    event = on_partition(1)
    saga_ids = ids_in(1, 3)
    hold(orchestrator, recovering, event, [ended(saga_id, 100) for saga_id in saga_ids])
    assert runner.run(recovering.sweep([event])) == 0
    assert all(orchestrator.sagas.get(saga_id) is not None for saga_id in saga_ids)
    recovered = replace(recovering, serving=lambda: True)
    assert runner.run(recovered.sweep([event])) == 3


def test_a_quiet_partition_is_woken_by_the_timer_and_swept(
    runner: asyncio.Runner, orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    (quiet,) = ids_in(3, 1, prefix="q")
    complete(sagas, outbox, quiet, 4_00)
    outbox.take()
    runner.run(orchestrator.fire_timeouts())
    assert outbox.take() == []  # not expired yet: nothing to wake

    later(orchestrator, WEEK_MS + 1_000)
    orchestrator.expiry.swept_at.clear()  # as if partition 3 had been quiet for QUIET_S
    runner.run(orchestrator.fire_timeouts())
    (woken,) = outbox.take()
    assert (woken.topic, woken.key) == (TIMEOUT_TOPIC, quiet)
    assert isinstance(woken.message, TimeoutElapsed)
    runner.run(orchestrator.fire_timeouts())
    assert outbox.take() == []  # one wake-up per quiet spell
    assert sagas.store.get(quiet) is not None  # the timer only reads the table

    sagas.deliver(TIMEOUT_TOPIC, woken.message)
    assert sagas.store.get(quiet) is None
    assert orchestrator.settled.get(3).expired["COMPLETED"] == 1
    assert outbox.take() == []  # the ended saga ignored its timeout


def test_the_queue_heads_skip_sagas_that_moved_on() -> None:
    queue = RetentionQueue(PARTITIONS)
    first, second = ids_in(2, 2)
    queue.track(ended(first, 100))
    queue.track(ended(second, 200))
    assert queue.heads() == [(2, (100, first))]
    queue.forget(first)
    assert queue.heads() == [(2, (200, second))]
    queue.track(replace(ended(second, 300), status="STARTED"))
    assert queue.heads() == []


# -- a crash between the settled totals and the tombstones ------------------------------


@dataclass
class _Message:
    partition: int
    topic: str = REQUESTS


@dataclass
class _Event:
    """What acting for an event needs of it: its partition."""

    message: _Message


def on_partition(partition: int) -> EventT[bytes]:
    return cast(EventT[bytes], _Event(_Message(partition)))


def hold(
    orchestrator: Orchestrator, expiry: SagaExpiry, event: EventT[bytes], held: list[Saga]
) -> None:
    with acting_for(event):
        for saga in held:
            orchestrator.sagas.put(saga)
            expiry.track(saga)


class Crash(Exception):
    pass


def crash_on(table: DurableTable) -> Callable[[DurableTable], Awaitable[None]]:
    async def durable(waited: DurableTable) -> None:
        if waited is table:
            raise Crash  # the worker dies before Kafka acknowledged the totals

    return durable


def test_a_crash_after_the_totals_before_the_tombstones_counts_each_saga_once(
    runner: asyncio.Runner, orchestrator: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    event = on_partition(3)
    a, b, c = ids_in(3, 3)
    dying = replace(
        orchestrator.expiry,
        clock=lambda: 10_000 + WEEK_MS,
        durable=crash_on(orchestrator.settled.table),
    )
    hold(orchestrator, dying, event, [ended(a, 100), ended(b, 200, "FAILED")])
    with pytest.raises(Crash):
        runner.run(dying.sweep([event]))
    # The totals are written, the sagas still held: as after a restart that recovered the
    # totals but not the tombstones. Meanwhile c ended too.
    assert orchestrator.sagas.get(a) is not None
    assert orchestrator.settled.get(3).expired == {"COMPLETED": 1, "FAILED": 1}

    async def acknowledged(table: DurableTable) -> None:
        pass

    restarted = replace(dying, durable=acknowledged)  # a new worker: its queue is rebuilt
    hold(orchestrator, restarted, event, [ended(c, 300)])
    assert runner.run(restarted.sweep([event])) == 3
    settled = orchestrator.settled.get(3)
    assert settled.expired == {"COMPLETED": 2, "FAILED": 1}
    assert settled.effects == {"A": -200_00, "B": 200_00}
    assert settled.through == (300, c)
    assert "2 expired saga(s) of partition 3 already settled" in caplog.text


# -- messages for a removed saga --------------------------------------------------------


def test_replies_and_timeouts_for_a_removed_saga_change_nothing(
    orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    (saga_id,) = ids_in(0, 1)
    sagas.deliver(REQUESTS, transfer(saga_id))
    deduct = only_command(outbox, "service-a-deduct")
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    add = only_command(outbox, "service-b-add")
    sagas.deliver(REPLIES, reply_to(add, "SUCCESS"))
    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 0)
    assert sagas.store.get(saga_id) is None
    settled = orchestrator.settled.get(0)

    late: list[Reply | TimeoutElapsed] = [
        reply_to(add, "SUCCESS"),
        reply_to(deduct, "FAILED", "late"),
        TimeoutElapsed(saga_id, deadline=1),
    ]
    for message in late:
        sagas.deliver(REPLIES, message)
        assert sagas.store.get(saga_id) is None
        assert outbox.take() == []
    assert orchestrator.settled.get(0) == settled


def test_a_replayed_http_request_of_a_removed_saga_is_refused_as_late(
    orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    (saga_id,) = ids_in(0, 1)
    # As POST /transfer published it: it had to be appended within seconds.
    request = replace(transfer(saga_id, 10_00, at=now_ms()), accept_by=now_ms() + 7_000)
    sagas.deliver(REQUESTS, request, appended_at=now_ms())
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-a-deduct"), "SUCCESS"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-b-add"), "SUCCESS"))
    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 0)
    assert sagas.store.get(saga_id) is None

    # Someone produces the old request again, a week later: Kafka appends it then.
    orchestrator.expiry.clock = now_ms
    sagas.deliver(REQUESTS, request, appended_at=now_ms() + WEEK_MS)
    refused = sagas.saga(saga_id)
    assert refused.status == "FAILED" and refused.error is not None
    assert refused.error.startswith("NOT_ACCEPTED")
    assert outbox.take() == []  # no deduct: no money moves


def test_a_request_without_a_deadline_under_an_expired_id_is_a_new_transfer(
    orchestrator: Orchestrator, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    (saga_id,) = ids_in(0, 1)
    complete(sagas, outbox, saga_id, 10_00)
    later(orchestrator, WEEK_MS + 1_000)
    poke(sagas, 0)
    assert sagas.store.get(saga_id) is None
    orchestrator.expiry.clock = now_ms
    # Produced onto the topic by hand (no accept_by): the orchestrator cannot tell it from
    # a new request, and runs it; its money is its own, in the books like any other.
    sagas.deliver(REQUESTS, TransferRequested(saga_id, TRANSFER.name, 3_00, requested_at=1))
    assert sagas.saga(saga_id).status == "STARTED"
    assert only_command(outbox, "service-a-deduct").amount_cents == 3_00


def test_the_ledger_grace_lengthens_the_window_for_outages() -> None:
    steps = max(len(w.steps) for w in WORKFLOWS.values())
    # The retry policy alone: 3 x 35 s + 60 s + the 10 s arrival margin; an hour more
    # by default for a saga stretched by a worker or the broker being down.
    assert load_settings({"LEDGER_GRACE": "0"}).retry_policy.ledger_retention_ms(steps) == 175_000
    assert load_settings({}).retry_policy.ledger_retention_ms(steps) == 175_000 + 3_600_000
    assert load_settings({"LEDGER_GRACE": "120"}).retry_policy.ledger_retention_ms(steps) == (
        295_000
    )
    for bad in ("-1", "soon", "nan", str(31 * 86400)):
        with pytest.raises(ConfigError, match="LEDGER_GRACE"):
            load_settings({"LEDGER_GRACE": bad})
