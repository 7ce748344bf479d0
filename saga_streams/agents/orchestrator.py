"""The orchestrator: runs every saga by feeding its inputs to the pure engine.

Start with ``python -m saga_streams worker orchestrator`` or
``faust -A saga_streams.agents.orchestrator worker -l info --web-port 8000``; the app is
built from the environment only when the worker asks for it (``launch.lazy_app``), and
``create_orchestrator_app`` builds one from given settings, workflows and wiring.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT

from saga_streams.agents.batches import acting_for, in_batches
from saga_streams.agents.expiry import SagaExpiry
from saga_streams.agents.strays import StrayForwarder
from saga_streams.agents.wiring import Wiring, WiringFor
from saga_streams.app import ORCHESTRATOR_INPUTS, TIMEOUT_TOPIC, create_app, declare_topic
from saga_streams.config import Settings
from saga_streams.launch import lazy_app
from saga_streams.messages import (
    Command,
    MessageError,
    OperatorAction,
    Reply,
    TimeoutElapsed,
    TransferRequested,
    decode,
    encode,
)
from saga_streams.metrics import SagaMetrics, install_metrics, stuck_after_ms
from saga_streams.roles import ORCHESTRATOR, PARTICIPANTS
from saga_streams.rules import ID_RULE, IDENTIFIER, Refused, TransferRules, late_refusal
from saga_streams.saga.dsl import Registry
from saga_streams.saga.engine import RequestRefused, SagaInput, decide
from saga_streams.saga.logbook import render
from saga_streams.saga.policy import ARRIVAL_MARGIN_MS
from saga_streams.saga.state import now_ms
from saga_streams.tables.deadlines import DeadlineIndex
from saga_streams.tables.retention import effective_retention_ms
from saga_streams.tables.saga_index import SagaIndex, generation
from saga_streams.tables.sagas import SagaStore
from saga_streams.tables.settled import SettledStore
from saga_streams.web.admission import Admission
from saga_streams.web.dashboard import register_dashboard
from saga_streams.web.health import register_health_view
from saga_streams.web.integrity import register_integrity_view
from saga_streams.web.openapi import register_openapi_view
from saga_streams.web.operator import OperatorViews, register_operator_views
from saga_streams.web.retention import register_retention_view
from saga_streams.web.sagas import SagaViews, register_saga_views
from saga_streams.workflows import WORKFLOWS

__all__ = ["Orchestrator", "create_orchestrator_app"]

#: A record's timestamp type when the broker stamped it on append (Kafka's own value).
LOG_APPEND_TIME = 1
Input = TransferRequested | Reply | TimeoutElapsed | OperatorAction


class Orchestrator:
    """The orchestrator's worker: the saga table, the agent that moves sagas, the timer
    that notices overdue ones, and the views. Built by ``create_orchestrator_app``."""

    def __init__(self, settings: Settings, workflows: Registry, wiring: WiringFor) -> None:
        self.app = create_app(ORCHESTRATOR, settings, workflows)
        self.wiring: Wiring = wiring(self.app)
        self.workflows = workflows
        self.policy = settings.retry_policy
        self.log = logging.getLogger("saga_streams.orchestrator")
        self.sagas = SagaStore(self.app, settings.partitions)
        self.deadlines = DeadlineIndex()
        #: The sagas held here in listing order: GET /sagas reads a page, not the table.
        self.index = SagaIndex()
        #: Ended sagas are removed once expired, their totals settled first.
        retention_ms = effective_retention_ms(settings.saga_retention_ms, self.policy, workflows)
        self.retention_ms = retention_ms
        self.settled = SettledStore(self.app, settings.partitions)
        self.expiry = SagaExpiry(
            self.app,
            self.sagas,
            self.settled,
            workflows,
            retention_ms,
            self.wiring.durable,
            self.wiring.peers.serving,
        )
        self.expiry.on_removed.append(self.index.forget)
        self.metrics = SagaMetrics(
            install_metrics(self.app, ORCHESTRATOR_INPUTS),
            workflows,
            self.deadlines.in_flight,
            stuck_after_ms(self.policy),
            now_ms,
        )
        #: POST /transfer answers 429 beyond MAX_IN_FLIGHT sagas in flight here.
        self.admission = Admission(
            settings.max_in_flight,
            self.in_flight_count,
            self.metrics.transfers_refused.inc,
        )
        self.strays = StrayForwarder(self.wiring.send, settings.partitions, self.log)
        #: What a transfer may ask for: the HTTP view and the agent check the same rules,
        #: since anyone with a producer can write a request onto the topic.
        self.rules = TransferRules(
            workflows,
            settings.accounts,
            {role: participant.account for role, participant in PARTICIPANTS.items()},
        )
        # Requests, replies and timeouts are all keyed by saga id and consumed by one
        # agent, so all moves of one saga happen one at a time, in the partition owning it.
        inputs = declare_topic(self.app, *ORCHESTRATOR_INPUTS, partitions=settings.partitions)
        # concurrency=1: with more, Faust can commit an offset past an event in flight.
        self.run_sagas = self.app.agent(inputs, name="orchestrator-run-sagas", concurrency=1)(
            self.move_sagas
        )
        self.app.timer(interval=1.0)(self.fire_timeouts)
        self.register_views(retention_ms)

    def in_flight_count(self) -> int | None:
        """The sagas in flight in this worker's partitions, None while its tables are
        recovering. During a rebalance the count is the last assignment's: the deadline
        index is rebuilt for a new one only once the worker serves it, since between the
        assignment and the start of recovery the tables look recovered but do not hold
        the new partitions yet, and an index built then would miss their sagas' timeouts
        for good."""
        peers = self.wiring.peers
        if not peers.recovered():
            return None
        if peers.serving():
            self.deadlines.refresh(generation(self.app), self.sagas.all)
        return self.deadlines.in_flight_count()

    def register_views(self, retention_ms: int) -> None:
        """The HTTP API: sagas, operator actions, health, dashboard, integrity, retention
        and the OpenAPI document."""
        peers = self.wiring.peers
        views = SagaViews(
            self.sagas,
            self.wiring.send,
            self.policy,
            self.rules,
            peers,
            self.index,
            admission=self.admission,
        )
        register_saga_views(self.app, views)
        register_operator_views(self.app, OperatorViews(views))
        register_health_view(self.app, ORCHESTRATOR)
        register_dashboard(self.app)
        register_integrity_view(self.app, self.sagas.table, peers)
        register_retention_view(self.app, self.settled, peers, retention_ms)
        register_openapi_view(self.app, "orchestrator")

    def read(self, raw: bytes) -> Input | None:
        """One input of a saga, or None (logged) for anything else on the topics."""
        try:
            message = decode(raw)
        except MessageError as exc:
            self.log.warning("⏭️  Skipped a malformed message: %s", exc)
            return None
        if not isinstance(message, TransferRequested | Reply | TimeoutElapsed | OperatorAction):
            self.log.warning("⏭️  Skipped a %s on an orchestrator topic", type(message).__name__)
            return None
        if isinstance(message, TransferRequested) and not IDENTIFIER.fullmatch(message.saga_id):
            # No saga can be recorded (or looked up in a URL) under such an id.
            self.log.warning(
                "⏭️  Skipped a request with the saga id %r: %s", message.saga_id, ID_RULE
            )
            return None
        return message

    def checked(self, message: Input, appended_at: int | None) -> SagaInput:
        """A request that breaks the rules, or that Kafka appended after the view had given
        up on it, becomes a refusal, which the engine records."""
        if isinstance(message, TransferRequested):
            try:
                self.rules.check(message)
            except Refused as exc:
                return RequestRefused(message, str(exc))
            late = late_refusal(message, appended_at)
            if late is not None:
                return RequestRefused(message, late)
        return message

    def move(self, message: Input, appended_at: int | None = None) -> list[tuple[str, Command]]:
        """Feed one input to the engine and store the saga it returns (without waiting for
        the changelog); return the commands to send once it is there."""
        saga = self.sagas.get(message.saga_id)
        if saga is None and self.outlived(message, appended_at):
            return []
        checked = self.checked(message, appended_at)
        now = now_ms()
        decision = decide(saga, checked, now, self.workflows, self.policy)
        self.metrics.observe(decision, message, now)
        if decision.saga is not None and decision.saga != saga:
            self.sagas.put(decision.saga)
            self.deadlines.track(decision.saga)
            self.index.track(decision.saga)
            self.expiry.track(decision.saga)
            self.admission.observe(saga, decision.saga, now)
        for event in decision.events:
            self.log.info(render(event, self.workflows))
        return list(decision.commands)

    def outlived(self, message: Input, appended_at: int | None) -> bool:
        """Whether ``message`` is a request Kafka appended a retention ago or more: skipped.

        Its saga, if it ran, may have ended and expired since, and this is the same
        record read again (a consumer that restarts from an offset committed long ago,
        after a run of crashes and rebalances: the soak saw it). Run again, it would
        move the money twice. A saga is removed a retention after its end, which comes
        after its request's append, so a request appended less than that ago cannot
        have lost its saga. The margin covers the broker's clock and this worker's.
        The topic the workers create stamps append times; on one that stamps create
        times, which any producer may set, nothing is known and nothing is skipped."""
        if not isinstance(message, TransferRequested) or appended_at is None:
            return False
        age_ms = now_ms() - appended_at
        if age_ms < self.retention_ms - ARRIVAL_MARGIN_MS:
            return False
        self.log.warning(
            "⏭️  Skipped request %s: appended %.0fs ago, longer than the saga retention "
            "(%.0fs); its saga may have run and expired [saga %s]",
            message.saga_id,
            age_ms / 1000,
            self.retention_ms / 1000,
            message.saga_id,
        )
        return True

    async def move_sagas(self, stream: faust.StreamT[bytes]) -> None:
        async for events in in_batches(stream, self.wiring.batch_max):
            outbox: list[tuple[str, Command]] = []
            for event in events:
                message = self.read(event.value)
                if message is None:
                    continue
                if await self.strays.forward_if_stray(event, message.saga_id):
                    continue
                with acting_for(event):
                    outbox += self.move(message, _appended_at(event))
            await self.strays.flush()
            # Durable before anything is sent: a command never outlives the state that
            # explains it.
            await self.wiring.durable(self.sagas.table)
            for topic, command in outbox:
                # Keyed by account: one account's commands stay in order on one partition.
                await self.wiring.send(topic, command.account, encode(command))
            # Then a slice of expired sagas per partition among the events (a partition
            # with no events keeps its expired sagas until it has one: agents/expiry.py).
            await self.expiry.sweep(events)

    async def fire_timeouts(self) -> None:
        """Tell the agent about overdue sagas. The timer only reads the table; the timeout
        travels through Kafka so that the agent, the only writer, makes the move."""
        if self.wiring.peers.serving():
            # Rebuilt once the tables are recovered: built from a half-recovered table,
            # an index would miss the rest until the next rebalance (sagas whose timeouts
            # never fire). The first listing after a rebalance finds the listing index
            # ready (the listing refreshes it too, for a listing that comes first).
            self.deadlines.refresh(generation(self.app), self.sagas.all)
            self.index.refresh(generation(self.app), self.sagas.stored)
        due = self.deadlines.due(now_ms(), limit=1000)
        # A partition without traffic has no batch to sweep expired sagas after: its
        # oldest expired saga gets a timeout, which the engine ignores (the saga has
        # ended) and whose batch is swept (agents/expiry.py).
        for saga_id, deadline in [*due, *self.expiry.wake_ups()]:
            await self.wiring.send(
                TIMEOUT_TOPIC, saga_id, encode(TimeoutElapsed(saga_id, deadline))
            )


def _appended_at(event: EventT[bytes]) -> int | None:
    """When the broker appended the event (epoch ms), if the topic stamps append times."""
    record = event.message
    return round(record.timestamp * 1000) if record.timestamp_type == LOG_APPEND_TIME else None


def create_orchestrator_app(
    settings: Settings, workflows: Registry, wiring: WiringFor = Wiring.of
) -> faust.App:
    """The orchestrator's Faust app."""
    return Orchestrator(settings, workflows, wiring).app


__getattr__ = lazy_app(lambda settings: create_orchestrator_app(settings, WORKFLOWS))
