"""The pure saga engine: ``(saga, input, now) -> Decision``.

Every move of every saga is decided here, with no I/O: the orchestrator agent loads the
saga from its table, asks ``decide``, stores ``decision.saga``, sends ``decision.commands``
and logs ``decision.events``. Unit tests drive it without Kafka.

The rules, in the seed's words:
- a transfer request starts the saga at step 1;
- a step's SUCCESS moves to the next step, or completes the saga after the last;
- a step's FAILED starts the rollback: the steps that succeeded are compensated one by one,
  latest first; with nothing to undo the saga simply FAILED;
- a compensation's SUCCESS moves to the previous succeeded step, or ends the rollback.

And what the seed leaves out, because Kafka delivers at least once and processes die:
- a reply that is not for the command the saga awaits (duplicate, late, unknown) changes
  nothing and is reported as ignored; a terminal saga never moves again;
- a reply with the awaited command's id that repeats other contents (account, amount,
  action) answers a command someone else produced under that id, not ours: ignored;
- a request that breaks the rules (``RequestRefused``, decided by ``rules.py``) ends its
  saga FAILED with the reason before any step;
- a redelivered request, or a redelivery of the reply that made the latest move, sends the
  awaited command again (its id is unchanged, so the participant applies it at most once);
- every send sets a deadline; when it passes (``TimeoutElapsed``) the command is sent
  again, waiting twice as long each time. After ``max_attempts`` sends of an action the
  orchestrator gives up on it: the action may have run with its reply lost, so the rollback
  starts by compensating that step itself (a participant that never saw the action
  records the compensation and refuses the action if it arrives later);
- a compensation is never given up: it is sent again until acknowledged, and the saga
  stays COMPENSATING, with its attempts and last error, for everyone to see.

And what an operator may ask (``OperatorAction``, published by the HTTP view):
- retry: the awaited command goes out again now, its attempts counted afresh, so the next
  deadline is the first step timeout again;
- cancel (a STARTED saga): the rollback starts at the awaited step, compensated itself if
  it has a compensation (it may have run), then the earlier succeeded steps, latest first;
- an action that no longer makes sense when it arrives (the saga ended, or is already
  compensating) moves nothing; a second cancel of a cancelled saga is the same request.

Every decision's events are also appended to the saga's bounded history
(``saga/history.py``), with the who and why of an operator's action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from saga_streams.messages import (
    ACTION,
    COMPENSATION,
    Command,
    CommandKind,
    OperatorAction,
    Reply,
    TimeoutElapsed,
    TransferRequested,
)
from saga_streams.saga.dsl import Workflow
from saga_streams.saga.events import (
    CompensationDispatched,
    CompensationRefused,
    MessageIgnored,
    OperatorActed,
    OperatorActionIgnored,
    RollbackStarted,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaRefused,
    SagaRolledBack,
    SagaStarted,
    StepCompensated,
    StepDispatched,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)
from saga_streams.saga.history import recorded
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import Saga, StepState

__all__ = [
    "Decision",
    "RequestRefused",
    "action_id",
    "compensation_id",
    "decide",
    "pending_command",
]

DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class RequestRefused:
    """A transfer request the orchestrator checked and refused (see ``rules.py``)."""

    request: TransferRequested
    reason: str


SagaInput = TransferRequested | RequestRefused | Reply | TimeoutElapsed | OperatorAction


@dataclass(frozen=True)
class Decision:
    saga: Saga | None  # None: nothing to store (an unknown saga's stray reply)
    commands: tuple[tuple[str, Command], ...] = ()  # (topic, command) in sending order
    events: tuple[SagaEvent, ...] = ()


def action_id(saga_id: str, step: int) -> str:
    return f"{saga_id}-{step}"


def compensation_id(saga_id: str, step: int) -> str:
    return f"{saga_id}-{step}-undo"


@dataclass(frozen=True)
class _Context:
    """What every rule needs besides the saga: its workflow, the clock, the policy."""

    workflow: Workflow
    now: int
    policy: RetryPolicy


# -- commands ---------------------------------------------------------------------------


def _command(ctx: _Context, saga: Saga, number: int, kind: CommandKind) -> tuple[str, Command]:
    step, state = ctx.workflow.step(number), saga.step(number)
    assert state.issued_at is not None
    if kind == ACTION:
        topic, name, attempt = step.action_topic, step.action, state.attempts
        command_id, undoes = action_id(saga.saga_id, number), None
    else:
        assert step.compensation is not None and step.compensation_topic is not None
        topic, name, attempt = (
            step.compensation_topic,
            step.compensation,
            state.compensation_attempts,
        )
        command_id, undoes = compensation_id(saga.saga_id, number), action_id(saga.saga_id, number)
    command = Command(
        command_id=command_id,
        saga_id=saga.saga_id,
        step=number,
        kind=kind,
        action=name,
        account=saga.account_of(step),
        amount_cents=step.amount_cents(saga.amount_cents),
        issued_at=state.issued_at,
        attempt=attempt,
        undoes=undoes,
    )
    return topic, command


def _awaited(saga: Saga) -> tuple[int, CommandKind] | None:
    """The step and kind of command the saga is waiting on, read off its steps."""
    for number, state in enumerate(saga.steps, start=1):
        if state.outcome == "PENDING":
            return number, ACTION
        if state.outcome == "COMPENSATING":
            return number, COMPENSATION
    return None


def pending_command(workflow: Workflow, saga: Saga) -> tuple[str, Command] | None:
    """The command the saga is waiting on, derived from its steps (never stored twice)."""
    awaited = _awaited(saga)
    if awaited is None:
        return None
    ctx = _Context(workflow, saga.updated_at, DEFAULT_POLICY)
    return _command(ctx, saga, *awaited)


def _dispatched(
    ctx: _Context, saga: Saga, command: Command, resent: bool
) -> StepDispatched | CompensationDispatched:
    step = ctx.workflow.step(command.step)
    if command.kind == ACTION:
        return StepDispatched(
            saga.saga_id,
            command.step,
            len(ctx.workflow.steps),
            step.label,
            step.action_topic,
            command.attempt,
            ctx.policy.max_attempts,
            resent,
        )
    return CompensationDispatched(
        saga.saga_id, command.step, step.participant, command.attempt, resent
    )


def _send(ctx: _Context, saga: Saga, number: int, kind: CommandKind) -> Decision:
    """Send (or send again) a step's action or compensation, and wait for its reply."""
    state = saga.step(number)
    if kind == ACTION:
        saga = saga.with_step(
            number,
            outcome="PENDING",
            attempts=state.attempts + 1,
            issued_at=state.issued_at if state.issued_at is not None else ctx.now,
        )
        attempt = state.attempts + 1
    else:
        saga = saga.with_step(
            number,
            outcome="COMPENSATING",
            compensation_attempts=state.compensation_attempts + 1,
        )
        attempt = state.compensation_attempts + 1
    saga = replace(saga, deadline=ctx.now + ctx.policy.delay_ms(attempt), updated_at=ctx.now)
    topic, command = _command(ctx, saga, number, kind)
    return Decision(saga, ((topic, command),), (_dispatched(ctx, saga, command, attempt > 1),))


