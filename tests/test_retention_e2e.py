"""Ended sagas expire on Kafka: removed from the saga table with a changelog tombstone,
gone from the API, their totals settled in ``GET /retention``, and the audit still
accounts for every cent.

Short settings make the effective retention 18.5 s: SAGA_RETENTION=1 is shorter than
the ledger window of the fee transfer's 3 steps (3 x (0.5 + 1 + 1) s + 1 s + the 10 s
arrival margin), which wins.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from saga_streams.audit import _effects
from saga_streams.config import load_settings
from saga_streams.http_client import http_json
from saga_streams.money import cents
from saga_streams.partitions import partition_for
from saga_streams.saga.state import epoch_seconds
from saga_streams.tables.local import LAST_SEEN
from saga_streams.workflows import WORKFLOWS
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

PARTITIONS = 4
RETENTION_S = 18.5
TOMBSTONE_S = 600
SETTINGS = {
    "SAGA_RETENTION": "1",
    "TOMBSTONE_RETENTION": str(TOMBSTONE_S),
    "STEP_TIMEOUT": "0.5",
    "RETRY_MAX_DELAY": "1",
    "LEDGER_GRACE": "0",  # no outage here: the window is the retry policy's alone
    "TOPIC_PARTITIONS": str(PARTITIONS),
    # Some transfers fail at B and are rolled back: every terminal status but FAILED's
    # refusals is likely; the counts are compared with what each saga ended as.
    "SERVICE_A_FAILURE_RATE": "0",
    "SERVICE_B_FAILURE_RATE": "0.3",
    "SERVICE_C_FAILURE_RATE": "0",
}


def get(stack: Stack, path: str) -> tuple[int, Any]:
    return http_json("GET", stack.url("orchestrator", path))


def run_transfers(stack: Stack) -> dict[str, dict[str, Any]]:
    saga_ids = []
    for n in range(10):
        workflow = "transfer-with-fee" if n % 3 == 0 else None
        status, body = stack.transfer(10 + n, workflow=workflow)
        assert status == 202, body
        saga_ids.append(body["saga_id"])
    return stack.wait_terminal(saga_ids, timeout=60)


def poke_every_partition(stack: Stack) -> None:
    """An event on each partition of the request topic, after which the orchestrator
    sweeps each partition. It skips these (not a message)."""
    for partition in range(PARTITIONS):
        stack.kcat_produce("transfer-requests", ["poke"], "-p", str(partition))


def wait_expired(stack: Stack, saga_ids: list[str], timeout: float) -> dict[str, Any]:
    """Each saga's GET /sagas/{id} answer once all are 404 (or the last ones seen).
    Nothing is sent meanwhile: the orchestrator's timer wakes the quiet partitions."""
    deadline = time.monotonic() + timeout
    answers: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answers = {saga_id: get(stack, f"/sagas/{saga_id}") for saga_id in saga_ids}
        if all(status == 404 for status, _ in answers.values()):
            break
        time.sleep(1.0)
    assert all(status == 404 for status, _ in answers.values()), answers
    return answers


def assert_tombstones(stack: Stack, saga_ids: list[str]) -> None:
    """The changelog as kcat shows it: ``%S`` is -1 for a null value, a tombstone. (The
    tables' changelogs carry JSON keys: ``"<saga id>"``, quoted.)"""
    out = stack.kcat("-t", "saga-orchestrator-sagas-changelog", "-C", "-e", "-f", "%k %S\n")
    sizes: dict[str, list[int]] = {}
    for line in out.splitlines():
        key, size = line.rsplit(" ", 1)
        sizes.setdefault(json.loads(key), []).append(int(size))
    for saga_id in saga_ids:
        assert saga_id in sizes, f"{saga_id} never in the changelog"
        assert sizes[saga_id][-1] == -1, (saga_id, sizes[saga_id])
        assert all(size > 0 for size in sizes[saga_id][:-1]), (saga_id, sizes[saga_id])


def assert_settled_rows_in_their_partitions(stack: Stack) -> None:
    out = stack.kcat("-t", "saga-orchestrator-settled-changelog", "-C", "-e", "-f", "%p %k\n")
    rows = [line.split(" ", 1) for line in out.splitlines() if line]
    assert rows, "nothing settled in the changelog"
    for partition, key in rows:
        assert partition_for(json.loads(key), PARTITIONS) == int(partition), (partition, key)


