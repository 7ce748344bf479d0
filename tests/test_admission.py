"""Admission control of ``POST /transfer`` (``web/admission.py``): the count it keeps, the
Retry-After it computes, and the orchestrator's view refusing with 429 before it
publishes anything. The same path against Kafka: ``test_backpressure_e2e.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.config import load_settings
from saga_streams.messages import Command
from saga_streams.saga.state import Saga
from saga_streams.web.admission import (
    MAX_RETRY_AFTER_S,
    PENDING_TTL_MS,
    RATE_WINDOW_MS,
    RECOVERING_RETRY_AFTER_S,
    Admission,
)
from saga_streams.workflows import WORKFLOWS
from tests.test_agents import (
    REPLIES,
    Http,
    OrchestratorDriver,
    Outbox,
    fake_wiring,
    in_memory,
    reply_to,
)

T0 = 1_700_000_000_000  # epoch ms


def saga(saga_id: str, status: Any = "STARTED") -> Saga:
    return Saga(saga_id, "transfer", 1_00, "A", "B", status, (), T0, T0)


class Table:
    """The in-flight count of a worker's table, set by hand (None: recovering)."""

    def __init__(self) -> None:
        self.count: int | None = 0

    def __call__(self) -> int | None:
        return self.count


@pytest.fixture
def table() -> Table:
    return Table()


def test_admits_up_to_the_limit_counting_requests_not_yet_seen(table: Table) -> None:
    refused: list[None] = []
    admission = Admission(3, table, lambda: refused.append(None))
    # Nothing in the table yet: the requests accepted but not yet seen count.
    assert [admission.admit(f"s{n}", T0) for n in range(3)] == [None, None, None]
    refusal = admission.admit("s3", T0)
    assert refusal is not None and len(refused) == 1
    assert "(3, at most 3: MAX_IN_FLIGHT)" in refusal.error
    assert admission.load(T0) == 3


def test_every_request_is_refused_while_the_tables_recover(table: Table) -> None:
    refused: list[None] = []
    admission = Admission(3, table, lambda: refused.append(None))
    table.count = None  # recovering: the count is not known
    refusal = admission.admit("s0", T0)
    assert refusal is not None and refusal.retry_after_s == RECOVERING_RETRY_AFTER_S
    assert "recovering its tables" in refusal.error and "nothing was published" in refusal.error
    assert len(refused) == 1 and admission.pending(T0) == 0
    table.count = 0  # recovered
    assert admission.admit("s0", T0) is None


def test_a_request_seen_by_the_agent_counts_once(table: Table) -> None:
    admission = Admission(2, table)
    assert admission.admit("s0", T0) is None
    # The agent creates the saga: it moves from pending to the table, still one slot.
    table.count = 1
    admission.observe(None, saga("s0"), T0 + 5)
    assert (admission.pending(T0 + 5), admission.load(T0 + 5)) == (0, 1)
    assert admission.admit("s1", T0 + 5) is None
    assert admission.admit("s2", T0 + 5) is not None
    # It ends: the table no longer holds it, and a slot is free again.
    table.count = 0
    admission.observe(saga("s0"), saga("s0", "COMPLETED"), T0 + 10)
    assert admission.admit("s2", T0 + 10) is None


def test_the_table_alone_can_fill_the_limit(table: Table) -> None:
    admission = Admission(5, table)
    table.count = 5
    assert admission.admit("s0", T0) is not None
    table.count = 4
    assert admission.admit("s0", T0) is None


def test_a_request_for_another_workers_partition_takes_no_slot_here(table: Table) -> None:
    admission = Admission(1, table)
    assert admission.admit("elsewhere", T0, mine=False) is None
    assert admission.load(T0) == 0
    assert admission.admit("here", T0, mine=True) is None
    assert admission.admit("refused", T0) is not None


def test_a_request_never_seen_stops_counting_after_the_ttl(table: Table) -> None:
    admission = Admission(1, table)
    assert admission.admit("moved-away", T0) is None
    assert admission.admit("s1", T0 + PENDING_TTL_MS - 1) is not None
    assert admission.pending(T0 + PENDING_TTL_MS) == 0
    assert admission.admit("s1", T0 + PENDING_TTL_MS) is None


