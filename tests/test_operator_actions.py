"""An operator cancels a saga stuck on a participant that was killed, on a real broker, then
tries the command line against the same stack. Run with ``pytest -s`` to see the history
and the balances."""

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

REASON = "service-b is down for maintenance"


def wait_for(stack: Stack, saga_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The saga once ``ready`` says so (polled at most 60 s, every 0.3 s; a 404 while
    the orchestrator's agent has not yet taken the request)."""
    saga: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    for _ in range(200):
        status, saga = http_json("GET", stack.url("orchestrator", f"/sagas/{saga_id}"))
        if (status == 200 and ready(saga)) or time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    assert "steps" in saga and ready(saga), saga
    return saga


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    url = ["--url", stack.url("orchestrator")]
    command = [sys.executable, "-m", "saga_streams", "saga", *args, *url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def events(saga: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(entry["event"], entry["step"]) for entry in saga["history"]]


def without_repeats(story: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    """The story with runs of one entry (resends) told once."""
    return [entry for n, entry in enumerate(story) if n == 0 or story[n - 1] != entry]


def assert_history_tells_the_cancel(saga: dict[str, Any]) -> None:
    story = events(saga)
    cancel = story.index(("operator_action", 2))
    assert story[:4] == [
        ("started", None),
        ("command_sent", 1),
        ("step_succeeded", 1),
        ("command_sent", 2),
    ]
    assert story[4:cancel] and set(story[4:cancel]) == {("resent", 2)}
    assert saga["history"][cancel]["detail"] == f"cancel by tester: {REASON}"
    assert without_repeats(story[cancel:]) == [
        ("operator_action", 2),
        ("rollback_started", 2),
        ("compensation_sent", 2),
        ("compensated", 2),
        ("compensation_sent", 1),
        ("compensated", 1),
        ("finished", None),
    ]
    assert saga["history"][-1]["detail"] == "ROLLED_BACK"
    times = [entry["at"] for entry in saga["history"]]
    assert times == sorted(times)


def assert_cli_answers(stack: Stack, saga_id: str) -> None:
    """The command line, against the same stack: the saga has ended, nothing to retry."""
    result = cli(stack, "retry", saga_id, "--reason", "again")
    assert result.returncode != 0
    error = f"saga {saga_id} already ended ROLLED_BACK: nothing to retry"
    assert result.stderr.strip() == f"saga_streams: 409: {error}"
    shown = cli(stack, "show", saga_id)
    assert shown.returncode == 0 and f"cancel by tester: {REASON}" in shown.stdout
    result = cli(stack, "cancel", "no-such-saga")
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "saga_streams: 404: no saga 'no-such-saga'",
    )


def test_cancel_rolls_back_a_saga_stuck_on_a_killed_participant(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(
        SERVICE_A_FAILURE_RATE="0",
        SERVICE_B_FAILURE_RATE="0",
        STEP_TIMEOUT="0.5",
        STEP_MAX_ATTEMPTS="100",  # never given up on here: only the operator ends it
        RETRY_MAX_DELAY="1",
    )
    stack.start()
    a_before, b_before = stack.balance_cents("service-a"), stack.balance_cents("service-b")
    stack.workers["service-b"].kill()

    status, body = stack.transfer(40)
    assert status == 202, body
    saga_id = body["saga_id"]
    stuck = wait_for(stack, saga_id, lambda s: s["steps"][1]["attempts"] >= 3)
    assert (stuck["status"], stuck["steps"][0]["outcome"]) == ("STARTED", "SUCCEEDED")
    assert stack.balance_cents("service-a") == a_before - 40_00

    cancel_url = stack.url("orchestrator", f"/sagas/{saga_id}/cancel")
    headers = {"X-Operator": "tester"}
    status, answer = http_json("POST", cancel_url, {"reason": REASON}, headers=headers)
    assert (status, answer["saga_id"]) == (202, saga_id), answer
    cancelled = wait_for(stack, saga_id, lambda s: s["status"] != "STARTED")
    assert (cancelled["status"], cancelled["cancelled_by"]) == ("COMPENSATING", "tester")
    # Cancelled already: the same request again, answered the same way.
    assert http_json("POST", cancel_url, {"reason": REASON}, headers=headers)[0] == 202

    stack.start_worker("service-b").wait_ready()
    ended = stack.wait_terminal([saga_id], timeout=60)[saga_id]
    saga = stack.saga(saga_id)
    a_after, b_after = stack.balance_cents("service-a"), stack.balance_cents("service-b")
    print(f"\nA: {a_before} -> {a_before - 40_00} (stuck) -> {a_after} cents")
    print(f"B: {b_before} -> {b_after} cents")
    print(cli(stack, "show", saga_id).stdout)

    assert ended["status"] == "ROLLED_BACK"
    assert [s["outcome"] for s in saga["steps"]] == ["COMPENSATED", "COMPENSATED"]
    assert saga["steps"][1]["error"] == f"CANCELLED by tester: {REASON}"
    assert (a_after, b_after) == (a_before, b_before)
    assert_history_tells_the_cancel(saga)
    stack.assert_invariants()

    # The history lives in the saga's table value: it survives the orchestrator's kill -9.
    stack.restart("orchestrator", kill=True)
    assert stack.saga(saga_id)["history"] == saga["history"]

    assert_cli_answers(stack, saga_id)
