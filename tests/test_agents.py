"""The real agents and HTTP views, run in memory: no broker, no network beyond loopback.

Each test builds its role's app with the role's own factory and settings of its own, and
a fake ``Wiring``: sends are recorded instead of produced, there is no changelog to wait
for, the one worker holds every partition (``Alone``), and batches hold one event. The
tables go to Faust's in-memory store before anything touches them. Agents run under
Faust's ``agent.test_context()`` and views behind aiohttp's test client, all on one event
loop per test (an ``asyncio.Runner`` that keeps the agent's task alive between steps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, replace
from typing import Any, cast
from unittest.mock import ANY

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from faust.stores.memory import Store as MemoryStore
from faust.types import AgentT, TableT
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from yarl import URL

from saga_streams.accounts import RECENT_ACTIONS, Account
from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.agents.participant import create_participant_app
from saga_streams.agents.wiring import Wiring, WiringFor
from saga_streams.config import load_settings
from saga_streams.messages import (
    Command,
    Message,
    Reply,
    ReplyStatus,
    TransferRequested,
    decode,
    encode,
)
from saga_streams.partitions import partition_for
from saga_streams.roles import PARTICIPANTS
from saga_streams.saga.state import Saga, now_ms
from saga_streams.tables.durable import DurableTable
from saga_streams.web.routing import Alone
from saga_streams.web.sagas import ACK_MARGIN_S, ACK_WAIT_S
from saga_streams.workflows import TRANSFER, WORKFLOWS

#: Long enough for any in-memory step; a stuck agent fails the test instead of hanging it.
STEP_TIMEOUT = 5.0
#: Not a message: both agents log and skip it. Used as a barrier, see ``AgentDriver``.
BARRIER = b"barrier: not a message"

REQUESTS, REPLIES = "transfer-requests", "orchestrator-response"
#: TOPIC_PARTITIONS when unset: events are delivered on the partition their key hashes to.
PARTITIONS = 4


# -- plumbing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    topic: str
    key: str
    message: Message
    partition: int | None = None  # only when the sender chose it (a forwarded stray)


class Outbox:
    """What the code under test sent, in order, decoded."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def take(self) -> list[Sent]:
        """Everything sent since the last ``take``."""
        taken, self.sent = self.sent, []
        return taken

    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Any = None,
    ) -> Awaitable[None]:
        """``Send``, recorded; acknowledged at once, as if by Kafka."""
        assert key is not None, "every send has a key"
        key = key.decode() if isinstance(key, bytes) else key
        self.sent.append(Sent(topic, key, decode(value), partition))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


class AgentDriver:
    """One agent under ``test_context()``, fed one event at a time."""

    def __init__(self, runner: asyncio.Runner, agent: AgentT[Any]) -> None:
        self._runner = runner
        self._app = agent.app
        self._agent = agent.test_context()
        runner.run(self._agent.start())

    def deliver(
        self,
        topic: str,
        message: Message | bytes,
        partition: int | None = None,
        appended_at: int | None = None,
    ) -> None:
        """Deliver one event as if consumed from ``topic``, on the partition its key
        belongs to unless ``partition`` says otherwise, stamped by the broker at
        ``appended_at`` (epoch ms) if given; return once it is handled."""
        if isinstance(message, bytes):
            key, value = "junk", message
        else:
            key = message.account if isinstance(message, Command) else message.saga_id
            value = encode(message)
        if partition is None:
            partition = partition_for(key, PARTITIONS)
        self._runner.run(self._deliver(topic, key, value, partition, appended_at))

    async def _deliver(
        self, topic: str, key: str, value: bytes, partition: int, appended_at: int | None
    ) -> None:
        # put() stamps message.topic with the agent's topic, or with "<internal>" when the
        # agent reads several (both roles' agents do): name the topic the event came on.
        self._agent.original_channel = self._app.topic(topic)
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                if appended_at is None:
                    await self._agent.put(value, key=key, partition=partition)
                else:
                    # put() has no timestamp type: what it does, with the broker's stamp.
                    channel = cast(Any, self._agent.stream().channel)
                    message = self._agent.to_message(
                        key,
                        value,
                        partition=partition,
                        offset=self._agent.sent_offset,
                        timestamp=appended_at / 1000,
                        timestamp_type=1,  # LogAppendTime
                    )
                    await channel.put(await channel.decode(message))
                    self._agent.sent_offset += 1
                    async with self._agent.new_value_processed:
                        await self._agent.new_value_processed.wait()
                # put() returns when the stream takes the event, before the agent's body
                # has handled it. The stream takes the next event only once the body is
                # done with this one (concurrency=1), so a second put is a barrier.
                await self._agent.put(BARRIER, key=key, partition=partition)
        except TimeoutError:
            raise AssertionError(f"agent stuck or dead: {self._agent.crash_reason!r}") from None

    def stop(self) -> None:
        self._runner.run(self._agent.stop())
        # The stream made the app's Kafka consumer (never started), whose thread has an
        # event loop of its own: close it, or it is reported unclosed when collected.
        cast(Any, self._app.consumer)._thread.thread_loop.close()


