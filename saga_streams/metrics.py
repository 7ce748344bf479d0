"""``GET /metrics``: Faust's own Prometheus sensor and the saga metrics, per worker.

Every app gets its own registry (never the process-wide default), so several apps in one
process (the agent tests) don't clash over metric names. The orchestrator's counters are
fed from the engine's decisions, the participant's from each command's execution; the
gauges (sagas in flight and stuck, consumer lag) are computed on scrape from what the
worker holds, so they are right however the worker got there (restart, rebalance).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport.consumer import Consumer
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from saga_streams.accounts import Execution
from saga_streams.messages import Command, Reply, TimeoutElapsed, TransferRequested
from saga_streams.saga.dsl import Registry
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
from saga_streams.saga.state import STATUSES, TERMINAL, Saga

__all__ = [
    "DURATION_BUCKETS",
    "CommandOutcome",
    "ConsumerLag",
    "InFlight",
    "ParticipantMetrics",
    "SagaMetrics",
    "install_metrics",
    "outcome_of",
    "stuck_after_ms",
]

#: Faust's own metrics are named ``faust_...`` on every worker (not after the app id):
#: one dashboard query covers all roles, told apart by Prometheus's job and instance.
FAUST_PREFIX = "faust"
#: Seconds. A saga takes milliseconds without failures, seconds with a resend, up to
#: minutes when a participant stays silent through every retry.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: The workflow label of a message no saga explains (a reply for an unknown saga).
UNKNOWN = "unknown"

#: What became of one command at a participant: done now (SUCCESS or FAILED), answered
#: from the ledger (REPEATED), or neither done nor recorded (REFUSED: it broke the rules,
#: or it is a compensation that would overdraw, to be sent again).
CommandOutcome = Literal["SUCCESS", "FAILED", "REPEATED", "REFUSED"]
#: (workflow, created_at in epoch ms) of each saga in flight on this worker.
InFlight = Callable[[], Iterable[tuple[str, int]]]
_FINISHED: dict[type, str] = {
    SagaCompleted: "COMPLETED",
    SagaRolledBack: "ROLLED_BACK",
    SagaFailed: "FAILED",
    SagaRefused: "FAILED",
}


def stuck_after_ms(policy: RetryPolicy) -> int:
    """How long a saga may stay in flight before it counts as stuck: the audit's default
    (10 times STEP_TIMEOUT plus RETRY_MAX_DELAY)."""
    return 10 * policy.step_timeout_ms + policy.max_delay_ms


def outcome_of(result: Execution) -> CommandOutcome:
    if result.what == "repeated":
        return "REPEATED"
    if result.what in ("refused", "expired"):
        return "REFUSED"
    return result.status


class SagaMetrics:
    """The orchestrator's saga metrics: counters fed by ``observe`` after every move, and
    the in-flight and stuck gauges read off ``in_flight`` on scrape."""

    def __init__(
        self,
        registry: CollectorRegistry,
        workflows: Registry,
        in_flight: InFlight,
        stuck_after: int,
        clock: Callable[[], int],
    ) -> None:
        self.workflows = workflows
        self.started = Counter("saga_started", "Sagas started", ["workflow"], registry=registry)
        self.finished = Counter(
            "saga_finished", "Sagas ended, by terminal status", ["workflow", "status"],
            registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "saga_duration_seconds", "From a saga's creation to its end", ["workflow"],
            buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.timeouts = Counter(
            "saga_step_timeouts", "Actions given up on after their last attempt",
            ["workflow", "step"], registry=registry,
        )  # fmt: skip
        self.resends = Counter(
            "saga_step_resends", "Actions sent again (timeout or redelivery)",
            ["workflow", "step"], registry=registry,
        )  # fmt: skip
        self.compensation_retries = Counter(
            "saga_compensation_retries", "Compensations sent again",
            ["workflow", "step"], registry=registry,
        )  # fmt: skip
        self.ignored = Counter(
            "saga_duplicates_ignored", "Inputs the engine ignored (duplicate, late, stray)",
            ["role", "message"], registry=registry,
        )  # fmt: skip
        #: Fed by the admission control of POST /transfer (web/admission.py).
        self.transfers_refused = Counter(
            "saga_transfers_refused", "POST /transfer answered 429: MAX_IN_FLIGHT reached",
            registry=registry,
        )  # fmt: skip
        for name in workflows:
            # Present from the start at 0, so a rate over them is defined at once.
            self.started.labels(workflow=name)
            for status in (s for s in STATUSES if s in TERMINAL):
                self.finished.labels(workflow=name, status=status)
        registry.register(_InFlightCollector(workflows, in_flight, stuck_after, clock))

    def observe(self, decision: Decision, message: object, now: int) -> None:
        """Count what one move of the engine did (``message``: the input it moved on)."""
        saga = decision.saga
        workflow = saga.workflow if saga is not None else UNKNOWN
        for event in decision.events:
            self._count(event, workflow, saga, message, now)

    def _count(
        self, event: SagaEvent, workflow: str, saga: Saga | None, message: object, now: int
    ) -> None:
        if isinstance(event, SagaStarted | SagaRefused):
            # A refused request is a saga too (stored FAILED): started and finished.
            self.started.labels(workflow=workflow).inc()
        status = _FINISHED.get(type(event))
        if status is not None and saga is not None:
            self.finished.labels(workflow=workflow, status=status).inc()
            self.duration.labels(workflow=workflow).observe(max(now - saga.created_at, 0) / 1000)
        elif isinstance(event, StepTimedOut):
            self.timeouts.labels(workflow=workflow, step=event.label).inc()
        elif isinstance(event, StepDispatched) and event.resent:
            self.resends.labels(workflow=workflow, step=event.label).inc()
        elif isinstance(event, CompensationDispatched) and event.resent:
            step = self._label(workflow, event.step)
            self.compensation_retries.labels(workflow=workflow, step=step).inc()
        elif isinstance(event, MessageIgnored):
            self.ignored.labels(role="orchestrator", message=_kind_of(message)).inc()

    def _label(self, workflow: str, number: int) -> str:
        known = self.workflows.get(workflow)
        return known.step(number).label if known is not None else str(number)


def _kind_of(message: object) -> str:
    if isinstance(message, TransferRequested):
        return "request"
    if isinstance(message, TimeoutElapsed):
        return "timeout"
    if isinstance(message, Reply):
        return "reply"
    return "other"


class _InFlightCollector(Collector):
    """``saga_in_flight`` and ``saga_stuck`` per workflow, counted on scrape."""

    def __init__(
        self, workflows: Registry, in_flight: InFlight, stuck_after: int, clock: Callable[[], int]
    ) -> None:
        self.workflows = workflows
        self.in_flight = in_flight
        self.stuck_after = stuck_after
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        flying: Tally[str] = Tally({name: 0 for name in self.workflows})
        stuck: Tally[str] = Tally({name: 0 for name in self.workflows})
        for workflow, created_at in self.in_flight():
            flying[workflow] += 1
            stuck[workflow] += now - created_at > self.stuck_after
        in_flight = GaugeMetricFamily(
            "saga_in_flight", "Sagas this worker holds that have not ended", labels=["workflow"]
        )
        too_long = GaugeMetricFamily(
            "saga_stuck",
            f"Sagas in flight for over {self.stuck_after / 1000:g} s (the audit's threshold)",
            labels=["workflow"],
        )
        for workflow in sorted(flying):
            in_flight.add_metric([workflow], flying[workflow])
            too_long.add_metric([workflow], stuck[workflow])
        yield in_flight
        yield too_long


class ParticipantMetrics:
    """A participant's commands, by action and outcome; those answered from the ledger
    also count as duplicates ignored."""

    def __init__(self, registry: CollectorRegistry, participant: str) -> None:
        self.participant = participant
        self.commands = Counter(
            "saga_participant_commands", "Commands a participant executed, by outcome",
            ["participant", "action", "outcome"], registry=registry,
        )  # fmt: skip
        self.ignored = Counter(
            "saga_duplicates_ignored", "Inputs the engine ignored (duplicate, late, stray)",
            ["role", "message"], registry=registry,
        )  # fmt: skip
        self.archive_removed = Counter(
            "saga_ledger_archive_removed", "Expired ledger entries removed from the archive",
            ["participant"], registry=registry,
        )  # fmt: skip

    def observe(self, command: Command, outcome: CommandOutcome) -> None:
        self.commands.labels(
            participant=self.participant, action=command.action, outcome=outcome
        ).inc()
        if outcome == "REPEATED":
            self.ignored.labels(role=self.participant, message="command").inc()


class ConsumerLag(Collector):
    """``saga_consumer_lag{topic,partition}``: end offset minus committed offset, for
    every partition of ``topics`` assigned to this worker's consumer, read on scrape.

    Tables' changelogs are left out: nothing commits offsets on them."""

    def __init__(self, app: faust.App, topics: Iterable[str]) -> None:
        self.app = app
        self.topics = frozenset(topics)

    def lags(self) -> dict[TP, int]:
        consumer = cast(Consumer, self.app.consumer)
        committed = consumer._committed_offset  # Faust's own record of its commits
        found = {}
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:
            return {}
        for tp in assigned:
            if tp.topic not in self.topics:
                continue
            try:
                end: int | None = consumer.highwater(tp)
            except (AssertionError, ConsumerNotStarted):  # revoked or stopped meanwhile
                continue
            if end is None:  # no fetch answered yet: unknown, not zero
                continue
            # No commit yet: everything from the start is still to be read.
            found[tp] = max(end - (committed.get(tp) or 0), 0)
        return found

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "saga_consumer_lag",
            "End offset minus committed offset of each partition this worker consumes",
            labels=["topic", "partition"],
        )
        # Before the consumer exists (the app not started) there is nothing to report.
        lags = self.lags() if self.app._consumer is not None else {}
        for tp, value in sorted(lags.items()):
            lag.add_metric([tp.topic, str(tp.partition)], value)
        yield lag


def install_metrics(app: faust.App, topics: Iterable[str]) -> CollectorRegistry:
    """Serve ``GET /metrics`` on ``app`` from a registry of its own, holding Faust's
    sensor and the consumer lag of ``topics``; returns it for the role's own metrics."""
    registry = CollectorRegistry()
    setup_prometheus_sensors(app, registry=registry, name_prefix=FAUST_PREFIX)
    registry.register(ConsumerLag(app, topics))
    return registry