def test_ended_sagas_expire_and_the_money_stays_accounted(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(**SETTINGS)
    stack.start()
    ended = run_transfers(stack)
    saga_ids = sorted(ended)
    details = {saga_id: stack.saga(saga_id) for saga_id in saga_ids}
    last_end = max(epoch_seconds(d["updated_at"]) for d in details.values())
    stack.assert_invariants()

    # Not before the retention: a poke now removes nothing.
    poke_every_partition(stack)
    time.sleep(1.0)
    assert all(get(stack, f"/sagas/{saga_id}")[0] == 200 for saga_id in saga_ids)

    # Then, with no traffic at all, the timer wakes each quiet partition to be swept.
    time.sleep(max(0.0, last_end + RETENTION_S - time.time()))
    answers = wait_expired(stack, saga_ids, timeout=30)
    for _, body in answers.values():
        assert "ended more than 18.5 seconds ago and expired (SAGA_RETENTION)" in body["error"]
    listed = {saga["saga_id"] for saga in stack.all_sagas()}
    assert listed.isdisjoint(saga_ids)
    assert_tombstones(stack, saga_ids)
    assert_settled_rows_in_their_partitions(stack)

    status, retention = get(stack, "/retention")
    assert status == 200, retention
    assert retention["retention_s"] == RETENTION_S
    statuses = Counter(d["status"] for d in details.values())
    assert {s: n for s, n in retention["expired"].items() if n} == dict(statuses)
    effects: Counter[str] = Counter()
    for detail in details.values():
        if detail["status"] == "COMPLETED":
            effects.update(_effects(detail, WORKFLOWS))
    settled = {a: cents(amount) for a, amount in retention["effects"].items() if amount}
    assert settled == {account: delta for account, delta in effects.items() if delta}

    report = stack.assert_invariants()
    assert report.expired == statuses, report.render()

    # Killed and started again, the orchestrator recovers both tables from their
    # changelogs: the tombstones keep the sagas gone, the totals are the same.
    stack.restart("orchestrator", kill=True)
    assert get(stack, "/retention") == (200, retention)
    assert all(get(stack, f"/sagas/{saga_id}")[0] == 404 for saga_id in saga_ids)
    assert_away_too_long_the_tables_are_recovered_whole(stack, retention, saga_ids)
    # A new transfer runs beside the settled totals, and the books still balance.
    status, body = stack.transfer(5)
    assert status == 202, body
    stack.wait_terminal([body["saga_id"]], timeout=30)
    stack.assert_invariants()


def assert_away_too_long_the_tables_are_recovered_whole(
    stack: Stack, retention: Any, saga_ids: list[str]
) -> None:
    """An orchestrator that last ran more than half the tombstone retention ago (its note
    aged by hand) discards its local tables at start and recovers them from the
    changelogs; started with a new TOMBSTONE_RETENTION, it sets the changelogs' to it."""
    changelog = "saga-orchestrator-sagas-changelog"
    assert asyncio.run(tombstone_retention_ms(stack, changelog)) == TOMBSTONE_S * 1000
    stack.workers["orchestrator"].kill()
    (note,) = (stack.root / "data").glob(f"orchestrator-*/**/{LAST_SEEN}")
    # Last ran a minute longer ago than half the retention it starts with.
    aged = time.time() - 900 / 2 - 60
    os.utime(note, (aged, aged))
    stack.start_worker("orchestrator", {"TOMBSTONE_RETENTION": "900"}).wait_ready()
    assert "Discarded the local tables" in stack.log("orchestrator")
    assert get(stack, "/retention") == (200, retention)
    assert all(get(stack, f"/sagas/{saga_id}")[0] == 404 for saga_id in saga_ids)
    assert asyncio.run(tombstone_retention_ms(stack, changelog)) == 900_000


async def tombstone_retention_ms(stack: Stack, topic: str) -> int:
    """The topic's ``delete.retention.ms`` as the broker applies it."""
    admin = AIOKafkaAdminClient(**load_settings(stack.worker_env()).kafka.client_kwargs())
    await admin.start()
    try:
        wanted = ConfigResource(ConfigResourceType.TOPIC, topic, {"delete.retention.ms": None})
        (response,) = await admin.describe_configs([wanted])
        (resource,) = response.to_object()["resources"]
        (entry,) = resource["config_entries"]
        return int(entry["config_value"])
    finally:
        await admin.close()
