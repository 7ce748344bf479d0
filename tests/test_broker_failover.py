"""A replicated three-broker cluster: topics that do not match are refused, and brokers die.

The cluster runs as operators run Kafka: three KRaft nodes, every topic and changelog with
three replicas, ``min.insync.replicas=2`` and producers waiting for all in-sync replicas.

1. A topic that already exists with another replication factor, or too few partitions,
   stops a worker at start with one line naming the topic.
2. Under load on both workflows, the broker leading most partitions of the saga changelog
   is killed with SIGKILL and started again, then another one: every transfer answered
   202 ends terminal, and the audit passes.
3. With two of the three brokers down, ``POST /transfer`` answers 503 within a bounded
   time; once they are back, nothing is half-done: every accepted saga ends, no saga
   answered 503 ever moves money, and the audit passes.

Every loop is bounded by count and by time.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from saga_streams.config import load_settings
from saga_streams.connection import KafkaAccess
from saga_streams.http_client import http_json
from saga_streams.local.ending import wait_until_ended
from saga_streams.saga.state import TERMINAL, epoch_seconds
from saga_streams.web.sagas import ACK_WAIT_S
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

SAGA_CHANGELOG = "saga-orchestrator-sagas-changelog"
ENV = {
    # Timeouts short enough that a saga whose messages waited out a broker moves on soon.
    "STEP_TIMEOUT": "2",
    "RETRY_MAX_DELAY": "8",
    "SERVICE_A_ACCOUNTS": "A-{1..20}=200",
    "SERVICE_B_ACCOUNTS": "B-{1..20}=50",
    # A stall of a few seconds at RATE holds more sagas in flight than MAX_IN_FLIGHT's
    # default; the refusals counted here are the brokers' (503), not the cap's (429).
    "MAX_IN_FLIGHT": "1000",
}
TRANSFERS = 320
CLIENTS = 6
RATE = 16.0  # transfers a second, all clients together: the load lasts about 20 s


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("failover"), ENV, brokers=3)
    try:
        stack.kafka.start()
        yield stack
    finally:
        stack.close()


def access(stack: Stack) -> KafkaAccess:
    return load_settings(stack.worker_env()).kafka


async def _create(access: KafkaAccess, topics: dict[str, tuple[int, int]]) -> None:
    admin = AIOKafkaAdminClient(**access.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, p, rf) for n, (p, rf) in topics.items()])
    finally:
        await admin.close()


async def _delete(access: KafkaAccess, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**access.client_kwargs())
    await admin.start()
    try:
        await admin.delete_topics(names)
        for _ in range(100):  # bounded: until the metadata no longer lists them
            if not set(names) & set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"topics {names} still listed after deletion")
    finally:
        await admin.close()


async def _replicas(access: KafkaAccess) -> dict[str, int]:
    """Every topic's replication factor (the fewest replicas of any partition)."""
    admin = AIOKafkaAdminClient(**access.client_kwargs())
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if not n.startswith("__")]
        return {
            d["topic"]: min(len(p["replicas"]) for p in d["partitions"])
            for d in await admin.describe_topics(names)
        }
    finally:
        await admin.close()


async def _leaders(access: KafkaAccess, topic: str) -> Counter[int]:
    """How many partitions of ``topic`` each broker (node id) leads."""
    admin = AIOKafkaAdminClient(**access.client_kwargs())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return Counter(p["leader"] for p in described["partitions"] if p["leader"] >= 0)
    finally:
        await admin.close()


def exit_line(stack: Stack, role: str, timeout: float = 90.0) -> str:
    """Start ``role``'s worker and return the last line it printed before exiting."""
    worker = stack.start_worker(role)
    try:
        worker.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(
            f"{role} did not stop within {timeout}s: {worker.log_tail()}"
        ) from None
    log = worker.log_text()
    assert worker.returncode() not in (0, None), log
    assert "Traceback" not in log, log
    return log.strip().splitlines()[-1]


def test_a_topic_that_does_not_match_stops_the_worker_with_one_line(stack: Stack) -> None:
    asyncio.run(_create(access(stack), {"transfer-requests": (4, 1), "saga-timeouts": (2, 3)}))
    try:
        line = exit_line(stack, "orchestrator")
        print("\n" + line)
        assert line.startswith("saga_streams: topic 'transfer-requests' has 1 replica but "), line
        assert "TOPIC_REPLICATION_FACTOR=3" in line

        asyncio.run(_delete(access(stack), ["transfer-requests"]))
        line = exit_line(stack, "orchestrator")
        print(line)
        assert line.startswith("saga_streams: topic 'saga-timeouts' has 2 partitions but 4 "), line
    finally:
        asyncio.run(_delete(access(stack), ["transfer-requests", "saga-timeouts"]))
    del stack.workers["orchestrator"]