def _resend_awaited(ctx: _Context, saga: Saga, why: str) -> Decision:
    """The awaited command once more, unchanged: its first send may have been lost."""
    awaited = _awaited(saga)
    if awaited is None:
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    topic, command = _command(ctx, saga, *awaited)
    sent = replace(_dispatched(ctx, saga, command, resent=True), redelivered=True)
    return Decision(saga, ((topic, command),), (sent,))


def _then(first: Decision, second: Decision) -> Decision:
    return Decision(second.saga, first.commands + second.commands, first.events + second.events)


# -- moves --------------------------------------------------------------------------------


def _start(ctx: _Context, request: TransferRequested) -> Decision:
    saga = Saga(
        saga_id=request.saga_id,
        workflow=ctx.workflow.name,
        amount_cents=request.amount_cents,
        status="STARTED",
        steps=tuple(StepState() for _ in ctx.workflow.steps),
        created_at=request.requested_at,
        updated_at=ctx.now,
        from_account=request.from_account,
        to_account=request.to_account,
    )
    started = SagaStarted(
        saga.saga_id,
        ctx.workflow.name,
        saga.amount_cents,
        len(saga.steps),
        tuple(saga.account_of(step) for step in ctx.workflow.steps),
    )
    return _then(Decision(saga, events=(started,)), _send(ctx, saga, 1, ACTION))


