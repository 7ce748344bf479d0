"""What every participant (services A, B and C) shares: accounts, command topics, replies.

A participant knows nothing about sagas: it executes a command on its account, at most
once, and answers on ``orchestrator-response``.

Its ledger forgets an action a window after last touching it, measured on stream time
(accounts.py, "The ledger window"; agents/stream_time.py). After each batch it sweeps a
slice of the archive of each partition the batch came from, removing expired entries.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.transport.consumer import Consumer
from faust.types import TP, EventT

from saga_streams.accounts import Account, Execution, Window, execute
from saga_streams.agents.batches import acting_for, in_batches
from saga_streams.agents.strays import StrayForwarder
from saga_streams.agents.stream_time import StreamClock
from saga_streams.agents.wiring import Wiring, WiringFor
from saga_streams.app import REPLY_TOPIC, create_app, declare_topic
from saga_streams.config import Settings
from saga_streams.faults import should_fail
from saga_streams.messages import (
    ACTION,
    COMPENSATION,
    Command,
    MessageError,
    Reply,
    decode,
    encode,
)
from saga_streams.metrics import ParticipantMetrics, install_metrics, outcome_of
from saga_streams.money import format_dollars
from saga_streams.roles import Participant
from saga_streams.rules import command_refusal
from saga_streams.saga.dsl import Registry
from saga_streams.saga.policy import ARRIVAL_MARGIN_MS
from saga_streams.tables.accounts import AccountStore, sweep_slice
from saga_streams.web.accounts import AccountViews, register_account_views
from saga_streams.web.health import register_health_view
from saga_streams.web.integrity import register_integrity_view
from saga_streams.web.openapi import register_openapi_view

__all__ = ["ParticipantService", "create_participant_app", "describe"]

#: Account id -> the account as a batch has changed it, and the event to store it under.
Changed = dict[str, tuple[Account, EventT[bytes]]]


def _past(action: str) -> str:
    return action + ("d" if action.endswith("e") else "ed")


def describe(command: Command, result: Execution) -> str:
    """The seed's service log lines for one command, tagged with the saga id."""
    tag = f"[saga {command.saga_id}]"
    verb = command.action.capitalize()
    amount = format_dollars(command.amount_cents)
    received = (
        f"📨 RECEIVED: {verb} {amount} {tag}"
        if command.kind == ACTION
        else f"🔄 COMPENSATION: {verb} {amount} {tag}"
    )
    if result.what == "repeated":
        return f"{received}\n🔁 ALREADY ANSWERED: {result.status}; balance untouched {tag}"
    if result.status == "FAILED":
        return f"{received}\n❌ FAILED: {verb} {amount} {tag}\n   Error: {result.error}"
    if result.what == "voided":
        return f"{received}\n✅ Nothing to {command.action}: the action never ran here {tag}"
    if result.what == "nothing_to_undo":
        return f"{received}\n✅ Nothing to {command.action}: the action was refused {tag}"
    done = (
        f"✅ SUCCESS: {_past(verb)} {amount}"
        if command.kind == ACTION
        else f"✅ {_past(verb)} {amount}"
    )
    balance = (
        f"   Balance: {format_dollars(result.balance_before)} → "
        f"{format_dollars(result.balance_after)}"
    )
    return f"{received}\n{done} {tag}\n{balance}"


