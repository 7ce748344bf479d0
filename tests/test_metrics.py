"""``GET /metrics`` on a real broker: known transfers in, the counts every worker exports."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from saga_streams.app import consumed_topics
from saga_streams.roles import ROLES
from saga_streams.workflows import WORKFLOWS
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

PARTITIONS = 2

#: name -> [(labels, value)] of one scrape.
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(stack: Stack, worker: str) -> Samples:
    with urllib.request.urlopen(stack.url(worker, "/metrics"), timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` with exactly ``labels``."""
    found = [v for have, v in samples.get(name, []) if have == labels]
    assert len(found) == 1, f"{name}{labels}: {found} in {samples.get(name)}"
    return found[0]


def lags(samples: Samples) -> dict[tuple[str, str], float]:
    return {(s["topic"], s["partition"]): v for s, v in samples.get("saga_consumer_lag", [])}


def test_metrics_count_known_transfers_on_every_worker(
    stack_factory: Callable[..., Stack],
) -> None:
    # No injected failures and a long step timeout: every count below is exact, with no
    # resend to blur them.
    stack = stack_factory(
        SERVICE_A_FAILURE_RATE="0",
        SERVICE_B_FAILURE_RATE="0",
        SERVICE_C_FAILURE_RATE="0",
        STEP_TIMEOUT="60",
        TOPIC_PARTITIONS=str(PARTITIONS),
    )
    stack.start()
    # A holds $1000: the $5000 transfer fails at its first step.
    asked = [(10, "transfer"), (20, "transfer"), (5000, "transfer")]
    asked += [(10, "transfer-with-fee"), (30, "transfer-with-fee")]
    ids = []
    for amount, workflow in asked:
        status, body = stack.transfer(amount, workflow=workflow)
        assert status == 202, body
        ids.append(body["saga_id"])
    ended = stack.wait_terminal(ids)
    statuses = sorted(saga["status"] for saga in ended.values())
    assert statuses == ["COMPLETED"] * 4 + ["FAILED"]

    assert_orchestrator_counted(scrape(stack, "orchestrator"))
    assert_participants_counted(stack)
    for role in ROLES:
        samples = scrape(stack, role)
        # Faust's own sensor, on the same page.
        assert value(samples, "faust_messages_received_total") > 0, role
        assert "faust_table_operations_total" in samples, role
        assert "faust_consumer_commit_latency_count" in samples, role
    assert_lag_drains(stack)


def assert_orchestrator_counted(orchestrator: Samples) -> None:
    """3 transfers and 2 with a fee started; 4 completed, 1 failed; none left or resent."""
    assert value(orchestrator, "saga_started_total", workflow="transfer") == 3
    assert value(orchestrator, "saga_started_total", workflow="transfer-with-fee") == 2
    finished = {
        (labels["workflow"], labels["status"]): v
        for labels, v in orchestrator["saga_finished_total"]
        if v
    }
    assert finished == {
        ("transfer", "COMPLETED"): 2,
        ("transfer", "FAILED"): 1,
        ("transfer-with-fee", "COMPLETED"): 2,
    }
    assert value(orchestrator, "saga_duration_seconds_count", workflow="transfer") == 3
    assert value(orchestrator, "saga_duration_seconds_count", workflow="transfer-with-fee") == 2
    for workflow in ("transfer", "transfer-with-fee"):
        assert value(orchestrator, "saga_in_flight", workflow=workflow) == 0
        assert value(orchestrator, "saga_stuck", workflow=workflow) == 0
    assert not orchestrator.get("saga_step_resends_total")
    assert not orchestrator.get("saga_step_timeouts_total")


def assert_participants_counted(stack: Stack) -> None:
    """Each participant's commands by action and outcome: 4 deducts and 1 refused for
    funds, 4 adds, 2 fee collections."""
    expected = {
        "service-a": {("deduct", "SUCCESS"): 4, ("deduct", "FAILED"): 1},
        "service-b": {("add", "SUCCESS"): 4},
        "service-c": {("collect", "SUCCESS"): 2},
    }
    for role, counts in expected.items():
        samples = scrape(stack, role)
        got = {
            (labels["action"], labels["outcome"]): v
            for labels, v in samples["saga_participant_commands_total"]
            if labels["participant"] == role
        }
        assert got == counts, role


def assert_lag_drains(stack: Stack, timeout: float = 60.0) -> None:
    """Every worker reports the lag of each of its topics' partitions; with nothing more
    produced, it reaches 0 once the last offsets are committed (Faust commits every few
    seconds)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[tuple[str, str], float]] = {}
    for _ in range(120):
        seen = {role: lags(scrape(stack, role)) for role in ROLES}
        if all(seen.values()) and not any(v for lag in seen.values() for v in lag.values()):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for role, topics in consumed_topics(WORKFLOWS).items():
        expected = {(topic, str(p)) for topic in topics for p in range(PARTITIONS)}
        assert set(seen[role]) == expected, (role, seen[role])
        assert all(v == 0 for v in seen[role].values()), (role, seen[role])
