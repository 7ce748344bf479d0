"""The seed's Tests 1, 2, 3 and 5 on a real broker, plus the HTTP contract and kcat.

Failure injection is off here so each outcome is known; the failure flows have their
own module. Service B runs through the plain ``faust -A ... worker`` form, the others
through ``python -m saga_streams worker``: both must work.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_streams.http_client import http_json
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("seed"),
        {"SERVICE_A_FAILURE_RATE": "0", "SERVICE_B_FAILURE_RATE": "0"},
    )
    try:
        stack.kafka.start()
        faust = str(Path(sys.executable).with_name("faust"))
        stack.start(["orchestrator", "service-a"])
        stack.start_worker(
            "service-b",
            command=[
                faust,
                "-A",
                "saga_streams.agents.service_b",
                "worker",
                "-l",
                "info",
                "--web-port",
                str(stack.ports["service-b"]),
            ],
        ).wait_ready()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def first_saga(stack: Stack) -> str:
    """Test 1 of the seed: one successful transfer of $100."""
    status, body = stack.transfer(100)
    assert status == 202, body
    assert set(body) == {"saga_id", "amount", "status", "message"}
    assert (body["amount"], body["status"], body["message"]) == (
        100,
        "STARTED",
        "Transfer saga initiated",
    )
    saga_id: str = body["saga_id"]
    assert stack.wait_terminal([saga_id])[saga_id]["status"] == "COMPLETED"
    return saga_id


def test_seed_test1_and_3_successful_transfer_moves_both_balances(
    stack: Stack, first_saga: str
) -> None:
    assert http_json("GET", stack.url("service-a", "/balance")) == (
        200,
        {"account": "A", "balance": 900},
    )
    assert http_json("GET", stack.url("service-b", "/balance")) == (
        200,
        {"account": "B", "balance": 600},
    )
    saga = stack.saga(first_saga)
    assert [(s["service"], s["action"], s["outcome"], s["error"]) for s in saga["steps"]] == [
        ("service-a", "deduct", "SUCCEEDED", None),
        ("service-b", "add", "SUCCEEDED", None),
    ]
    assert ISO_MS.match(saga["created_at"]) and ISO_MS.match(saga["updated_at"])
    assert saga["updated_at"] >= saga["created_at"]


def test_seed_test2_logs_speak_the_seeds_words(stack: Stack, first_saga: str) -> None:
    orchestrator = stack.log("orchestrator")
    for line in (
        f"🚀 STARTING SAGA: {first_saga}",
        "   Transfer: $100",
        "   From: Account A (Service A)",
        "   To: Account B (Service B)",
        "   Steps: 2",
        f"⏩ STEP 1/2: service-a.deduct [saga {first_saga}]",
        "   Sending command to service-a...",
        f"✅ Step 1 SUCCESS from service-a [saga {first_saga}]",
        f"⏩ STEP 2/2: service-b.add [saga {first_saga}]",
        f"✅ Step 2 SUCCESS from service-b [saga {first_saga}]",
        f"✅ SAGA COMPLETED: {first_saga}",
        "   All steps successful!",
    ):
        assert line in orchestrator, line
    service_a, service_b = stack.log("service-a"), stack.log("service-b")
    assert f"📨 RECEIVED: Deduct $100 [saga {first_saga}]" in service_a
    assert "✅ SUCCESS: Deducted $100" in service_a
    assert "   Balance: $1000 → $900" in service_a
    assert f"📨 RECEIVED: Add $100 [saga {first_saga}]" in service_b
    assert "   Balance: $500 → $600" in service_b


def test_dimes_balance_to_the_cent(stack: Stack, first_saga: str) -> None:
    before_a, before_b = stack.balance_cents("service-a"), stack.balance_cents("service-b")
    ids = [stack.transfer(amount)[1]["saga_id"] for amount in (0.1, 0.2)]
    sagas = stack.wait_terminal(ids)
    assert {s["status"] for s in sagas.values()} == {"COMPLETED"}
    assert stack.balance_cents("service-a") == before_a - 30
    assert stack.balance_cents("service-b") == before_b + 30
    assert stack.saga(ids[0])["amount"] == 0.1


BAD_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b"{}"),
    ("application/json", b'{"amount": "100"}'),
    ("application/json", b'{"amount": true}'),
    ("application/json", b'{"amount": 0}'),
    ("application/json", b'{"amount": -100}'),
    ("application/json", b'{"amount": NaN}'),
    ("application/json", b'{"amount": 1.005}'),
    ("application/json", b'{"amount": 1e12}'),
    ("application/json", b'{"amount": 100'),
    ("application/json", b"not json"),
    ("text/plain", b'{"amount": 100}'),
    ("application/x-www-form-urlencoded", b"amount=100"),
]


def test_bad_input_is_400_and_publishes_nothing(stack: Stack, first_saga: str) -> None:
    requests_before = len(stack.topic_messages("transfer-requests"))
    sagas_before = len(stack.all_sagas())
    for content_type, body in BAD_BODIES:
        status, answer = http_json(
            "POST", stack.url("orchestrator", "/transfer"), raw=body, content_type=content_type
        )
        assert status == 400, (body, answer)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    assert len(stack.topic_messages("transfer-requests")) == requests_before
    assert len(stack.all_sagas()) == sagas_before


def test_seed_test5_sagas_list_filter_pages_and_404(stack: Stack, first_saga: str) -> None:
    ids = [stack.transfer(1)[1]["saga_id"] for _ in range(3)]
    stack.wait_terminal(ids)
    status, body = http_json("GET", stack.url("orchestrator", "/sagas"))
    assert status == 200 and body["count"] == len(body["sagas"]) and body["next"] is None
    listed = [s["saga_id"] for s in body["sagas"]]
    assert first_saga in listed and set(ids) <= set(listed)
    created = [s["created_at"] for s in body["sagas"]]
    assert created == sorted(created, reverse=True), "newest first"

    paged = []
    path: str | None = "/sagas?limit=2"
    while path:
        status, page = http_json("GET", stack.url("orchestrator", path))
        assert status == 200 and len(page["sagas"]) <= 2 and page["count"] == body["count"]
        paged += [s["saga_id"] for s in page["sagas"]]
        path = page["next"]
    assert paged == listed

    status, body = http_json("GET", stack.url("orchestrator", "/sagas?status=COMPLETED"))
    assert status == 200 and {s["status"] for s in body["sagas"]} == {"COMPLETED"}
    assert http_json("GET", stack.url("orchestrator", "/sagas?status=DONE"))[0] == 400
    status, body = http_json("GET", stack.url("orchestrator", "/sagas/no-such-saga"))
    assert status == 404 and "error" in body


def test_kcat_reads_json_from_every_seed_topic(stack: Stack, first_saga: str) -> None:
    deducts = stack.topic_messages("service-a-deduct")
    adds = stack.topic_messages("service-b-add")
    replies = stack.topic_messages("orchestrator-response")
    for messages in (deducts, adds):
        mine = [m for m in messages if m["saga_id"] == first_saga]
        assert len(mine) == 1 and mine[0]["command_id"] and mine[0]["amount_cents"] == 100_00
    assert {(r["service"], r["status"]) for r in replies if r["saga_id"] == first_saga} == {
        ("service-a", "SUCCESS"),
        ("service-b", "SUCCESS"),
    }
    all_commands = [m["command_id"] for m in deducts + adds]
    assert len(all_commands) == len(set(all_commands)), "command ids are unique"
    listing = stack.kcat("-L")
    for topic in (
        "service-a-deduct",
        "service-a-refund",
        "service-b-add",
        "service-b-remove",
        "orchestrator-response",
    ):
        assert f'topic "{topic}"' in listing, topic


def test_health_says_ready_on_every_role(stack: Stack) -> None:
    for role in stack.workers:
        status, body = http_json("GET", stack.url(role, "/health"))
        assert status == 200 and body["ready"] is True and body["role"] == role