def _next_compensation(ctx: _Context, saga: Saga, below: int) -> int | None:
    """The latest step before ``below`` that succeeded and has something to undo."""
    for number in range(below - 1, 0, -1):
        if saga.step(number).outcome == "SUCCEEDED" and ctx.workflow.step(number).compensation:
            return number
    return None


def _end_rollback(ctx: _Context, saga: Saga) -> Decision:
    failed = saga.failed_step or 1
    saga = replace(saga, deadline=None)
    if failed == 1:
        # The first step failed: nothing before it to undo. If it timed out, it was
        # compensated itself, in case it ran without its reply reaching us.
        saga = replace(saga, status="FAILED")
        state = saga.step(1)
        compensated = state.outcome == "COMPENSATED"
        event: SagaEvent = SagaFailed(saga.saga_id, 1, state.error or "failed", compensated)
        return Decision(saga, events=(event,))
    saga = replace(saga, status="ROLLED_BACK")
    return Decision(saga, events=(SagaRolledBack(saga.saga_id),))


def _start_rollback(ctx: _Context, saga: Saga, failed: int, undo_failed: bool) -> Decision:
    saga = replace(saga, failed_step=failed)
    first = failed if undo_failed and ctx.workflow.step(failed).compensation else None
    first = first or _next_compensation(ctx, saga, below=failed)
    if first is None:
        return _end_rollback(ctx, saga)
    saga = replace(saga, status="COMPENSATING")
    return _then(
        Decision(saga, events=(RollbackStarted(saga.saga_id, failed),)),
        _send(ctx, saga, first, COMPENSATION),
    )


def _after_action(ctx: _Context, saga: Saga, reply: Reply) -> Decision:
    number, total = reply.step, len(ctx.workflow.steps)
    label = ctx.workflow.step(number).label
    if reply.status == "SUCCESS":
        saga = saga.with_step(number, outcome="SUCCEEDED", error=None)
        succeeded = Decision(saga, events=(StepSucceeded(saga.saga_id, number, total, label),))
        if number == total:
            saga = replace(saga, status="COMPLETED", deadline=None)
            done = SagaCompleted(saga.saga_id, saga.amount_cents)
            return _then(succeeded, Decision(saga, events=(done,)))
        return _then(succeeded, _send(ctx, saga, number + 1, ACTION))

    error = reply.error or "unknown error"
    failed = Decision(saga, events=(StepFailed(saga.saga_id, number, total, label, error),))
    saga = saga.with_step(number, outcome="FAILED", error=error)
    return _then(failed, _start_rollback(ctx, saga, number, undo_failed=False))


def _after_compensation(ctx: _Context, saga: Saga, reply: Reply) -> Decision:
    number = reply.step
    if reply.status == "FAILED":
        # Kept visible on the step; the same compensation goes out again at the deadline.
        error = reply.error or "compensation refused"
        saga = saga.with_step(number, error=error)
        return Decision(saga, events=(CompensationRefused(saga.saga_id, number, error),))
    saga = saga.with_step(number, outcome="COMPENSATED")
    participant = ctx.workflow.step(number).participant
    undone = Decision(saga, events=(StepCompensated(saga.saga_id, number, participant),))
    below = _next_compensation(ctx, saga, below=number)
    if below is None:
        return _then(undone, _end_rollback(ctx, saga))
    return _then(undone, _send(ctx, saga, below, COMPENSATION))


def _answers(reply: Reply, command: Command) -> bool:
    """Whether ``reply`` answers ``command`` itself, not another command under its id."""
    asked = (reply.step, reply.kind, reply.action, reply.account, reply.amount_cents)
    return asked == (
        command.step,
        command.kind,
        command.action,
        command.account,
        command.amount_cents,
    )


