"""The orchestrator: runs every saga by feeding its inputs to the pure engine.

Start with ``python -m saga_streams worker orchestrator`` or
``faust -A saga_streams.agents.orchestrator worker -l info --web-port 8000``.
"""

from __future__ import annotations

import logging
import time

import faust
from faust.types import EventT

from saga_streams.agents.batches import acting_for, in_batches
from saga_streams.agents.strays import StrayForwarder
from saga_streams.app import (
    TIMEOUT_TOPIC,
    TRANSFER_REQUEST_TOPIC,
    command_topic_names,
    consumed_topics,
    create_app,
    declare_topic,
    settings_or_exit,
)
from saga_streams.messages import (
    Command,
    MessageError,
    Reply,
    TimeoutElapsed,
    TransferRequested,
    decode,
    encode,
)
from saga_streams.roles import ORCHESTRATOR, PARTICIPANTS
from saga_streams.rules import ID_RULE, IDENTIFIER, Refused, TransferRules, late_refusal
from saga_streams.saga.engine import RequestRefused, SagaInput, decide
from saga_streams.saga.logbook import render
from saga_streams.saga.workflow import WORKFLOWS
from saga_streams.tables.deadlines import DeadlineIndex
from saga_streams.tables.sagas import SagaStore
from saga_streams.web.health import register_health_view
from saga_streams.web.integrity import register_integrity_view
from saga_streams.web.sagas import register_saga_views

__all__ = ["app", "fire_timeouts", "move", "run_sagas"]

log = logging.getLogger("saga_streams.orchestrator")
#: A record's timestamp type when the broker stamped it on append (Kafka's own value).
LOG_APPEND_TIME = 1

settings = settings_or_exit()
app = create_app(ORCHESTRATOR, settings)
sagas = SagaStore(app, settings.partitions)
deadlines = DeadlineIndex()

transfer_requests_topic = declare_topic(app, TRANSFER_REQUEST_TOPIC, partitions=settings.partitions)
timeouts_topic = declare_topic(app, TIMEOUT_TOPIC, partitions=settings.partitions)
# Requests, replies and timeouts are all keyed by saga id and consumed by one agent, so
# all moves of one saga happen one at a time, in the table partition that owns it.
saga_inputs_topic = declare_topic(
    app, *consumed_topics()[ORCHESTRATOR.name], partitions=settings.partitions
)
command_topics = {
    name: declare_topic(app, name, partitions=settings.partitions) for name in command_topic_names()
}
strays = StrayForwarder(app, consumed_topics()[ORCHESTRATOR.name], settings.partitions, log)
#: What a transfer may ask for: the HTTP view and the agent check the same rules, since
#: anyone with a producer can write a request onto the topic without passing the view.
transfer_rules = TransferRules(
    WORKFLOWS,
    settings.accounts,
    {role: participant.account for role, participant in PARTICIPANTS.items()},
)


def now_ms() -> int:
    return int(time.time() * 1000)


def read(raw: bytes) -> TransferRequested | Reply | TimeoutElapsed | None:
    """One input of a saga, or None (logged) for anything else on the topics."""
    try:
        message = decode(raw)
    except MessageError as exc:
        log.warning("⏭️  Skipped a malformed message: %s", exc)
        return None
    if not isinstance(message, TransferRequested | Reply | TimeoutElapsed):
        log.warning("⏭️  Skipped a %s on an orchestrator topic", type(message).__name__)
        return None
    if isinstance(message, TransferRequested) and not IDENTIFIER.fullmatch(message.saga_id):
        # No saga can be recorded (or looked up in a URL) under such an id.
        log.warning("⏭️  Skipped a request with the saga id %r: %s", message.saga_id, ID_RULE)
        return None
    return message


def checked(
    message: TransferRequested | Reply | TimeoutElapsed, appended_at: int | None
) -> SagaInput:
    """A request that breaks the rules, or that Kafka appended after the view had given up
    on it, becomes a refusal, which the engine records."""
    if isinstance(message, TransferRequested):
        try:
            transfer_rules.check(message)
        except Refused as exc:
            return RequestRefused(message, str(exc))
        late = late_refusal(message, appended_at)
        if late is not None:
            return RequestRefused(message, late)
    return message


def appended_at(event: EventT[bytes]) -> int | None:
    """When the broker appended the event (epoch ms), if the topic stamps append times."""
    record = event.message
    return round(record.timestamp * 1000) if record.timestamp_type == LOG_APPEND_TIME else None


def move(
    message: TransferRequested | Reply | TimeoutElapsed, appended: int | None = None
) -> list[tuple[str, Command]]:
    """Feed one input to the engine and store the saga it returns (without waiting for
    the changelog); return the commands to send once it is there."""
    saga = sagas.get(message.saga_id)
    decision = decide(saga, checked(message, appended), now=now_ms(), policy=settings.retry_policy)
    if decision.saga is not None and decision.saga != saga:
        sagas.put(decision.saga)
        deadlines.track(decision.saga)
    for event in decision.events:
        log.info(render(event))
    return list(decision.commands)


@app.agent(saga_inputs_topic, concurrency=1)
async def run_sagas(stream: faust.StreamT[bytes]) -> None:
    # concurrency=1: with more, Faust can commit an offset past an event still in flight.
    async for events in in_batches(stream):
        outbox: list[tuple[str, Command]] = []
        for event in events:
            message = read(event.value)
            if message is None or await strays.forward_if_stray(event, message.saga_id):
                continue
            with acting_for(event):
                outbox += move(message, appended_at(event))
        await strays.flush()
        # Durable before anything is sent: a command never outlives the state that
        # explains it.
        await sagas.written()
        for topic_name, command in outbox:
            # Keyed by account: one account's commands stay in order on one partition.
            await command_topics[topic_name].send(key=command.account, value=encode(command))


async def fire_timeouts() -> None:
    """Tell the agent about overdue sagas. The timer only reads the table; the timeout
    travels through Kafka so that the agent, the only writer, makes the move."""
    deadlines.refresh(frozenset(app.assignor.assigned_actives()), sagas.all)
    for saga_id, deadline in deadlines.due(now_ms(), limit=1000):
        await timeouts_topic.send(key=saga_id, value=encode(TimeoutElapsed(saga_id, deadline)))


app.timer(interval=1.0)(fire_timeouts)
register_saga_views(
    app,
    sagas,
    transfer_requests_topic,
    settings.retry_policy,
    transfer_rules,
)
register_health_view(app, ORCHESTRATOR)
register_integrity_view(app, sagas.table)
