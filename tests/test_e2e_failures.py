"""The seed's failure flows on a real broker, with failures forced by the environment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e import Stack

pytestmark = pytest.mark.kafka


def test_step1_failure_ends_failed_and_moves_nothing(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(SERVICE_A_FAILURE_RATE="1.0", SERVICE_B_FAILURE_RATE="0")
    stack.start()
    ids = [stack.transfer(amount)[1]["saga_id"] for amount in (50, 75.25, 1)]
    sagas = stack.wait_terminal(ids)
    for saga in sagas.values():
        assert saga["status"] == "FAILED"
        assert [s["outcome"] for s in saga["steps"]] == ["FAILED", "NOT_STARTED"]
        assert saga["steps"][0]["error"] == "Account verification failed"
    assert stack.balance_cents("service-a") == 1000_00
    assert stack.balance_cents("service-b") == 500_00
    log = stack.log("orchestrator")
    assert f"❌ Step 1 FAILED from service-a [saga {ids[0]}]" in log
    assert "   Error: Account verification failed" in log
    assert stack.topic_messages("service-b-add") == [], "no step 2 after a failed step 1"


def test_step2_failure_refunds_step1_and_rolls_back(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(SERVICE_A_FAILURE_RATE="0", SERVICE_B_FAILURE_RATE="1.0")
    stack.start()
    status, body = stack.transfer(50)
    assert status == 202
    saga_id = body["saga_id"]
    saga = stack.wait_terminal([saga_id])[saga_id]
    assert saga["status"] == "ROLLED_BACK"
    assert [(s["outcome"], s["error"]) for s in saga["steps"]] == [
        ("COMPENSATED", None),
        ("FAILED", "Account verification failed"),
    ]
    assert stack.balance_cents("service-a") == 1000_00
    assert stack.balance_cents("service-b") == 500_00

    orchestrator = stack.log("orchestrator")
    for line in (
        f"❌ Step 2 FAILED from service-b [saga {saga_id}]",
        f"⚠️  SAGA FAILED: {saga_id}",
        "   Failed at step 2",
        "   Starting ROLLBACK...",
        f"🔄 COMPENSATING STEP 1: service-a [saga {saga_id}]",
        f"❌ SAGA ROLLED BACK: {saga_id}",
        "   All changes reverted",
    ):
        assert line in orchestrator, line
    service_a = stack.log("service-a")
    assert f"🔄 COMPENSATION: Refund $50 [saga {saga_id}]" in service_a
    assert f"✅ Refunded $50 [saga {saga_id}]" in service_a
    assert "   Balance: $950 → $1000" in service_a

    refunds = stack.topic_messages("service-a-refund")
    assert [(r["saga_id"], r["undoes"], r["amount_cents"]) for r in refunds] == [
        (saga_id, f"{saga_id}-1", 50_00)
    ]


def test_deduct_beyond_the_balance_fails_with_insufficient_funds(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(SERVICE_A_FAILURE_RATE="0", SERVICE_B_FAILURE_RATE="0")
    stack.start()
    too_much = stack.transfer(1000.01)[1]["saga_id"]
    saga = stack.wait_terminal([too_much])[too_much]
    assert saga["status"] == "FAILED" and saga["steps"][0]["error"] == "INSUFFICIENT_FUNDS"
    everything = stack.transfer(1000)[1]["saga_id"]
    assert stack.wait_terminal([everything])[everything]["status"] == "COMPLETED"
    assert (stack.balance_cents("service-a"), stack.balance_cents("service-b")) == (0, 1500_00)
    one_more = stack.transfer(0.01)[1]["saga_id"]
    assert stack.wait_terminal([one_more])[one_more]["status"] == "FAILED"
    assert stack.balance_cents("service-a") == 0