def _on_reply(ctx: _Context, saga: Saga, reply: Reply) -> Decision:
    awaited = _awaited(saga)
    expected = None if awaited is None else _command(ctx, saga, *awaited)[1]
    if expected is None or reply.command_id != expected.command_id:
        if reply.command_id == saga.last_move:
            return _resend_awaited(ctx, saga, f"reply {reply.command_id} redelivered")
        why = f"reply {reply.command_id} ({reply.status}) is not awaited"
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    if not _answers(reply, expected):
        why = (
            f"reply {reply.command_id} ({reply.status}) answers a command the saga did not "
            f"send: {reply.action} {reply.amount_cents} cents on {reply.account}"
        )
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    if reply.kind == ACTION:
        moved = _after_action(ctx, saga, reply)
    else:
        moved = _after_compensation(ctx, saga, reply)
    assert moved.saga is not None
    return replace(moved, saga=replace(moved.saga, updated_at=ctx.now, last_move=reply.command_id))


def _on_timeout(ctx: _Context, saga: Saga, timeout: TimeoutElapsed) -> Decision:
    if saga.deadline != timeout.deadline or ctx.now < timeout.deadline:
        return Decision(saga)  # the saga moved on (or the clock disagrees): nothing due
    awaited = _awaited(saga)
    if awaited is None:
        return Decision(replace(saga, deadline=None))
    number, kind = awaited
    state = saga.step(number)
    if kind == COMPENSATION or state.attempts < ctx.policy.max_attempts:
        return _send(ctx, saga, number, kind)
    error = f"TIMED_OUT: no reply after {state.attempts} attempts"
    saga = saga.with_step(number, error=error)
    total, label = len(saga.steps), ctx.workflow.step(number).label
    timed_out = Decision(
        saga, events=(StepTimedOut(saga.saga_id, number, total, label, state.attempts),)
    )
    if not ctx.workflow.step(number).compensation:
        saga = saga.with_step(number, outcome="FAILED")
    return _then(timed_out, _start_rollback(ctx, saga, number, undo_failed=True))


def _on_request(saga: Saga | None, request: TransferRequested, ctx: _Context) -> Decision:
    """A request starts its saga; a redelivered one sends the awaited command again."""
    if saga is None:
        return _start(ctx, request)
    if saga.is_terminal:
        why = "request redelivered; saga already ended"
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    return _resend_awaited(ctx, saga, "request redelivered")


def _refuse(
    saga: Saga | None, refused: RequestRefused, workflows: Mapping[str, Workflow], now: int
) -> Decision:
    """A refused request ends its saga FAILED with the reason, before any step; a saga
    already under that id is left as it is."""
    request = refused.request
    if saga is not None:
        why = f"request refused ({refused.reason}); saga already exists"
        return Decision(saga, events=(MessageIgnored(saga.saga_id, why),))
    workflow = workflows.get(request.workflow)
    saga = Saga(
        saga_id=request.saga_id,
        workflow=request.workflow,
        amount_cents=request.amount_cents,
        status="FAILED",
        steps=tuple(StepState() for _ in workflow.steps) if workflow else (),
        # The request's own time may be what was wrong with it: the refusal's is used.
        created_at=now,
        updated_at=now,
        from_account=request.from_account,
        to_account=request.to_account,
        error=refused.reason,
    )
    return Decision(saga, events=(SagaRefused(saga.saga_id, refused.reason),))


def _nothing_to_move(saga: Saga | None, message: Reply | TimeoutElapsed) -> Decision:
    """A reply or timeout for a saga that is unknown or has ended: nothing moves (a
    stale timeout is not even worth a log line)."""
    if isinstance(message, TimeoutElapsed):
        return Decision(saga)
    if saga is None:
        why = f"reply {message.command_id} for an unknown saga"
    else:
        why = f"late reply {message.command_id} ({message.status}); saga already {saga.status}"
    return Decision(saga, events=(MessageIgnored(message.saga_id, why),))


