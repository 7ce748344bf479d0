"""The seed's log lines: every event the engine reports has a record, and each record
names its saga on its first line."""

from __future__ import annotations

from saga_streams.saga.engine import RequestRefused, decide
from saga_streams.saga.events import SagaEvent
from saga_streams.saga.logbook import render
from saga_streams.workflows import TRANSFER_WITH_FEE, WORKFLOWS
from tests.sagatest import given_saga


def events_of_every_kind() -> list[SagaEvent]:
    events: list[SagaEvent] = []
    fee = given_saga(100_00, TRANSFER_WITH_FEE)
    for step in (fee.success, fee.success, lambda: fee.failure("Fee ledger unavailable")):
        events += fee.last.events
        step()
    events += fee.last.events
    fee.deliver(fee.reply_to(fee.awaited, "FAILED", "busy"))  # a compensation refused
    events += fee.last.events
    fee.timeout().success().success()  # sent again, then undone to the end
    events += fee.last.events
    done = given_saga().success().success()
    events += done.last.events
    silent = given_saga().timeout().timeout().timeout()
    events += silent.last.events
    silent.success()
    events += silent.last.events
    refused = decide(
        None, RequestRefused(fee.request, "amount must be greater than 0"), 1, WORKFLOWS
    )
    return events + list(refused.events)


def test_every_event_kind_is_rendered_with_its_saga_on_the_first_line() -> None:
    events = events_of_every_kind()
    kinds = {type(e).__name__ for e in events}
    assert kinds >= {
        "SagaStarted", "StepDispatched", "StepSucceeded", "StepFailed", "StepTimedOut",
        "RollbackStarted", "CompensationDispatched", "StepCompensated", "CompensationRefused",
        "SagaCompleted", "SagaRolledBack", "SagaFailed", "SagaRefused",
    }  # fmt: skip
    for event in events:
        record = render(event, WORKFLOWS)
        first = record.splitlines()[1 if record.startswith("=") else 0]
        assert event.saga_id in first, record


def test_the_fee_workflow_names_itself_and_the_fee() -> None:
    [started] = [e for e in events_of_every_kind() if type(e).__name__ == "SagaStarted"][:1]
    record = render(started, WORKFLOWS)
    assert "   Fee: $1 to Account C (Service C)" in record
    assert "   Workflow: transfer-with-fee" in record