class OrchestratorDriver(AgentDriver):
    """The orchestrator's agent, and a look at its saga table."""

    def __init__(self, runner: asyncio.Runner, role: Orchestrator) -> None:
        super().__init__(runner, role.run_sagas)
        self.role = role
        self.store = role.sagas

    def saga(self, saga_id: str) -> Saga:
        found = self.store.get(saga_id)
        assert found is not None, f"no saga {saga_id} in the table"
        return found

    def outcomes(self, saga_id: str) -> tuple[str, ...]:
        return tuple(step.outcome for step in self.saga(saga_id).steps)


class Http:
    """aiohttp's test client on a Faust app's web application."""

    def __init__(self, runner: asyncio.Runner, app: faust.App) -> None:
        self._runner = runner
        self._client = runner.run(self._start(app))

    @staticmethod
    async def _start(app: faust.App) -> TestClient[Any, Any]:
        web_app = cast(AiohttpWeb, app.web).web_app
        client = TestClient(TestServer(web_app))  # made in the loop it runs in
        await client.start_server()
        return client

    def get(self, path: str) -> tuple[int, Any]:
        return self._runner.run(self._request("GET", path))

    def post(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type, **(headers or {})}
        return self._runner.run(self._request("POST", path, data=body, headers=headers))

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with (
            asyncio.timeout(STEP_TIMEOUT),
            self._client.request(method, path, **kwargs) as response,
        ):
            return response.status, await response.json()

    def close(self) -> None:
        self._runner.run(self._client.close())


def in_memory(app: faust.App, runner: asyncio.Runner) -> faust.App:
    """Bind a freshly imported app to the test's loop and its tables to memory."""
    app.loop = runner.get_loop()
    # Tables pick their store on first access to ``table.data``, from ``conf.store``
    # unless the table names its own; the roles' tables do not.
    app.conf.store = URL("memory://")
    for table in app.tables.values():
        assert isinstance(table.data, MemoryStore), f"{table.name} is on {table.data!r}"
    return app


# -- fixtures ----------------------------------------------------------------------------


async def nothing_to_wait_for(table: DurableTable) -> None:
    """Table writes go to an in-memory store here and no changelog is produced: there is
    no Kafka acknowledgement to wait for."""


def fake_wiring(outbox: Outbox) -> WiringFor:
    # One worker, never started, holds every partition: the views answer everything
    # themselves (routing between workers is tested against Kafka, test_scale_out.py).
    # One event per batch: a delivery returns once the agent has handled it.
    return lambda app: Wiring(
        outbox.send, nothing_to_wait_for, Alone(app), batch_max=1, sweep_every_s=0.0
    )


@pytest.fixture
def orchestrator(runner: asyncio.Runner, outbox: Outbox) -> Orchestrator:
    role = Orchestrator(load_settings({}), WORKFLOWS, fake_wiring(outbox))
    in_memory(role.app, runner)
    return role


@pytest.fixture
def orchestrator_app(orchestrator: Orchestrator) -> faust.App:
    return orchestrator.app


@pytest.fixture
def sagas(runner: asyncio.Runner, orchestrator: Orchestrator) -> Iterator[OrchestratorDriver]:
    driver = OrchestratorDriver(runner, orchestrator)
    yield driver
    driver.stop()


