"""Two workflows side by side on one set of workers, with the third service, end to end."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from saga_streams.http_client import http_json
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

FEE = "transfer-with-fee"


def test_workflows_are_listed_and_chosen_per_request(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(
        SERVICE_A_FAILURE_RATE="0", SERVICE_B_FAILURE_RATE="0", SERVICE_C_FAILURE_RATE="0"
    )
    stack.start()
    status, listing = http_json("GET", stack.url("orchestrator", "/workflows"))
    assert status == 200
    by_name = {w["name"]: w for w in listing["workflows"]}
    assert by_name["transfer"]["default"] is True and by_name[FEE]["default"] is False
    assert [
        (s["participant"], s["action_topic"], s["compensation_topic"])
        for s in by_name[FEE]["steps"]
    ] == [
        ("service-a", "service-a-deduct", "service-a-refund"),
        ("service-b", "service-b-add", "service-b-remove"),
        ("service-c", "service-c-collect", "service-c-return"),
    ]
    assert http_json("GET", stack.url("service-c", "/balance")) == (
        200,
        {"account": "C", "balance": 0},
    )
    status, body = stack.transfer(10, workflow="teleport")
    assert status == 400 and "unknown workflow" in body["error"]

    with_fee = stack.transfer(100, workflow=FEE)[1]["saga_id"]
    plain = stack.transfer(10)[1]["saga_id"]
    sagas = stack.wait_terminal([with_fee, plain])
    assert {s["status"] for s in sagas.values()} == {"COMPLETED"}
    assert (sagas[with_fee]["workflow"], sagas[plain]["workflow"]) == (FEE, "transfer")
    detail = stack.saga(with_fee)
    assert [(s["service"], s["action"], s["amount"]) for s in detail["steps"]] == [
        ("service-a", "deduct", 101),
        ("service-b", "add", 100),
        ("service-c", "collect", 1),
    ]
    balances = {r: stack.balance_cents(r) for r in ("service-a", "service-b", "service-c")}
    assert balances == {"service-a": 889_00, "service-b": 610_00, "service-c": 1_00}
    stack.assert_invariants()
    assert f"⏩ STEP 3/3: service-c.collect [saga {with_fee}]" in stack.log("orchestrator")
    assert "   Fee: $1 to Account C (Service C)" in stack.log("orchestrator")


def test_failure_at_step_3_undoes_step_2_then_step_1(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(
        SERVICE_A_FAILURE_RATE="0", SERVICE_B_FAILURE_RATE="0", SERVICE_C_FAILURE_RATE="1"
    )
    stack.start()
    saga_id = stack.transfer(50, workflow=FEE)[1]["saga_id"]
    saga = stack.wait_terminal([saga_id])[saga_id]
    assert saga["status"] == "ROLLED_BACK"
    assert [(s["outcome"], s["error"]) for s in saga["steps"]] == [
        ("COMPENSATED", None),
        ("COMPENSATED", None),
        ("FAILED", "Fee ledger unavailable"),
    ]
    assert [stack.balance_cents(r) for r in ("service-a", "service-b", "service-c")] == [
        1000_00,
        500_00,
        0,
    ]
    stack.assert_invariants()

    # The compensations on the topics, in the order they were produced: B's, then A's.
    def produced_at(topic: str) -> list[int]:
        out = stack.kcat("-t", topic, "-C", "-e", "-q", "-f", "%T %s\\n")
        return [int(line.split(" ", 1)[0]) for line in out.splitlines() if saga_id in line]

    [collect] = produced_at("service-c-collect")
    [remove] = produced_at("service-b-remove")
    [refund] = produced_at("service-a-refund")
    assert collect <= remove <= refund
    assert produced_at("service-c-return") == []  # the failed step itself is not undone

    log = stack.log("orchestrator")
    undo_b = log.index(f"🔄 COMPENSATING STEP 2: service-b [saga {saga_id}]")
    undo_a = log.index(f"🔄 COMPENSATING STEP 1: service-a [saga {saga_id}]")
    assert log.index(f"❌ Step 3 FAILED from service-c [saga {saga_id}]") < undo_b < undo_a
    assert re.search(r"Refunded \$50\.50 \[saga " + saga_id, stack.log("service-a"))
