"""The pure saga engine: ``(saga, message, now) -> Decision``.

Every move of every saga is decided here, with no I/O: the orchestrator agent loads the
saga from its table, asks ``decide``, stores ``decision.saga``, sends ``decision.commands``
and logs ``decision.events``. Unit tests drive it without Kafka.

The rules, in the seed's words:
- a transfer request starts the saga at step 1;
- a step's SUCCESS moves to the next step, or completes the saga after the last;
- a step's FAILED starts the rollback: the steps that succeeded are compensated one by one,
  latest first; with nothing to undo the saga simply FAILED;
- a compensation's SUCCESS moves to the previous succeeded step, or ends ROLLED_BACK.

And what the seed leaves out, because Kafka delivers at least once:
- a reply that is not for the command the saga awaits (duplicate, late, unknown) changes
  nothing and is reported as ignored;
- a terminal saga never moves again;
- a redelivered request, or a redelivery of the reply that made the latest move, sends the
  awaited command again (its id is unchanged, so the participant applies it at most once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from saga_streams.messages import ACTION, COMPENSATION, Command, Reply, TransferRequested
from saga_streams.saga.events import (
    CompensationDispatched,
    CompensationRefused,
    MessageIgnored,
    RollbackStarted,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaRolledBack,
    SagaStarted,
    StepCompensated,
    StepDispatched,
    StepFailed,
    StepSucceeded,
)
from saga_streams.saga.state import Saga, StepState
from saga_streams.saga.workflow import WORKFLOWS, Workflow

__all__ = ["Decision", "action_id", "compensation_id", "decide", "pending_command"]


@dataclass(frozen=True)
class Decision:
    saga: Saga | None  # None: nothing to store (an unknown saga's stray reply)
    commands: tuple[tuple[str, Command], ...] = ()  # (topic, command) in sending order
    events: tuple[SagaEvent, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.commands) or any(
            not isinstance(event, MessageIgnored) for event in self.events
        )


def action_id(saga_id: str, step: int) -> str:
    return f"{saga_id}-{step}"


def compensation_id(saga_id: str, step: int) -> str:
    return f"{saga_id}-{step}-undo"


def _action(workflow: Workflow, saga: Saga, number: int) -> tuple[str, Command]:
    step = workflow.step(number)
    command = Command(
        command_id=action_id(saga.saga_id, number),
        saga_id=saga.saga_id,
        step=number,
        kind=ACTION,
        action=step.action,
        account=step.account,
        amount_cents=saga.amount_cents,
    )
    return step.action_topic, command


def _compensation(workflow: Workflow, saga: Saga, number: int) -> tuple[str, Command]:
    step = workflow.step(number)
    assert step.compensation is not None and step.compensation_topic is not None
    command = Command(
        command_id=compensation_id(saga.saga_id, number),
        saga_id=saga.saga_id,
        step=number,
        kind=COMPENSATION,
        action=step.compensation,
        account=step.account,
        amount_cents=saga.amount_cents,
        undoes=action_id(saga.saga_id, number),
    )
    return step.compensation_topic, command


def pending_command(workflow: Workflow, saga: Saga) -> tuple[str, Command] | None:
    """The command the saga is waiting on, derived from its steps (never stored twice)."""
    for number, state in enumerate(saga.steps, start=1):
        if state.outcome == "PENDING":
            return _action(workflow, saga, number)
        if state.outcome == "COMPENSATING":
            return _compensation(workflow, saga, number)
    return None


def _dispatch_event(workflow: Workflow, saga: Saga, resent: bool) -> tuple[SagaEvent, ...]:
    pending = pending_command(workflow, saga)
    if pending is None:
        return ()
    _, command = pending
    step = workflow.step(command.step)
    if command.kind == ACTION:
        return (
            StepDispatched(
                saga.saga_id,
                command.step,
                len(workflow.steps),
                step.label,
                step.action_topic,
                resent,
            ),
        )
    return (CompensationDispatched(saga.saga_id, command.step, step.participant, resent),)


def _resend(workflow: Workflow, saga: Saga, why: str) -> Decision:
    pending = pending_command(workflow, saga)
    if pending is None:
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    return Decision(saga, commands=(pending,), events=_dispatch_event(workflow, saga, resent=True))


def _start(workflow: Workflow, request: TransferRequested, now: int) -> Decision:
    saga = Saga(
        saga_id=request.saga_id,
        workflow=workflow.name,
        amount_cents=request.amount_cents,
        status="STARTED",
        steps=tuple(StepState() for _ in workflow.steps),
        created_at=request.requested_at,
        updated_at=now,
    ).with_step(1, "PENDING")
    started = SagaStarted(saga.saga_id, workflow.name, saga.amount_cents, len(workflow.steps))
    return Decision(
        saga,
        commands=(_action(workflow, saga, 1),),
        events=(started, *_dispatch_event(workflow, saga, resent=False)),
    )


def _next_compensation(workflow: Workflow, saga: Saga, below: int) -> int | None:
    """The latest step before ``below`` that succeeded and has something to undo."""
    for number in range(below - 1, 0, -1):
        if saga.steps[number - 1].outcome == "SUCCEEDED" and workflow.step(number).compensation:
            return number
    return None


def _after_action(workflow: Workflow, saga: Saga, reply: Reply) -> Decision:
    number, total = reply.step, len(workflow.steps)
    label = workflow.step(number).label
    if reply.status == "SUCCESS":
        saga = saga.with_step(number, "SUCCEEDED")
        events: tuple[SagaEvent, ...] = (StepSucceeded(saga.saga_id, number, total, label),)
        if number == total:
            saga = replace(saga, status="COMPLETED")
            return Decision(saga, events=(*events, SagaCompleted(saga.saga_id, saga.amount_cents)))
        saga = saga.with_step(number + 1, "PENDING")
        return Decision(
            saga,
            commands=(_action(workflow, saga, number + 1),),
            events=(*events, *_dispatch_event(workflow, saga, resent=False)),
        )

    error = reply.error or "unknown error"
    saga = saga.with_step(number, "FAILED", error)
    events = (StepFailed(saga.saga_id, number, total, label, error),)
    undo = _next_compensation(workflow, saga, below=number)
    if undo is None:
        saga = replace(saga, status="FAILED")
        return Decision(saga, events=(*events, SagaFailed(saga.saga_id, number, error)))
    saga = replace(saga, status="COMPENSATING").with_step(undo, "COMPENSATING")
    return Decision(
        saga,
        commands=(_compensation(workflow, saga, undo),),
        events=(
            *events,
            RollbackStarted(saga.saga_id, number),
            *_dispatch_event(workflow, saga, resent=False),
        ),
    )


def _after_compensation(workflow: Workflow, saga: Saga, reply: Reply) -> Decision:
    number = reply.step
    if reply.status == "FAILED":
        # Participants acknowledge every compensation; a refusal is kept visible on the
        # step and the saga stays COMPENSATING until the same command is sent again.
        error = reply.error or "compensation refused"
        saga = saga.with_step(number, "COMPENSATING", error)
        return Decision(saga, events=(CompensationRefused(saga.saga_id, number, error),))
    saga = saga.with_step(number, "COMPENSATED")
    events: tuple[SagaEvent, ...] = (
        StepCompensated(saga.saga_id, number, workflow.step(number).participant),
    )
    undo = _next_compensation(workflow, saga, below=number)
    if undo is None:
        saga = replace(saga, status="ROLLED_BACK")
        return Decision(saga, events=(*events, SagaRolledBack(saga.saga_id)))
    saga = saga.with_step(undo, "COMPENSATING")
    return Decision(
        saga,
        commands=(_compensation(workflow, saga, undo),),
        events=(*events, *_dispatch_event(workflow, saga, resent=False)),
    )


def decide(
    saga: Saga | None,
    message: TransferRequested | Reply,
    now: int,
    workflows: Mapping[str, Workflow] = WORKFLOWS,
) -> Decision:
    """Decide the next move of one saga. Pure: same inputs, same decision."""
    if isinstance(message, TransferRequested):
        workflow = workflows.get(message.workflow)
        if workflow is None:
            return Decision(
                saga,
                events=(MessageIgnored(message.saga_id, f"unknown workflow {message.workflow!r}"),),
            )
        if saga is None:
            return _start(workflow, message, now)
        if saga.is_terminal:
            return Decision(
                saga,
                events=(MessageIgnored(saga.saga_id, "request redelivered; saga already ended"),),
            )
        return _resend(workflow, saga, "request redelivered")

    if saga is None:
        return Decision(
            None,
            events=(
                MessageIgnored(message.saga_id, f"reply {message.command_id} for an unknown saga"),
            ),
        )
    workflow = workflows[saga.workflow]
    if saga.is_terminal:
        return Decision(
            saga,
            events=(
                MessageIgnored(
                    saga.saga_id, f"late reply {message.command_id}; saga already {saga.status}"
                ),
            ),
        )
    pending = pending_command(workflow, saga)
    if pending is None or pending[1].command_id != message.command_id:
        if message.command_id == saga.last_move:
            return _resend(workflow, saga, f"reply {message.command_id} redelivered")
        return Decision(
            saga,
            events=(MessageIgnored(saga.saga_id, f"reply {message.command_id} is not awaited"),),
        )

    moved = (
        _after_action(workflow, saga, message)
        if message.kind == ACTION
        else _after_compensation(workflow, saga, message)
    )
    assert moved.saga is not None
    return replace(moved, saga=replace(moved.saga, updated_at=now, last_move=message.command_id))
