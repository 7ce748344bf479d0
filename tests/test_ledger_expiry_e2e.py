"""The ledger window against Kafka: a participant's archive shrinks, and a command
redelivered after its saga's window is refused, moving nothing.

Short retry settings make the window short: STEP_TIMEOUT=0.5, RETRY_MAX_DELAY=1 and three
attempts give an action window of 2.5 s, so an action older than 12.5 s with no entry is
refused and an entry untouched for K = 3 x 2.5 + 1 + 10 = 18.5 s of stream time is
forgotten (and swept once 20 s older still, see ``SWEPT_AFTER_S``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from saga_streams.accounts import RECENT_ACTIONS
from saga_streams.config import load_settings
from saga_streams.partitions import partition_for
from saga_streams.saga.policy import ARRIVAL_MARGIN_MS
from saga_streams.workflows import WORKFLOWS
from tests.e2e import Stack
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.kafka

SETTINGS = {
    "SERVICE_A_FAILURE_RATE": "0",
    "SERVICE_B_FAILURE_RATE": "0",
    "STEP_TIMEOUT": "0.5",
    "STEP_MAX_ATTEMPTS": "3",
    "RETRY_MAX_DELAY": "1",
    # No outage here, so no grace for one: the window is the retry policy's alone.
    "LEDGER_GRACE": "0",
}
POLICY = load_settings(SETTINGS).retry_policy
K_S = POLICY.ledger_retention_ms(max(len(w.steps) for w in WORKFLOWS.values())) / 1000
#: How long after its last touch the sweep removes an entry: K and a margin more, with
#: the stream time of the idle refund topic taken as the clock less another margin.
SWEPT_AFTER_S = K_S + 2 * ARRIVAL_MARGIN_MS / 1000
CHANGELOG = "saga-service-a-accounts-changelog"
T = TypeVar("T")


def run_transfers(stack: Stack, count: int) -> list[str]:
    """``count`` transfers of $0.01 from A to B, one after another; their saga ids once
    all have ended COMPLETED."""
    saga_ids = []
    for _ in range(count):
        status, body = stack.transfer(0.01)
        assert status == 202, body
        saga_ids.append(body["saga_id"])
    ended = stack.wait_terminal(saga_ids, timeout=60)
    assert {s["status"] for s in ended.values()} == {"COMPLETED"}
    return saga_ids


def processed_deduct(stack: Stack, saga_id: str) -> tuple[str, dict[str, object]]:
    """The deduct the orchestrator sent A for ``saga_id``, as kcat reads it: key, value."""
    out = stack.kcat("-t", "service-a-deduct", "-C", "-e", "-q", "-f", "%k\t%s\n")
    for line in out.splitlines():
        key, _, value = line.partition("\t")
        command = json.loads(value)
        if command["saga_id"] == saga_id:
            return key, command
    raise AssertionError(f"no deduct for {saga_id} on service-a-deduct")


def archive_tombstones(stack: Stack) -> list[str]:
    """Archive keys (``A/<action>``) the account table's changelog holds a null for:
    kcat's ``%S`` is the value's size, -1 for a null."""
    out = stack.kcat("-t", CHANGELOG, "-C", "-e", "-q", "-f", "%k %S\n")
    pairs = [line.rsplit(" ", 1) for line in out.splitlines() if line.strip()]
    return [json.loads(key) for key, size in pairs if size == "-1" and "/" in key]


def wait_for(what: str, check: Callable[[], T], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    found = check()
    while not found and time.monotonic() < deadline:
        time.sleep(0.5)
        found = check()
    assert found, f"{what}: not within {timeout}s"
    return found


def test_archive_expires_and_a_late_redelivery_is_refused(
    stack_factory: Callable[..., Stack],
) -> None:
    assert (K_S, POLICY.action_window_ms()) == (18.5, 2500)
    stack = stack_factory(**SETTINGS)
    stack.start()

    # Enough transfers that A's earliest entries leave its 64 recent for the archive.
    first = run_transfers(stack, RECENT_ACTIONS + 16)
    key, deduct = processed_deduct(stack, first[0])
    balances = {role: stack.balance_cents(role) for role in ("service-a", "service-b")}

    # Past the sweep's window, a few transfers move A's partition's stream time on; the
    # sweeps after their batches remove the expired archive keys.
    time.sleep(SWEPT_AFTER_S + 1)
    run_transfers(stack, 3)
    swept = wait_for("tombstones for A's archive", lambda: archive_tombstones(stack), 30)
    assert f"A/{first[0]}-1" in swept
    assert f"A/{first[-1]}-1" not in swept  # among A's 64 recent: in the account value
    assert "🧹 Removed" in stack.log("service-a")
    samples = scrape(stack, "service-a")
    removed = value(samples, "saga_ledger_archive_removed_total", participant="service-a")
    assert removed >= len(swept)

    # The first saga's deduct, produced again as an operator re-sending by hand would:
    # refused for its age, answered FAILED, no balance moved.
    partition = partition_for("A", load_settings(stack.worker_env()).partitions)
    stack.kcat_produce(
        "service-a-deduct", [f"{key}\t{json.dumps(deduct)}"], "-K", "\t", "-p", str(partition)
    )

    def refusal() -> list[dict[str, object]]:
        replies = stack.topic_messages("orchestrator-response")
        return [r for r in replies if r["command_id"] == deduct["command_id"]][1:]

    wait_for("the reply to the redelivered deduct", refusal, 30)
    (reply,) = refusal()  # one reply, and only one, besides the original
    assert reply["status"] == "FAILED", reply
    assert str(reply["error"]).startswith("EXPIRED: issued "), reply
    after = {role: stack.balance_cents(role) for role in ("service-a", "service-b")}
    assert after == {
        "service-a": balances["service-a"] - 3,
        "service-b": balances["service-b"] + 3,
    }
    assert stack.saga(first[0])["status"] == "COMPLETED"
    stack.assert_invariants()