def test_retry_after_is_the_time_the_sagas_ahead_take_at_the_recent_rate(table: Table) -> None:
    admission = Admission(10, table)
    table.count = 10
    # No saga ended in the window: the window's length.
    refusal = admission.admit("x", T0)
    assert refusal is not None and refusal.retry_after_s == RATE_WINDOW_MS // 1000
    # 8 sagas ended over 4 s: 2/s, 10 ahead: 5 s.
    for n in range(8):
        admission.observe(saga(f"e{n}"), saga(f"e{n}", "ROLLED_BACK"), T0 + n * 500)
    refusal = admission.admit("x", T0 + 4_000)
    assert refusal is not None and refusal.retry_after_s == 5
    assert "try again in 5 s" in refusal.error
    # A terminal saga written again (an operator's action) is no second end.
    admission.observe(saga("e0", "ROLLED_BACK"), saga("e0", "ROLLED_BACK"), T0 + 4_000)
    assert admission.completion_rate(T0 + 4_000) == pytest.approx(2.0)
    # Over the whole window once it is full: 8 in 10 s.
    assert admission.completion_rate(T0 + RATE_WINDOW_MS - 1) == pytest.approx(0.8, rel=1e-3)
    # Ends older than the window no longer count.
    assert admission.completion_rate(T0 + 4_000 + RATE_WINDOW_MS) == 0.0


def test_a_few_ends_close_together_are_measured_over_a_second(table: Table) -> None:
    admission = Admission(10, table)
    for n in range(3):
        admission.observe(None, saga(f"e{n}", "COMPLETED"), T0 + n)
    assert admission.completion_rate(T0 + 5) == pytest.approx(3.0)
    assert admission.retry_after_s(T0 + 5, 10) == 4
    # 3/s measured over a second: 60 ahead would be 20 s, but the window is not full.
    assert admission.retry_after_s(T0 + 5, 60) == RATE_WINDOW_MS // 1000


def test_retry_after_is_between_one_second_and_a_minute(table: Table) -> None:
    admission = Admission(1, table)
    table.count = 1
    for n in range(1000):  # 1000/s
        admission.observe(None, saga(f"e{n}", "FAILED"), T0)
    assert admission.retry_after_s(T0, 1) == 1
    slow = Admission(1, table)
    slow.observe(None, saga("e", "FAILED"), T0)
    assert slow.completion_rate(T0 + 9_000) == pytest.approx(1 / 9)
    # Measured over less than the window: at most the window's length...
    assert slow.retry_after_s(T0 + 9_000, 1000) == RATE_WINDOW_MS // 1000
    # ...over the whole window, at most a minute.
    slow.observe(None, saga("f", "FAILED"), T0 + RATE_WINDOW_MS - 1)
    assert slow.retry_after_s(T0 + RATE_WINDOW_MS, 1000) == MAX_RETRY_AFTER_S


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0, lambda: 0)


# -- the orchestrator's POST /transfer, in memory ----------------------------------------

LIMIT = 2


