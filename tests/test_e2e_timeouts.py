"""Timeouts, retries and stuck-saga visibility with a participant really gone, and the
audit command run as an operator would."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from saga_streams.http_client import http_json
from tests.e2e import Stack

pytestmark = pytest.mark.kafka


def audit(stack: Stack, stuck_after: float) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "saga_streams", "audit", "--stuck-after", str(stuck_after)]
    for role in stack.ports:
        args += [f"--{role}", stack.url(role)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def wait_compensating(stack: Stack, saga_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The saga once it is COMPENSATING (polled at most ``timeout`` s, every 0.3 s)."""
    deadline = time.monotonic() + timeout
    saga: dict[str, Any] = {}
    for _ in range(int(timeout / 0.3) + 1):
        _, saga = http_json("GET", stack.url("orchestrator", f"/sagas/{saga_id}"))
        if saga.get("status") == "COMPENSATING" or time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    assert saga.get("status") == "COMPENSATING", saga
    return saga


def assert_stuck_saga_is_visible(stack: Stack, saga_id: str) -> None:
    """An operator sees it without grepping logs..."""
    stuck_path = "/sagas?status=COMPENSATING&older_than=1"
    status, stuck = http_json("GET", stack.url("orchestrator", stuck_path))
    assert status == 200 and [s["saga_id"] for s in stuck["sagas"]] == [saga_id]
    status, young = http_json("GET", stack.url("orchestrator", "/sagas?older_than=3600"))
    assert status == 200 and young["count"] == 0
    assert http_json("GET", stack.url("orchestrator", "/sagas?older_than=soon"))[0] == 400
    # ...and the audit, which cannot read B, says so (exit 2).
    assert audit(stack, stuck_after=1).returncode == 2


def assert_b_back_rolls_it_back(stack: Stack, saga_id: str) -> None:
    stack.start_worker("service-b").wait_ready()
    ended = stack.wait_terminal([saga_id], timeout=30)[saga_id]
    assert ended["status"] == "ROLLED_BACK"
    assert [s["outcome"] for s in ended["steps"]] == ["COMPENSATED", "COMPENSATED"]
    stack.assert_invariants()
    assert "⏰ Step 2 TIMED OUT: no reply from service-b after 3 attempts" in stack.log(
        "orchestrator"
    )
    # B, back, finds both the three adds and the removes waiting; whichever it reads
    # first, the add is undone or voided, and A is refunded.
    service_b = stack.log("service-b")
    assert f"🔄 COMPENSATION: Remove $40 [saga {saga_id}]" in service_b
    assert (
        "Nothing to remove: the action never ran here" in service_b or "✅ Removed $40" in service_b
    )


def test_silent_participant_is_retried_then_compensated_and_stays_visible(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(
        SERVICE_A_FAILURE_RATE="0",
        SERVICE_B_FAILURE_RATE="0",
        STEP_TIMEOUT="0.5",
        STEP_MAX_ATTEMPTS="3",
        RETRY_MAX_DELAY="2",
    )
    stack.start()
    stack.workers["service-b"].stop()  # B is gone: step 2 never gets a reply

    status, body = stack.transfer(40)
    assert status == 202
    saga_id = body["saga_id"]
    saga = wait_compensating(stack, saga_id)
    # Step 2 was sent 3 times (0.5 s, 1 s, 2 s), then given up on; its own compensation
    # goes out again and again while B stays away: visible, never dropped.
    step1, step2 = saga["steps"]
    assert (step1["outcome"], step1["attempts"]) == ("SUCCEEDED", 1)
    assert (step2["outcome"], step2["attempts"]) == ("COMPENSATING", 3)
    assert step2["error"] == "TIMED_OUT: no reply after 3 attempts"
    assert saga["next_retry_at"] is not None
    assert saga["retry_policy"] == {"step_timeout_s": 0.5, "max_attempts": 3, "max_delay_s": 2.0}
    time.sleep(2.5)
    assert stack.saga(saga_id)["steps"][1]["compensation_attempts"] >= 2

    assert_stuck_saga_is_visible(stack, saga_id)
    assert_b_back_rolls_it_back(stack, saga_id)

    result = audit(stack, stuck_after=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every invariant holds" in result.stdout
