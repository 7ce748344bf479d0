"""The seed's log lines, rendered from engine events.

A reader of the seed expects its banners and emoji. Every record names its saga on its
first line (in a banner's title, or at the end of the line), so ``grep -A4 <saga id>``
follows one saga through the orchestrator's log.
"""

from __future__ import annotations

from saga_streams.money import format_dollars
from saga_streams.saga.dsl import Registry
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

__all__ = ["render"]

RULE = "=" * 60


def _banner(*lines: str) -> str:
    return "\n".join((RULE, *lines, RULE))


def _party(participant: str, account: str) -> str:
    # "service-a" -> "Account A (Service A)", as the seed writes it.
    return f"Account {account} ({participant.replace('-', ' ').title()})"


def _started(event: SagaStarted, workflows: Registry) -> str:
    workflow = workflows[event.workflow]
    (first, *rest), (first_account, *accounts) = workflow.steps, event.accounts
    lines = [
        f"🚀 STARTING SAGA: {event.saga_id}",
        f"   Transfer: {format_dollars(event.amount_cents)}",
        f"   From: {_party(first.participant, first_account)}",
    ]
    for index, (step, account) in enumerate(zip(rest, accounts, strict=True)):
        party = _party(step.participant, account)
        if index == 0:
            lines.append(f"   To: {party}")
        elif step.amount == "fee":
            fee = format_dollars(step.amount_cents(event.amount_cents))
            lines.append(f"   Fee: {fee} to {party}")
        else:
            lines.append(f"   Then: {step.label} on {party}")
    if workflow.name != workflows.default:
        lines.append(f"   Workflow: {workflow.name}")
    return _banner(*lines, f"   Steps: {event.total_steps}")


def _participant(label: str) -> str:
    return label.split(".")[0]  # service-a.deduct -> service-a


def _dispatched(event: StepDispatched, tag: str) -> str:
    if event.resent:
        return (
            f"🔁 STEP {event.step}/{event.total_steps}: {event.label} sent again "
            f"(attempt {event.attempt}/{event.max_attempts}) {tag}"
        )
    return (
        f"⏩ STEP {event.step}/{event.total_steps}: {event.label} {tag}\n"
        f"   Sending command to {_participant(event.label)}..."
    )


def _compensating(event: CompensationDispatched, tag: str) -> str:
    again = f" sent again (attempt {event.attempt})" if event.resent else ""
    icon = "🔁" if event.resent else "🔄"
    return f"{icon} COMPENSATING STEP {event.step}: {event.participant}{again} {tag}"


def _failed(event: SagaFailed, tag: str) -> str:
    return _banner(
        f"❌ SAGA FAILED: {event.saga_id}",
        f"   Failed at step {event.failed_step}: {event.error}",
        "   Step 1 compensated in case it ran" if event.compensated else "   Nothing to roll back",
    )


def _step_line(event: SagaEvent, tag: str) -> str | None:
    """The one-line records of a step's progress, or None for any other event."""
    match event:
        case StepTimedOut():
            return (
                f"⏰ Step {event.step} TIMED OUT: no reply from {_participant(event.label)} "
                f"after {event.attempts} attempts {tag}"
            )
        case StepSucceeded():
            return f"✅ Step {event.step} SUCCESS from {_participant(event.label)} {tag}"
        case StepFailed():
            who = _participant(event.label)
            return f"❌ Step {event.step} FAILED from {who} {tag}\n   Error: {event.error}"
        case StepCompensated():
            return f"↩️  Step {event.step} COMPENSATED by {event.participant} {tag}"
        case CompensationRefused():
            return f"⛔ Compensation of step {event.step} refused {tag}\n   Error: {event.error}"
        case MessageIgnored():
            return f"⏭️  Ignored: {event.reason} {tag}"
        case OperatorActed():
            why = f": {event.reason}" if event.reason else ""
            return f"🧑‍🔧 Operator {event.action} by {event.by} at step {event.step}{why} {tag}"
        case OperatorActionIgnored():
            return f"⏭️  Operator {event.action} by {event.by} ignored: {event.why} {tag}"
    return None


def _banner_of(event: SagaEvent) -> str | None:
    """The banners that open or end a saga's story, or None for any other event."""
    match event:
        case RollbackStarted():
            return _banner(
                f"⚠️  SAGA FAILED: {event.saga_id}",
                f"   Failed at step {event.failed_step}",
                "   Starting ROLLBACK...",
            )
        case SagaCompleted():
            return _banner(
                f"✅ SAGA COMPLETED: {event.saga_id}",
                f"   Amount: {format_dollars(event.amount_cents)}",
                "   All steps successful!",
            )
        case SagaRolledBack():
            return _banner(f"❌ SAGA ROLLED BACK: {event.saga_id}", "   All changes reverted")
        case SagaRefused():
            return _banner(
                f"🚫 SAGA REFUSED: {event.saga_id}",
                f"   Reason: {event.reason}",
                "   No step was started",
            )
    return None


def render(event: SagaEvent, workflows: Registry) -> str:
    """One log record per event, in the seed's words. Its first line names the saga (a
    banner's in its title, any other record at its end), so ``grep -A4 <saga id>``
    follows one saga; ``workflows``: the registry the saga's workflow is declared in."""
    tag = f"[saga {event.saga_id}]"
    if isinstance(event, SagaStarted):
        return _started(event, workflows)
    if isinstance(event, StepDispatched):
        return _dispatched(event, tag)
    if isinstance(event, CompensationDispatched):
        return _compensating(event, tag)
    if isinstance(event, SagaFailed):
        return _failed(event, tag)
    line = _step_line(event, tag) or _banner_of(event)
    if line is None:
        raise AssertionError(f"no log line for {event!r}")
    return line