class HttpWithHeaders(Http):
    """``Http``, with the answer's headers, and a text body."""

    def post_answer(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        return self._runner.run(self._answer("POST", "/transfer", body))

    def text(self, path: str) -> str:
        return str(self._runner.run(self._answer("GET", path, b""))[2])

    async def _answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        async with self._client.request(method, path, data=body, headers=headers) as response:
            text = await response.text()
            is_json = response.content_type == "application/json"
            return response.status, dict(response.headers), json.loads(text) if is_json else text


@pytest.fixture
def orchestrator(runner: asyncio.Runner, outbox: Outbox) -> Orchestrator:
    settings = load_settings({"MAX_IN_FLIGHT": str(LIMIT)})
    role = Orchestrator(settings, WORKFLOWS, fake_wiring(outbox))
    in_memory(role.app, runner)
    return role


@pytest.fixture
def http(runner: asyncio.Runner, orchestrator: Orchestrator) -> Iterator[HttpWithHeaders]:
    app: faust.App = orchestrator.app
    client = HttpWithHeaders(runner, app)
    yield client
    client.close()


@pytest.fixture
def driver(runner: asyncio.Runner, orchestrator: Orchestrator) -> Iterator[OrchestratorDriver]:
    agent = OrchestratorDriver(runner, orchestrator)
    yield agent
    agent.stop()


def test_beyond_the_limit_a_transfer_is_a_429_that_publishes_nothing(
    http: HttpWithHeaders, outbox: Outbox
) -> None:
    accepted = [http.post_answer(b'{"amount": 1}') for _ in range(LIMIT)]
    assert [status for status, _, _ in accepted] == [202] * LIMIT
    assert len(outbox.take()) == LIMIT

    status, headers, body = http.post_answer(b'{"amount": 1}')
    assert status == 429
    assert headers["Retry-After"].isdigit() and int(headers["Retry-After"]) >= 1
    assert set(body) == {"error"} and "MAX_IN_FLIGHT" in body["error"]
    assert outbox.take() == []
    # Validation comes first: a bad body is still a 400, and is not counted as refused.
    assert http.post_answer(b'{"amount": -1}')[0] == 400
    assert "saga_transfers_refused_total 1.0" in http.text("/metrics")


def test_a_slot_frees_when_a_saga_ends(
    http: HttpWithHeaders, outbox: Outbox, driver: OrchestratorDriver
) -> None:
    for _ in range(LIMIT):
        assert http.post_answer(b'{"amount": 1}')[0] == 202
    requests = outbox.take()
    for request in requests:  # the agent sees them: the table counts them now
        driver.deliver(request.topic, request.message)
    deducts = outbox.take()
    assert http.post_answer(b'{"amount": 1}')[0] == 429

    first = deducts[0].message
    assert isinstance(first, Command)
    driver.deliver(REPLIES, reply_to(first, "FAILED"))  # step 1 failed: the saga ends
    assert driver.saga(first.saga_id).status == "FAILED"
    assert http.post_answer(b'{"amount": 1}')[0] == 202
    assert [sent.topic for sent in outbox.take()] == ["transfer-requests"]


def test_while_its_tables_recover_the_worker_answers_429_and_publishes_nothing(
    http: HttpWithHeaders, outbox: Outbox, orchestrator: Orchestrator, monkeypatch: Any
) -> None:
    monkeypatch.setattr(orchestrator.wiring.peers, "recovered", lambda: False)
    status, headers, body = http.post_answer(b'{"amount": 1}')
    assert status == 429 and headers["Retry-After"] == str(RECOVERING_RETRY_AFTER_S)
    assert "recovering its tables" in body["error"]
    assert outbox.take() == []
    monkeypatch.setattr(orchestrator.wiring.peers, "recovered", lambda: True)
    assert http.post_answer(b'{"amount": 1}')[0] == 202


def test_during_a_rebalance_a_transfer_does_not_rebuild_the_deadlines_from_a_partial_table(
    http: HttpWithHeaders,
    outbox: Outbox,
    orchestrator: Orchestrator,
    driver: OrchestratorDriver,
    monkeypatch: Any,
) -> None:
    """Between a new assignment and the start of its recovery the tables look recovered
    but do not hold the new partitions yet. A POST then counts with the index it has; an
    index rebuilt from that table would have lost these sagas' timeouts for good."""
    for _ in range(LIMIT - 1):
        assert http.post_answer(b'{"amount": 1}')[0] == 202
    for request in outbox.take():
        driver.deliver(request.topic, request.message)
    waiting = {command.message.saga_id for command in outbox.take()}
    assert len(waiting) == LIMIT - 1

    orchestrator.app.rebalancing_count += 1  # a new assignment...
    monkeypatch.setattr(orchestrator.wiring.peers, "serving", lambda: False)  # ...not served
    monkeypatch.setattr(orchestrator.sagas, "all", lambda: iter(()))  # not recovered yet
    assert http.post_answer(b'{"amount": 1}')[0] == 202
    assert orchestrator.deadlines.in_flight_count() == LIMIT - 1
    overdue = orchestrator.deadlines.due(now=2**62, limit=LIMIT)
    assert {saga_id for saga_id, _ in overdue} == waiting