class ParticipantService:
    """One participant's worker: its account table, the agent executing its commands, and
    its views. Built by ``create_participant_app``."""

    def __init__(
        self, participant: Participant, settings: Settings, workflows: Registry, wiring: WiringFor
    ) -> None:
        self.participant = participant
        self.app = create_app(participant.role, settings, workflows)
        self.wiring = wiring(self.app)
        self.log = logging.getLogger(f"saga_streams.{participant.role.name}")
        self.owned = settings.accounts[participant.role.name]
        self.failure_rate = settings.failure_rates[participant.role.name]
        self.accounts = AccountStore(self.app, settings.partitions, self.owned)
        self.topics = participant.topics(workflows)
        self.strays = StrayForwarder(self.wiring.send, settings.partitions, self.log)
        # The ledger window, from the retry policy and the longest workflow.
        policy = settings.retry_policy
        steps = max(len(workflow.steps) for workflow in workflows.values())
        self.retention_ms = policy.ledger_retention_ms(steps)
        self.action_limit_ms = policy.action_window_ms() + ARRIVAL_MARGIN_MS
        self.clock = StreamClock(self.topics, self.caught_up)
        #: partition -> when (``time.monotonic``) its archive was last swept.
        self.swept_at: dict[int, float] = {}
        #: Commands each partition has had since its last sweep: what its next sweep reads.
        self.unswept: Counter[int] = Counter()
        commands = declare_topic(self.app, *self.topics, partitions=settings.partitions)
        registry = install_metrics(self.app, self.topics)
        self.metrics = ParticipantMetrics(registry, participant.role.name)
        # concurrency=1: one batch at a time, each account read, changed and written in turn.
        name = f"{participant.role.name}-execute-commands"
        self.app.agent(commands, name=name, concurrency=1)(self.execute_commands)
        views = AccountViews(self.accounts, self.owned, participant.account, self.wiring.peers)
        register_account_views(self.app, views)
        register_health_view(self.app, participant.role)
        register_integrity_view(
            self.app, self.accounts.table, self.wiring.peers, AccountStore.owner_of
        )
        register_openapi_view(self.app, "participant")

    def read(self, event: EventT[bytes]) -> Command | None:
        """The command in ``event``, or None (logged) for anything else on the topics."""
        try:
            command = decode(event.value)
        except MessageError as exc:
            self.log.warning("⏭️  Skipped a malformed message: %s", exc)
            return None
        kind = self.topics[event.message.topic][0]
        if not isinstance(command, Command) or command.kind != kind:
            self.log.warning("⏭️  Skipped a message that is not a %s command: %r", kind, command)
            return None
        return command

    def execute_one(self, command: Command, event: EventT[bytes], changed: Changed) -> Reply:
        """Execute one command on its account and return the reply to send once the
        account is in the changelog. ``changed``: the accounts this batch has changed so
        far, each with the event to store it under; each is stored once, at the end of
        the batch, however many of its commands the batch holds."""
        role = self.participant.role.name
        topic = event.message.topic
        _, action, effect = self.topics[topic]
        refusal = command_refusal(command, topic, action, self.owned)
        if refusal is not None:
            # Never applied, never recorded: the reply repeats the command's account and
            # amount, so no saga takes it for the answer to a command of its own.
            self.log.warning(
                "❌ Refused %s: %s [saga %s]", command.command_id, refusal, command.saga_id
            )
            self.metrics.observe(command, "REFUSED")
            return Reply.for_command(command, role, "FAILED", refusal)
        cached = changed.get(command.account)
        account = cached[0] if cached else self.accounts.get(command.account)
        fails = should_fail(role, command.command_id, self.failure_rate)
        injected = self.participant.failure_error if fails else None
        window = Window(self.clock.now(event.message.tp), self.retention_ms, self.action_limit_ms)
        recall = self.accounts.recall(command.account)
        result = execute(account, command, effect, injected, recall, window)
        if result.recorded:
            changed[account.account_id] = (account, event)
        self.log.info(describe(command, result))
        if (
            command.kind == COMPENSATION
            and result.what == "voided"
            and window.now - command.issued_at > self.retention_ms
        ):
            # Beyond the window's assumption (accounts.py): had the action run here, its
            # entry would have been forgotten, and this compensation undoes nothing.
            self.log.warning(
                "⚠️  Voided a compensation of an action issued %.0fs ago, past the ledger "
                "window (%.0fs) [saga %s]",
                (window.now - command.issued_at) / 1000,
                self.retention_ms / 1000,
                command.saga_id,
            )
        self.metrics.observe(command, outcome_of(result))
        return Reply.for_command(command, role, result.status, result.error)

    async def execute_commands(self, stream: faust.StreamT[bytes]) -> None:
        async for events in in_batches(stream, self.wiring.batch_max):
            replies = []
            changed: Changed = {}
            for event in events:
                command = self.read(event)
                if command is None:
                    self.clock.passed(event)
                    continue
                self.clock.observe(event)
                if await self.strays.forward_if_stray(event, command.account):
                    continue
                with acting_for(event):
                    replies.append(self.execute_one(command, event, changed))
            await self.strays.flush()
            for account, event in changed.values():
                with acting_for(event):  # the account's partition
                    self.accounts.put(account)
            # The replies go out only once the money movements are durable.
            await self.wiring.durable(self.accounts.table)
            for reply in replies:
                await self.wiring.send(REPLY_TOPIC, reply.saga_id, encode(reply))
            # After the replies: the sweep adds nothing to their latency, and its
            # tombstones are awaited with the next batch's writes.
            self.sweep(events)

    def sweep(self, events: Sequence[EventT[bytes]]) -> int:
        """Remove expired archive entries from the next slice of each partition among
        ``events`` not swept in the last ``sweep_every_s``, acting for an event of that
        partition; return how many."""
        removed = 0
        now = time.monotonic()
        self.unswept.update(e.message.partition for e in events)
        for partition, event in {e.message.partition: e for e in events}.items():
            if now - self.swept_at.get(partition, float("-inf")) < self.wiring.sweep_every_s:
                continue
            horizon = self.clock.horizon(partition)
            if horizon is None:
                continue
            self.swept_at[partition] = now
            # A margin more than ``execute`` allows: a partition's time restarts after a
            # restart from its next record, which may be stamped up to that much earlier.
            expired = partial(
                Window(horizon, self.retention_ms).expired, grace_ms=ARRIVAL_MARGIN_MS
            )
            keys = sweep_slice(self.unswept.pop(partition, 0))
            with acting_for(event):
                removed += self.accounts.sweep(partition, expired, keys)
        if removed:
            self.log.info("🧹 Removed %d expired ledger entries from the archive", removed)
            self.metrics.archive_removed.labels(participant=self.participant.role.name).inc(removed)
        return removed

    def caught_up(self, tp: TP, processed: int | None) -> bool:
        """Whether the consumer has nothing left to read on ``tp``: the offset after the
        last record processed (or, if none since the start, the committed offset; with
        none, the start) has reached the end Kafka last reported."""
        consumer = cast(Consumer, self.app.consumer)
        try:
            end = consumer.highwater(tp)
        except (AssertionError, ConsumerNotStarted):  # not assigned, or not started
            return False
        done = processed + 1 if processed is not None else consumer._committed_offset.get(tp)
        return end is not None and (done or 0) >= end


def create_participant_app(
    participant: Participant,
    settings: Settings,
    workflows: Registry,
    wiring: WiringFor = Wiring.of,
) -> faust.App:
    """The Faust app of one participant (service A, B or C)."""
    return ParticipantService(participant, settings, workflows, wiring).app