def _operator_refusal(saga: Saga, action: OperatorAction) -> str | None:
    """Why ``action`` no longer makes sense for ``saga``, or None if it does."""
    if action.action == "cancel" and saga.cancelled_by is not None:
        return f"saga already cancelled by {saga.cancelled_by}"
    if saga.is_terminal:
        return f"saga already {saga.status}"
    if action.action == "cancel" and saga.status == "COMPENSATING":
        return "saga already compensating"
    return None


def _retry(ctx: _Context, saga: Saga, number: int, kind: CommandKind) -> Decision:
    """The awaited command now, with its attempts counted afresh: the operator grants it
    a new round of sends, starting from the first step timeout."""
    if kind == ACTION:
        saga = saga.with_step(number, attempts=0)
    else:
        saga = saga.with_step(number, compensation_attempts=0)
    return _send(ctx, saga, number, kind)


def _cancel(ctx: _Context, saga: Saga, action: OperatorAction, number: int) -> Decision:
    """Roll back from the awaited step, which is compensated itself if it can be (the
    action may have run; a participant that has not seen it yet records the compensation
    and refuses the action if it comes later)."""
    why = f": {action.reason}" if action.reason else ""
    saga = replace(saga, cancelled_by=action.by).with_step(
        number, error=f"CANCELLED by {action.by}{why}"
    )
    if not ctx.workflow.step(number).compensation:
        saga = saga.with_step(number, outcome="FAILED")
    return _start_rollback(ctx, saga, number, undo_failed=True)


def _on_operator(
    saga: Saga | None,
    action: OperatorAction,
    now: int,
    workflows: Mapping[str, Workflow],
    policy: RetryPolicy,
) -> Decision:
    if saga is None:
        why = f"operator {action.action} by {action.by} for an unknown saga"
        return Decision(None, events=(MessageIgnored(action.saga_id, why),))
    refusal = _operator_refusal(saga, action)
    awaited = _awaited(saga)
    if refusal is not None or awaited is None:
        ignored = OperatorActionIgnored(
            saga.saga_id, action.action, action.by, action.reason, refusal or "nothing awaited"
        )
        return Decision(saga, events=(ignored,))
    ctx = _Context(workflows[saga.workflow], now, policy)
    number, kind = awaited
    acted = OperatorActed(saga.saga_id, action.action, action.by, action.reason, number)
    if action.action == "retry":
        moved = _retry(ctx, saga, number, kind)
    else:
        moved = _cancel(ctx, saga, action, number)
    assert moved.saga is not None
    moved = replace(moved, saga=replace(moved.saga, updated_at=now))
    return _then(Decision(saga, events=(acted,)), moved)


def _decide(
    saga: Saga | None,
    message: SagaInput,
    now: int,
    workflows: Mapping[str, Workflow],
    policy: RetryPolicy,
) -> Decision:
    if isinstance(message, OperatorAction):
        return _on_operator(saga, message, now, workflows, policy)
    if isinstance(message, RequestRefused):
        return _refuse(saga, message, workflows, now)
    if isinstance(message, TransferRequested):
        workflow = workflows.get(message.workflow)
        if workflow is None:
            why = f"unknown workflow {message.workflow!r}"
            return Decision(saga, events=(MessageIgnored(message.saga_id, why),))
        return _on_request(saga, message, _Context(workflow, now, policy))

    if saga is None or saga.is_terminal:
        return _nothing_to_move(saga, message)
    ctx = _Context(workflows[saga.workflow], now, policy)
    if isinstance(message, TimeoutElapsed):
        return _on_timeout(ctx, saga, message)
    return _on_reply(ctx, saga, message)


def decide(
    saga: Saga | None,
    message: SagaInput,
    now: int,
    workflows: Mapping[str, Workflow],
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Decision:
    """Decide the next move of one saga, and record it in the saga's history. Pure: same
    inputs, same decision."""
    decision = _decide(saga, message, now, workflows, policy)
    if decision.saga is None:
        return decision
    history = recorded(decision.saga.history, decision.events, now)
    if history is decision.saga.history:
        return decision
    return replace(decision, saga=replace(decision.saga, history=history))