@pytest.fixture
def orchestrator_http(runner: asyncio.Runner, orchestrator_app: faust.App) -> Iterator[Http]:
    http = Http(runner, orchestrator_app)
    yield http
    http.close()


def build_service_a(runner: asyncio.Runner, outbox: Outbox, failure_rate: str) -> faust.App:
    settings = load_settings(
        {
            "SERVICE_A_FAILURE_RATE": failure_rate,
            "OPENING_BALANCE_A": "1000",
            "SERVICE_A_ACCOUNTS": "A-{1..3}=50, SAVINGS=0.5",
            # The ledger window of the retry policy alone (175 s), no outage grace.
            "LEDGER_GRACE": "0",
        }
    )
    app = create_participant_app(
        PARTICIPANTS["service-a"], settings, WORKFLOWS, fake_wiring(outbox)
    )
    return in_memory(app, runner)


@pytest.fixture
def service_a_app(runner: asyncio.Runner, outbox: Outbox) -> faust.App:
    return build_service_a(runner, outbox, failure_rate="0")


@pytest.fixture
def service_a_agent(runner: asyncio.Runner, service_a_app: faust.App) -> Iterator[AgentDriver]:
    driver = AgentDriver(runner, service_a_app.agents["service-a-execute-commands"])
    yield driver
    driver.stop()


# -- message helpers ---------------------------------------------------------------------


def transfer(saga_id: str, amount_cents: int = 100_00, at: int = 1_000) -> TransferRequested:
    return TransferRequested(saga_id, TRANSFER.name, amount_cents, requested_at=at)


def reply_to(command: Command, status: ReplyStatus, error: str | None = None) -> Reply:
    participant = TRANSFER.step(command.step).participant
    return Reply.for_command(command, participant, status, error)


def only_command(outbox: Outbox, topic: str) -> Command:
    """The one command sent since the last look, which must have gone to ``topic``."""
    sent = outbox.take()
    assert [(s.topic, s.key) for s in sent] == [(topic, ANY)], sent
    command = sent[0].message
    assert isinstance(command, Command) and sent[0].key == command.account
    return command


# -- the orchestrator agent --------------------------------------------------------------


def test_request_starts_the_saga_and_commands_the_deduct(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("s1", 250_00))

    assert sagas.saga("s1").status == "STARTED"
    assert sagas.outcomes("s1") == ("PENDING", "NOT_STARTED")
    deduct = only_command(outbox, "service-a-deduct")
    assert deduct == Command(
        "s1-1", "s1", 1, "ACTION", "deduct", "A", 250_00, issued_at=deduct.issued_at
    )
    assert deduct.attempt == 1 and deduct.issued_at > 0


def test_success_replies_walk_the_saga_to_completed(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("s1"))
    deduct = only_command(outbox, "service-a-deduct")

    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    add = only_command(outbox, "service-b-add")
    assert add == Command("s1-2", "s1", 2, "ACTION", "add", "B", 100_00, issued_at=add.issued_at)
    assert (sagas.saga("s1").status, sagas.outcomes("s1")) == ("STARTED", ("SUCCEEDED", "PENDING"))

    sagas.deliver(REPLIES, reply_to(add, "SUCCESS"))
    assert (sagas.saga("s1").status, sagas.outcomes("s1")) == (
        "COMPLETED",
        ("SUCCEEDED", "SUCCEEDED"),
    )
    assert outbox.take() == []


