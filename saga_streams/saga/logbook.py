"""The seed's log lines, rendered from engine events.

A reader of the seed expects its banners and emoji; every line here also names the saga,
so ``grep <saga id>`` follows one saga through the orchestrator's log.
"""

from __future__ import annotations

from saga_streams.money import format_dollars
from saga_streams.saga.events import (
    CompensationDispatched,
    CompensationRefused,
    MessageIgnored,
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
from saga_streams.saga.workflow import DEFAULT_WORKFLOW, WORKFLOWS

__all__ = ["render"]

RULE = "=" * 60


def _banner(*lines: str) -> str:
    return "\n".join((RULE, *lines, RULE))


def _party(participant: str, account: str) -> str:
    # "service-a" -> "Account A (Service A)", as the seed writes it.
    return f"Account {account} ({participant.replace('-', ' ').title()})"


def render(event: SagaEvent) -> str:
    """One log record per event; banners span lines, each other record is one line."""
    tag = f"[saga {event.saga_id}]"
    match event:
        case SagaStarted():
            workflow = WORKFLOWS[event.workflow]
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
            if workflow.name != DEFAULT_WORKFLOW:
                lines.append(f"   Workflow: {workflow.name}")
            return _banner(*lines, f"   Steps: {event.total_steps}")
        case StepDispatched(resent=False):
            participant = event.label.split(".")[0]
            return (
                f"⏩ STEP {event.step}/{event.total_steps}: {event.label} {tag}\n"
                f"   Sending command to {participant}..."
            )
        case StepDispatched(resent=True):
            return (
                f"🔁 STEP {event.step}/{event.total_steps}: {event.label} sent again "
                f"(attempt {event.attempt}/{event.max_attempts}) {tag}"
            )
        case StepTimedOut():
            participant = event.label.split(".")[0]
            return (
                f"⏰ Step {event.step} TIMED OUT: no reply from {participant} "
                f"after {event.attempts} attempts {tag}"
            )
        case StepSucceeded():
            participant = event.label.split(".")[0]
            return f"✅ Step {event.step} SUCCESS from {participant} {tag}"
        case StepFailed():
            participant = event.label.split(".")[0]
            return f"❌ Step {event.step} FAILED from {participant} {tag}\n   Error: {event.error}"
        case RollbackStarted():
            return _banner(
                f"⚠️  SAGA FAILED: {event.saga_id}",
                f"   Failed at step {event.failed_step}",
                "   Starting ROLLBACK...",
            )
        case CompensationDispatched(resent=False):
            return f"🔄 COMPENSATING STEP {event.step}: {event.participant} {tag}"
        case CompensationDispatched(resent=True):
            return (
                f"🔁 COMPENSATING STEP {event.step}: {event.participant} sent again "
                f"(attempt {event.attempt}) {tag}"
            )
        case StepCompensated():
            return f"↩️  Step {event.step} COMPENSATED by {event.participant} {tag}"
        case CompensationRefused():
            return f"⛔ Compensation of step {event.step} refused {tag}\n   Error: {event.error}"
        case SagaCompleted():
            return _banner(
                f"✅ SAGA COMPLETED: {event.saga_id}",
                f"   Amount: {format_dollars(event.amount_cents)}",
                "   All steps successful!",
            )
        case SagaRolledBack():
            return _banner(f"❌ SAGA ROLLED BACK: {event.saga_id}", "   All changes reverted")
        case SagaFailed():
            return _banner(
                f"❌ SAGA FAILED: {event.saga_id}",
                f"   Failed at step {event.failed_step}: {event.error}",
                "   Step 1 compensated in case it ran"
                if event.compensated
                else "   Nothing to roll back",
            )
        case SagaRefused():
            return _banner(
                f"🚫 SAGA REFUSED: {event.saga_id}",
                f"   Reason: {event.reason}",
                "   No step was started",
            )
        case MessageIgnored():
            return f"⏭️  Ignored: {event.reason} {tag}"
    raise AssertionError(f"no log line for {event!r}")