class Load:
    """``TRANSFERS`` transfers from ``CLIENTS`` threads at ``RATE`` a second, both workflows."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.accepted: list[str] = []
        self.refused: Counter[int] = Counter()  # HTTP status -> count (503 while brokers move)
        self.lock = threading.Lock()
        self.began = time.monotonic()

    def send(self, number: int) -> None:
        time.sleep(max(0.0, self.began + number / RATE - time.monotonic()))
        body = {
            "amount": 1 + number % 7,
            "workflow": "transfer-with-fee" if number % 3 == 0 else "transfer",
            "from_account": f"A-{1 + number % 20}",
            "to_account": f"B-{1 + number * 7 % 20}",
        }
        try:
            status, answer = http_json(
                "POST", self.stack.url("orchestrator", "/transfer"), body, timeout=30
            )
        except OSError:
            status, answer = 0, None
        with self.lock:
            if status == 202:
                self.accepted.append(answer["saga_id"])
            else:
                self.refused[status] += 1

    def run(self) -> threading.Thread:
        def all_of_it() -> None:
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(self.send, range(TRANSFERS)))

        thread = threading.Thread(target=all_of_it, daemon=True)
        thread.start()
        return thread


def longest_stall(sagas: list[dict[str, Any]], start: float, end: float) -> float:
    """The longest time within [start, end] (epoch s) in which no saga reached its end."""
    ends = sorted(epoch_seconds(s["updated_at"]) for s in sagas)
    moments = [start, *(t for t in ends if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(moments))


def test_brokers_killed_under_load_lose_no_saga_and_no_money(stack: Stack) -> None:
    stack.start()
    replicas = asyncio.run(_replicas(access(stack)))
    # Ours, the changelogs, and Faust's own (the assignor's leader topic): all three.
    assert {SAGA_CHANGELOG, "transfer-requests", "saga-orchestrator-__assignor-__leader"} <= set(
        replicas
    )
    assert set(replicas.values()) == {3}, replicas
    load = Load(stack)
    began = time.time()
    loader = load.run()

    time.sleep(5)
    leaders = asyncio.run(_leaders(access(stack), SAGA_CHANGELOG))
    first_id = leaders.most_common(1)[0][0]
    first = next(node for node in stack.kafka.nodes if node.node_id == first_id)
    first.kill()
    print(f"\nSIGKILL broker {first_id}, which led {leaders[first_id]} of 4 partitions")
    time.sleep(6)
    first.start()
    time.sleep(3)
    second = next(node for node in stack.kafka.nodes if node.node_id != first_id)
    second.kill()
    print(f"SIGKILL broker {second.node_id}")
    loader.join(timeout=120)
    assert not loader.is_alive(), "the load did not finish in time"
    second.start()
    ended_load = time.time()

    for name, worker in stack.workers.items():
        assert worker.is_running(), f"{name} died: {worker.log_tail()}"
    assert len(load.accepted) >= 300, (len(load.accepted), load.refused)
    sagas = stack.wait_terminal(load.accepted, timeout=180)
    report = stack.assert_invariants()
    stall = longest_stall(list(sagas.values()), began, ended_load)
    print(
        f"{len(load.accepted)} accepted, refused {dict(load.refused)}; "
        f"{dict(Counter(s['status'] for s in sagas.values()))}; "
        f"longest stall {stall:.1f}s; audit: {report.render()}"
    )
    assert {"COMPLETED"} <= {s["status"] for s in sagas.values()}


def test_with_two_brokers_down_a_transfer_is_answered_503_in_bounded_time(stack: Stack) -> None:
    if "orchestrator" not in stack.workers or not stack.workers["orchestrator"].is_running():
        stack.start()
    status, body = stack.transfer(3)
    assert status == 202, body
    before = body["saga_id"]
    stack.wait_terminal([before], timeout=60)

    down = stack.kafka.nodes[1:]
    for node in down:
        node.kill()
    answers: list[tuple[int, Any, float]] = []
    for _ in range(3):
        began = time.monotonic()
        status, body = stack.transfer(2, timeout=ACK_WAIT_S + 20)
        answers.append((status, body, time.monotonic() - began))
    print("\nwith two brokers down:", [(s, round(t, 1)) for s, _, t in answers])
    for status, body, took in answers:
        assert status == 503, body
        assert "Kafka did not acknowledge the transfer" in body["error"]
        assert f"GET /sagas/{body['saga_id']}" in body["error"]
        assert took <= ACK_WAIT_S + 5, took
    refused = [body["saga_id"] for _, body, _ in answers]

    for node in down:
        node.start()
    # Every worker is still there, or comes back as a supervisor would bring it.
    for name, worker in list(stack.workers.items()):
        if not worker.is_running():
            print(f"{name} exited while the brokers were away; started again")
            stack.start_worker(name).wait_ready()
    status, body = stack.transfer(4, timeout=30)
    assert status == 202, body
    stack.wait_terminal([body["saga_id"]], timeout=120)
    # Nothing half-done: every saga there is ends, the 503 ones included if their request
    # reached Kafka, and the books balance.
    wait_until_ended(stack.all_sagas, timeout=120, every_listed=True).raise_unless_ended()
    report = stack.assert_invariants()
    fates = []
    for saga_id in refused:
        status, saga = http_json("GET", stack.url("orchestrator", f"/sagas/{saga_id}"))
        assert status == 404 or saga["status"] in TERMINAL, saga
        fates.append(
            "never reached Kafka" if status == 404 else f"{saga['status']} {saga['error']}"
        )
    print("the 503 requests:", fates)
    print(report.render())
