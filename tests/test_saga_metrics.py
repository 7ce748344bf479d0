"""The metrics module in isolation: engine events and executions in, Prometheus samples out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from saga_streams.accounts import Execution
from saga_streams.messages import Command, Reply, TimeoutElapsed
from saga_streams.metrics import (
    ConsumerLag,
    ParticipantMetrics,
    SagaMetrics,
    outcome_of,
    stuck_after_ms,
)
from saga_streams.saga.engine import Decision
from saga_streams.saga.events import (
    CompensationDispatched,
    MessageIgnored,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaRefused,
    SagaRolledBack,
    SagaStarted,
    StepDispatched,
    StepTimedOut,
)
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import Saga, StepState
from saga_streams.tables.deadlines import DeadlineIndex
from saga_streams.workflows import WORKFLOWS

NOW = 1_000_000


def saga(saga_id: str = "s1", workflow: str = "transfer", **changes: Any) -> Saga:
    base = Saga(
        saga_id=saga_id,
        workflow=workflow,
        amount_cents=100,
        from_account="A",
        to_account="B",
        status="STARTED",
        steps=(StepState(), StepState()),
        created_at=NOW - 1_500,
        updated_at=NOW,
        deadline=NOW + 5_000,
    )
    return replace(base, **changes)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def index() -> DeadlineIndex:
    return DeadlineIndex()


@pytest.fixture
def metrics(registry: CollectorRegistry, index: DeadlineIndex) -> SagaMetrics:
    return SagaMetrics(registry, WORKFLOWS, index.in_flight, 60_000, lambda: NOW)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_started_then_completed_saga_counts_once_each_with_its_duration(
    registry: CollectorRegistry, metrics: SagaMetrics
) -> None:
    started = SagaStarted("s1", "transfer", 100, 2, ("A", "B"))
    metrics.observe(Decision(saga(), events=(started,)), object(), NOW - 1_500)
    done = saga(status="COMPLETED", deadline=None)
    metrics.observe(Decision(done, events=(SagaCompleted("s1", 100),)), object(), NOW)

    assert value(registry, "saga_started_total", workflow="transfer") == 1
    assert value(registry, "saga_started_total", workflow="transfer-with-fee") == 0
    assert value(registry, "saga_finished_total", workflow="transfer", status="COMPLETED") == 1
    assert value(registry, "saga_finished_total", workflow="transfer", status="FAILED") == 0
    assert value(registry, "saga_duration_seconds_count", workflow="transfer") == 1
    assert value(registry, "saga_duration_seconds_sum", workflow="transfer") == 1.5
    assert value(registry, "saga_duration_seconds_bucket", workflow="transfer", le="2.5") == 1
    assert value(registry, "saga_duration_seconds_bucket", workflow="transfer", le="1.0") == 0


def test_every_terminal_event_counts_under_its_status(
    registry: CollectorRegistry, metrics: SagaMetrics
) -> None:
    ends: list[SagaEvent] = [
        SagaRolledBack("s1"),
        SagaFailed("s2", 1, "INSUFFICIENT_FUNDS", compensated=False),
        SagaRefused("s3", "unknown account"),
    ]
    for end in ends:
        metrics.observe(Decision(saga(end.saga_id, "transfer-with-fee"), events=(end,)), None, NOW)

    fee = "transfer-with-fee"
    assert value(registry, "saga_finished_total", workflow=fee, status="ROLLED_BACK") == 1
    assert value(registry, "saga_finished_total", workflow=fee, status="FAILED") == 2
    # A refused request is a saga too: stored FAILED, so started as well as finished.
    assert value(registry, "saga_started_total", workflow=fee) == 1


def test_timeouts_resends_and_compensation_retries_count_by_step(
    registry: CollectorRegistry, metrics: SagaMetrics
) -> None:
    events = (
        StepDispatched("s1", 1, 2, "service-a.deduct", "t", 1, 3, resent=False),
        StepDispatched("s1", 1, 2, "service-a.deduct", "t", 2, 3, resent=True),
        StepTimedOut("s1", 2, 2, "service-b.add", 3),
        CompensationDispatched("s1", 1, "service-a", 1, resent=False),
        CompensationDispatched("s1", 1, "service-a", 2, resent=True),
    )
    metrics.observe(Decision(saga(), events=events), TimeoutElapsed("s1", NOW), NOW)

    assert (
        value(registry, "saga_step_resends_total", workflow="transfer", step="service-a.deduct")
        == 1
    )
    assert (
        value(registry, "saga_step_timeouts_total", workflow="transfer", step="service-b.add") == 1
    )
    # The compensation's step is named after the step's action, as the others are.
    retried = {"workflow": "transfer", "step": "service-a.deduct"}
    assert value(registry, "saga_compensation_retries_total", **retried) == 1


def test_ignored_inputs_count_by_kind_of_message(
    registry: CollectorRegistry, metrics: SagaMetrics
) -> None:
    reply = Reply("s1-1", "s1", 1, "ACTION", "service-a", "deduct", "A", 100, "SUCCESS")
    ignored = MessageIgnored("s1", "late reply")
    metrics.observe(Decision(None, events=(ignored,)), reply, NOW)
    metrics.observe(Decision(saga(), events=(ignored,)), reply, NOW)

    assert (
        value(registry, "saga_duplicates_ignored_total", role="orchestrator", message="reply") == 2
    )


def test_in_flight_and_stuck_are_counted_on_scrape_from_the_index(
    registry: CollectorRegistry, metrics: SagaMetrics, index: DeadlineIndex
) -> None:
    index.track(saga("fresh"))
    index.track(saga("old", "transfer-with-fee", created_at=NOW - 60_001))
    index.track(saga("ended", status="COMPLETED", deadline=None))
    assert value(registry, "saga_in_flight", workflow="transfer") == 1
    assert value(registry, "saga_in_flight", workflow="transfer-with-fee") == 1
    assert value(registry, "saga_stuck", workflow="transfer") == 0
    assert value(registry, "saga_stuck", workflow="transfer-with-fee") == 1

    index.track(saga("fresh", status="ROLLED_BACK", deadline=None))
    index.rebuild([saga("old", "transfer-with-fee", status="FAILED", deadline=None)])
    assert value(registry, "saga_in_flight", workflow="transfer") == 0
    assert value(registry, "saga_in_flight", workflow="transfer-with-fee") == 0


def test_stuck_threshold_is_the_audits_default() -> None:
    policy = RetryPolicy(step_timeout_ms=5_000, max_delay_ms=60_000)
    assert stuck_after_ms(policy) == 110_000


def command(action: str = "deduct") -> Command:
    return Command("s1-1", "s1", 1, "ACTION", action, "A", 100, issued_at=NOW)


@pytest.mark.parametrize(
    ("what", "status", "outcome"),
    [
        ("applied", "SUCCESS", "SUCCESS"),
        ("voided", "SUCCESS", "SUCCESS"),
        ("nothing_to_undo", "SUCCESS", "SUCCESS"),
        ("failed", "FAILED", "FAILED"),
        ("repeated", "SUCCESS", "REPEATED"),
        ("repeated", "FAILED", "REPEATED"),
        ("refused", "FAILED", "REFUSED"),
    ],
)
def test_an_execution_has_one_outcome(what: str, status: str, outcome: str) -> None:
    assert outcome_of(Execution(status, None, 0, 0, what)) == outcome  # type: ignore[arg-type]


def test_participant_commands_count_by_action_and_outcome(registry: CollectorRegistry) -> None:
    metrics = ParticipantMetrics(registry, "service-a")
    metrics.observe(command(), "SUCCESS")
    metrics.observe(command(), "REPEATED")
    metrics.observe(command("refund"), "REFUSED")

    def commands(action: str, outcome: str) -> float | None:
        labels = {"participant": "service-a", "action": action, "outcome": outcome}
        return value(registry, "saga_participant_commands_total", **labels)

    assert commands("deduct", "SUCCESS") == 1
    assert commands("deduct", "REPEATED") == 1
    assert commands("refund", "REFUSED") == 1
    # Answered from the ledger: a duplicate the participant did not execute again.
    assert (
        value(registry, "saga_duplicates_ignored_total", role="service-a", message="command") == 1
    )


class FakeConsumer:
    def __init__(self) -> None:
        self._committed_offset: dict[TP, int | None] = {}
        self.ends: dict[TP, int | None] = {}

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int | None:
        return self.ends[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self._consumer = consumer
        self.consumer = consumer


def test_consumer_lag_is_end_minus_committed_for_the_consumed_topics_only(
    registry: CollectorRegistry,
) -> None:
    consumer = FakeConsumer()
    behind, caught_up, fresh, unknown = (TP("cmds", p) for p in range(4))
    consumer.ends = {behind: 10, caught_up: 7, fresh: 3, unknown: None, TP("x-changelog", 0): 5}
    consumer._committed_offset = {behind: 4, caught_up: 7}
    registry.register(ConsumerLag(FakeApp(consumer), ["cmds"]))  # type: ignore[arg-type]

    text = generate_latest(registry).decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "saga_consumer_lag"]
    lags = {(s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}
    assert lags == {("cmds", "0"): 6, ("cmds", "1"): 0, ("cmds", "2"): 3}


def test_consumer_lag_is_empty_before_the_consumer_exists(registry: CollectorRegistry) -> None:
    registry.register(ConsumerLag(FakeApp(None), ["cmds"]))  # type: ignore[arg-type]
    assert "saga_consumer_lag{" not in generate_latest(registry).decode()