def test_failed_step_two_refunds_step_one_then_rolls_back(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("s1"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-a-deduct"), "SUCCESS"))
    add = only_command(outbox, "service-b-add")

    sagas.deliver(REPLIES, reply_to(add, "FAILED", "Account verification failed"))
    refund = only_command(outbox, "service-a-refund")
    assert (refund.kind, refund.undoes, refund.amount_cents) == ("COMPENSATION", "s1-1", 100_00)
    assert (sagas.saga("s1").status, sagas.outcomes("s1")) == (
        "COMPENSATING",
        ("COMPENSATING", "FAILED"),
    )

    sagas.deliver(REPLIES, reply_to(refund, "SUCCESS"))
    assert (sagas.saga("s1").status, sagas.outcomes("s1")) == (
        "ROLLED_BACK",
        ("COMPENSATED", "FAILED"),
    )
    assert outbox.take() == []


def test_duplicate_replies_never_move_the_saga(sagas: OrchestratorDriver, outbox: Outbox) -> None:
    sagas.deliver(REQUESTS, transfer("s1"))
    deduct = only_command(outbox, "service-a-deduct")
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    add = only_command(outbox, "service-b-add")
    before = sagas.saga("s1")

    # Redelivered while step 2 is awaited: same state; the awaited command goes out again
    # with its id unchanged (the first send may have died with a worker).
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    assert sagas.saga("s1") == before
    assert only_command(outbox, "service-b-add") == add

    sagas.deliver(REPLIES, reply_to(add, "SUCCESS"))
    completed = sagas.saga("s1")
    assert completed.status == "COMPLETED"
    for late in (reply_to(add, "SUCCESS"), reply_to(add, "FAILED"), reply_to(deduct, "SUCCESS")):
        sagas.deliver(REPLIES, late)
        assert sagas.saga("s1") == completed
        assert outbox.take() == []


@pytest.mark.parametrize(
    ("topic", "junk"),
    [
        (REQUESTS, b"garbage"),
        (REPLIES, b'{"type": "Reply"}'),
        (REPLIES, encode(Command("s1-1", "s1", 1, "ACTION", "deduct", "A", 100, issued_at=1))),
    ],
    ids=["not-json", "incomplete", "not-for-the-orchestrator"],
)
def test_malformed_message_is_skipped_and_the_agent_carries_on(
    sagas: OrchestratorDriver, outbox: Outbox, topic: str, junk: bytes
) -> None:
    sagas.deliver(topic, junk)
    assert sagas.store.get("s1") is None
    assert outbox.take() == []

    sagas.deliver(REQUESTS, transfer("s1"))
    assert sagas.saga("s1").status == "STARTED"
    only_command(outbox, "service-a-deduct")


# -- service A's agent -------------------------------------------------------------------


#: When the commands below were issued: as each test starts, so the agent reads them
#: within their window (an action issued longer ago than the orchestrator would send it
#: is refused, see accounts.py).
ISSUED_AT = now_ms()


@pytest.fixture(autouse=True)
def issued_now() -> None:
    global ISSUED_AT
    ISSUED_AT = now_ms()


def deduct_from_a(
    *, saga_id: str = "s1", amount_cents: int = 100_00, account: str = "A"
) -> Command:
    return Command(
        f"{saga_id}-1", saga_id, 1, "ACTION", "deduct", account, amount_cents, issued_at=ISSUED_AT
    )


def refund_to_a(*, saga_id: str = "s1", amount_cents: int = 100_00) -> Command:
    action = deduct_from_a(saga_id=saga_id)
    return Command(
        f"{saga_id}-1-undo",
        saga_id,
        1,
        "COMPENSATION",
        "refund",
        "A",
        amount_cents,
        issued_at=action.issued_at,
        undoes=action.command_id,
    )


def accounts(app: faust.App) -> TableT[str, Any]:
    return cast(TableT[str, Any], app.tables["accounts"])


def account_a(app: faust.App) -> Account:
    data = accounts(app).get("A")
    assert data is not None, "account A was never written"
    return Account.from_dict(data)


def answer(command: Command, status: ReplyStatus = "SUCCESS", error: str | None = None) -> Sent:
    """The reply service A sends for ``command``."""
    return Sent(REPLIES, command.saga_id, Reply.for_command(command, "service-a", status, error))


def test_deduct_takes_the_amount_from_account_a_and_replies(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    deduct = deduct_from_a(amount_cents=120_50)
    service_a_agent.deliver("service-a-deduct", deduct)

    account = account_a(service_a_app)
    assert account.balance_cents == 879_50
    assert account.ledger["s1-1"].state == "APPLIED"
    assert outbox.take() == [answer(deduct)]


def test_redelivered_deduct_is_applied_once_but_answered_each_time(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    for _ in range(3):
        service_a_agent.deliver("service-a-deduct", deduct_from_a())

    assert account_a(service_a_app).balance_cents == 900_00
    assert outbox.take() == [answer(deduct_from_a())] * 3


def test_an_archived_deduct_is_still_applied_once_and_refunded_once(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    first = deduct_from_a(saga_id="first", amount_cents=1_00)
    service_a_agent.deliver("service-a-deduct", first)
    for n in range(RECENT_ACTIONS):  # pushes the first out of the account value
        service_a_agent.deliver("service-a-deduct", deduct_from_a(saga_id=f"s{n}", amount_cents=1))
    assert "first-1" not in account_a(service_a_app).ledger
    assert accounts(service_a_app).get("A/first-1") == ["APPLIED", 1_00, ISSUED_AT, None, ANY]
    outbox.take()

    service_a_agent.deliver("service-a-deduct", first)  # redelivered, long after
    service_a_agent.deliver("service-a-refund", refund_to_a(saga_id="first", amount_cents=1_00))
    service_a_agent.deliver("service-a-refund", refund_to_a(saga_id="first", amount_cents=1_00))

    assert account_a(service_a_app).balance_cents == 1000_00 - RECENT_ACTIONS
    assert [s.message.status for s in outbox.take()] == ["SUCCESS"] * 3  # type: ignore[union-attr]


def test_refund_gives_back_what_the_deduct_took(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    deduct, refund = deduct_from_a(amount_cents=40_00), refund_to_a(amount_cents=40_00)
    service_a_agent.deliver("service-a-deduct", deduct)
    service_a_agent.deliver("service-a-refund", refund)
    service_a_agent.deliver("service-a-refund", refund)  # redelivered

    account = account_a(service_a_app)
    assert account.balance_cents == 1000_00
    assert account.ledger["s1-1"].state == "COMPENSATED"
    assert outbox.take() == [answer(deduct), answer(refund), answer(refund)]


def test_command_on_the_wrong_topic_is_skipped_without_reply(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    service_a_agent.deliver("service-a-deduct", refund_to_a())  # a compensation on the action topic
    service_a_agent.deliver("service-a-refund", deduct_from_a())  # and an action on the other
    service_a_agent.deliver("service-a-deduct", b"garbage")

    assert accounts(service_a_app).get("A") is None
    assert outbox.take() == []


def test_command_for_another_account_fails_and_touches_nothing(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    service_a_agent.deliver("service-a-deduct", deduct_from_a(account="B"))

    assert accounts(service_a_app).get("B") is None
    assert outbox.take() == [answer(deduct_from_a(account="B"), "FAILED", "UNKNOWN_ACCOUNT: B")]


def test_failure_rate_comes_from_the_settings(runner: asyncio.Runner, outbox: Outbox) -> None:
    app = build_service_a(runner, outbox, failure_rate="1")
    driver = AgentDriver(runner, app.agents["service-a-execute-commands"])
    try:
        driver.deliver("service-a-deduct", deduct_from_a())
    finally:
        driver.stop()

    assert account_a(app).balance_cents == 1000_00
    assert outbox.take() == [answer(deduct_from_a(), "FAILED", "Account verification failed")]


# -- the orchestrator's HTTP API ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"amount": 100}', "text/plain", "Content-Type must be application/json"),
        (b"{amount: 100}", "application/json", "body is not valid JSON"),
        (b'{"amount": "100"}', "application/json", "amount must be a JSON number, not a string"),
        (b'{"amount": -5}', "application/json", "amount must be greater than 0"),
        (b'{"amount": 1.005}', "application/json", "amount must have at most 2 decimal places"),
        (b'{"amount": 1, "to": "B"}', "application/json", "unknown field 'to'"),
    ],
)
def test_transfer_with_a_bad_body_is_a_400_that_sends_nothing(
    orchestrator_http: Http, outbox: Outbox, body: bytes, content_type: str, error: str
) -> None:
    status, answered = orchestrator_http.post("/transfer", body, content_type)

    assert status == 400
    assert answered == {"error": ANY} and error in answered["error"]
    assert outbox.take() == []


def test_transfer_is_accepted_once_the_request_is_sent(
    orchestrator_http: Http, outbox: Outbox
) -> None:
    status, accepted = orchestrator_http.post("/transfer", b'{"amount": 12.34}')

    assert status == 202
    assert accepted == {
        "saga_id": ANY,
        "amount": 12.34,
        "status": "STARTED",
        "message": "Transfer saga initiated",
    }
    saga_id = accepted["saga_id"]
    assert isinstance(saga_id, str) and len(saga_id) == 16
    [sent] = outbox.take()
    assert (sent.topic, sent.key) == (REQUESTS, saga_id)
    assert sent.message == TransferRequested(saga_id, TRANSFER.name, 12_34, ANY, accept_by=ANY)
    assert isinstance(sent.message, TransferRequested) and sent.message.accept_by is not None
    # Kafka must append it this long before the view stops waiting and answers 503.
    margin = sent.message.requested_at + ACK_WAIT_S * 1000 - sent.message.accept_by
    assert margin == ACK_MARGIN_S * 1000


def test_an_accepted_transfer_becomes_a_saga_the_api_shows(
    orchestrator_http: Http, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    _, accepted = orchestrator_http.post("/transfer", b'{"amount": 100}')
    [request] = outbox.take()
    assert orchestrator_http.get(f"/sagas/{accepted['saga_id']}")[0] == 404  # not yet consumed

    sagas.deliver(request.topic, request.message)

    status, shown = orchestrator_http.get(f"/sagas/{accepted['saga_id']}")
    assert status == 200
    assert (shown["status"], shown["amount"]) == ("STARTED", 100)


def test_sagas_are_listed_newest_first_filtered_and_paged(
    orchestrator_http: Http, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("old", 10_00, at=1_000))
    old_deduct = only_command(outbox, "service-a-deduct")
    sagas.deliver(REQUESTS, transfer("new", 20_50, at=2_000))
    only_command(outbox, "service-a-deduct")  # "new" stays STARTED
    sagas.deliver(REPLIES, reply_to(old_deduct, "SUCCESS"))
    sagas.deliver(REPLIES, reply_to(only_command(outbox, "service-b-add"), "SUCCESS"))
    assert sagas.saga("old").status == "COMPLETED"

    status, listing = orchestrator_http.get("/sagas")
    assert status == 200
    assert [s["saga_id"] for s in listing["sagas"]] == ["new", "old"]
    assert (listing["count"], listing["next"]) == (2, None)

    _, completed = orchestrator_http.get("/sagas?status=COMPLETED")
    assert [s["saga_id"] for s in completed["sagas"]] == ["old"]

    _, first = orchestrator_http.get("/sagas?limit=1")
    assert [s["saga_id"] for s in first["sagas"]] == ["new"]
    _, second = orchestrator_http.get(first["next"])
    assert ([s["saga_id"] for s in second["sagas"]], second["next"]) == (["old"], None)

    assert orchestrator_http.get("/sagas?status=MAYBE") == (400, {"error": ANY})


def test_saga_detail_and_unknown_saga(orchestrator_http: Http, sagas: OrchestratorDriver) -> None:
    sagas.deliver(REQUESTS, transfer("s1", 20_50, at=1_500))

    status, detail = orchestrator_http.get("/sagas/s1")
    assert status == 200
    assert detail == {
        "saga_id": "s1",
        "workflow": "transfer",
        "amount": 20.5,
        "from_account": "A",
        "to_account": "B",
        "status": "STARTED",
        "error": None,
        "steps": [
            {
                "step": 1,
                "service": "service-a",
                "account": "A",
                "action": "deduct",
                "compensation": "refund",
                "outcome": "PENDING",
                "error": None,
                "amount": 20.5,
                "attempts": 1,
                "compensation_attempts": 0,
            },
            {
                "step": 2,
                "service": "service-b",
                "account": "B",
                "action": "add",
                "compensation": "remove",
                "outcome": "NOT_STARTED",
                "error": None,
                "amount": 20.5,
                "attempts": 0,
                "compensation_attempts": 0,
            },
        ],
        "created_at": "1970-01-01T00:00:01.500Z",
        "updated_at": ANY,
        "next_retry_at": ANY,
        "retry_policy": {"step_timeout_s": 5.0, "max_attempts": 3, "max_delay_s": 60.0},
        "cancelled_by": None,
        "history": [
            {"at": ANY, "event": "started", "step": None, "detail": "transfer, $20.50, 2 steps"},
            {
                "at": ANY,
                "event": "command_sent",
                "step": 1,
                "detail": "service-a.deduct sent, attempt 1 of 3",
            },
        ],
    }
    expired = "it ended more than 7 days ago and expired (SAGA_RETENTION)"
    error = f"no saga 'nope': it never existed, or {expired}"
    assert orchestrator_http.get("/sagas/nope") == (404, {"error": error})


# -- service A's HTTP API ----------------------------------------------------------------


def test_balance_shows_account_a_before_and_after_a_deduct(
    runner: asyncio.Runner, service_a_app: faust.App, service_a_agent: AgentDriver
) -> None:
    http = Http(runner, service_a_app)
    try:
        assert http.get("/balance") == (200, {"account": "A", "balance": 1000})
        service_a_agent.deliver("service-a-deduct", deduct_from_a(amount_cents=30))
        assert http.get("/balance") == (200, {"account": "A", "balance": 999.7})
    finally:
        http.close()


def test_many_accounts_one_command_moves_one_balance(
    runner: asyncio.Runner, service_a_app: faust.App, service_a_agent: AgentDriver
) -> None:
    http = Http(runner, service_a_app)
    try:
        service_a_agent.deliver(
            "service-a-deduct", deduct_from_a(amount_cents=20_00, account="A-2")
        )
        assert http.get("/balance?account=A-2") == (200, {"account": "A-2", "balance": 30})
        assert http.get("/balance?account=A-1") == (200, {"account": "A-1", "balance": 50})
        assert http.get("/balance") == (200, {"account": "A", "balance": 1000})

        status, first = http.get("/accounts?limit=3")
        assert status == 200
        assert first["accounts"] == [
            {"account": "A", "balance": 1000},
            {"account": "A-1", "balance": 50},
            {"account": "A-2", "balance": 30},
        ]
        assert (first["count"], first["next"]) == (5, "/accounts?cursor=A-2&limit=3")
        _, second = http.get(first["next"])
        assert [a["account"] for a in second["accounts"]] == ["A-3", "SAVINGS"]
        assert second["next"] is None

        assert http.get("/balance?account=B")[0] == 404
        assert http.get("/balance?acount=A")[0] == 400
        assert http.get("/accounts?limit=0")[0] == 400
        assert http.get("/accounts?page=2")[0] == 400
    finally:
        http.close()


# -- Kafka input as a trust boundary -----------------------------------------------------


def test_a_request_on_another_partition_is_forwarded_there_not_handled(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    home = partition_for("s1", PARTITIONS)
    sagas.deliver(REQUESTS, transfer("s1"), partition=(home + 1) % PARTITIONS)

    assert sagas.store.get("s1") is None
    assert outbox.take() == [Sent(REQUESTS, "s1", transfer("s1"), partition=home)]
    assert sagas.role.strays.forwarded[REQUESTS] == 1

    sagas.deliver(REQUESTS, transfer("s1"), partition=home)  # the forwarded copy
    assert sagas.saga("s1").status == "STARTED"
    only_command(outbox, "service-a-deduct")


def test_a_request_appended_after_its_deadline_is_refused(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    deadline = now_ms() - 1_000
    late = replace(transfer("s1"), accept_by=deadline)
    in_time = replace(transfer("s2"), accept_by=deadline)
    sagas.deliver(REQUESTS, late, appended_at=deadline + 1)
    sagas.deliver(REQUESTS, in_time, appended_at=deadline)

    assert sagas.saga("s1").status == "FAILED"
    assert (sagas.saga("s1").error or "").startswith("NOT_ACCEPTED")
    assert sagas.saga("s2").status == "STARTED"
    only_command(outbox, "service-a-deduct")


def test_a_request_appended_a_retention_ago_is_skipped_its_saga_may_have_expired(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    # Read again after a retention (7 days here): its saga may have run, ended and been
    # removed, and must not run twice. Just within the retention, it still runs.
    week_ms = 7 * 24 * 3600 * 1000
    sagas.deliver(REQUESTS, transfer("s1"), appended_at=now_ms() - week_ms)
    assert sagas.store.get("s1") is None
    assert outbox.take() == []
    sagas.deliver(REQUESTS, transfer("s2"), appended_at=now_ms() - week_ms + 60_000)
    assert sagas.saga("s2").status == "STARTED"
    only_command(outbox, "service-a-deduct")


def test_a_request_that_http_would_refuse_ends_failed_before_any_step(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("s1", amount_cents=-50_00))
    sagas.deliver(REQUESTS, TransferRequested("s2", "no-such-workflow", 1_00, requested_at=1))
    sagas.deliver(REQUESTS, TransferRequested("../s3", TRANSFER.name, 1_00, requested_at=1))

    refused = sagas.saga("s1")
    assert (refused.status, refused.error) == ("FAILED", "amount must be greater than 0")
    assert [s.outcome for s in refused.steps] == ["NOT_STARTED", "NOT_STARTED"]
    assert "unknown workflow" in (sagas.saga("s2").error or "")
    assert sagas.saga("s2").steps == ()
    assert sagas.store.get("../s3") is None  # no saga id to record it under
    assert outbox.take() == []

    sagas.deliver(REQUESTS, transfer("s1"))  # the id is taken: a valid request changes nothing
    assert sagas.saga("s1").status == "FAILED"
    assert outbox.take() == []


def test_a_reply_to_a_forged_command_under_a_real_id_is_ignored(
    sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    sagas.deliver(REQUESTS, transfer("s1", 100_00))
    deduct = only_command(outbox, "service-a-deduct")
    forged = replace(deduct, amount_cents=-1000_00)
    sagas.deliver(REPLIES, reply_to(forged, "FAILED", "INVALID_AMOUNT: amount must be > 0"))

    assert sagas.saga("s1").status == "STARTED"  # still waiting for its own deduct
    assert outbox.take() == []
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    only_command(outbox, "service-b-add")


def test_a_command_on_another_partition_is_forwarded_and_moves_nothing(
    service_a_agent: AgentDriver, service_a_app: faust.App, outbox: Outbox
) -> None:
    home = partition_for("A", PARTITIONS)
    service_a_agent.deliver("service-a-deduct", deduct_from_a(), partition=(home + 2) % PARTITIONS)

    assert accounts(service_a_app).get("A") is None
    assert outbox.take() == [Sent("service-a-deduct", "A", deduct_from_a(), partition=home)]


@pytest.mark.parametrize(
    ("topic", "command", "error"),
    [
        ("service-a-deduct", deduct_from_a(amount_cents=-1000_00), "INVALID_AMOUNT"),
        ("service-a-deduct", deduct_from_a(amount_cents=0), "INVALID_AMOUNT"),
        ("service-a-deduct", replace(deduct_from_a(), action="add"), "UNKNOWN_ACTION"),
        ("service-a-refund", replace(refund_to_a(), undoes=None), "INVALID_COMMAND"),
        ("service-a-deduct", deduct_from_a(account="NOBODY"), "UNKNOWN_ACCOUNT"),
    ],
)
def test_a_command_breaking_the_rules_is_refused_and_never_applied(
    service_a_agent: AgentDriver,
    service_a_app: faust.App,
    outbox: Outbox,
    topic: str,
    command: Command,
    error: str,
) -> None:
    service_a_agent.deliver(topic, command)

    assert accounts(service_a_app).get("A") is None  # no balance moved, nothing recorded
    (sent,) = outbox.take()
    reply = sent.message
    assert isinstance(reply, Reply) and reply.status == "FAILED"
    assert reply.error is not None and reply.error.startswith(error)
    assert (reply.account, reply.amount_cents) == (command.account, command.amount_cents)

    # Not recorded: the real command under the same id is still executed.
    service_a_agent.deliver("service-a-deduct", deduct_from_a())
    assert account_a(service_a_app).balance_cents == 900_00
