"""The pure engine: every path of the seed's two-step transfer, and redelivery."""

from __future__ import annotations

from dataclasses import replace

from saga_streams.messages import TimeoutElapsed, TransferRequested
from saga_streams.saga.engine import (
    Decision,
    RequestRefused,
    action_id,
    compensation_id,
    decide,
    pending_command,
)
from saga_streams.saga.events import (
    MessageIgnored,
    RollbackStarted,
    SagaCompleted,
    SagaFailed,
    SagaRefused,
    SagaRolledBack,
    SagaStarted,
    StepDispatched,
    StepTimedOut,
)
from saga_streams.workflows import TRANSFER, WORKFLOWS
from tests.sagatest import given_saga


def test_start_sends_step_one_deduct() -> None:
    scenario = given_saga(100_00).expect_command("service-a-deduct").expect_status("STARTED")
    command = scenario.awaited
    assert command.command_id == action_id("s1", 1)
    assert (command.kind, command.action, command.account, command.amount_cents) == (
        "ACTION",
        "deduct",
        "A",
        100_00,
    )
    assert [type(e) for e in scenario.last.events] == [SagaStarted, StepDispatched]
    scenario.expect_outcomes("PENDING", "NOT_STARTED")


def test_success_flow_completes_after_step_two() -> None:
    (
        given_saga()
        .success()
        .expect_command("service-b-add")
        .expect_outcomes("SUCCEEDED", "PENDING")
        .success()
        .expect_no_command()
        .expect_status("COMPLETED")
        .expect_outcomes("SUCCEEDED", "SUCCEEDED")
        .expect_event(SagaCompleted)
    )


def test_step_one_failure_is_failed_with_nothing_to_undo() -> None:
    scenario = (
        given_saga()
        .failure("INSUFFICIENT_FUNDS")
        .expect_no_command()
        .expect_status("FAILED")
        .expect_outcomes("FAILED", "NOT_STARTED")
        .expect_event(SagaFailed)
    )
    assert scenario.saga is not None and scenario.saga.steps[0].error == "INSUFFICIENT_FUNDS"


def test_step_two_failure_refunds_step_one_then_rolls_back() -> None:
    scenario = (
        given_saga(50_00)
        .success()
        .failure("Account verification failed")
        .expect_command("service-a-refund")
        .expect_status("COMPENSATING")
        .expect_outcomes("COMPENSATING", "FAILED")
        .expect_event(RollbackStarted)
    )
    refund = scenario.awaited
    assert refund.command_id == compensation_id("s1", 1)
    assert refund.undoes == action_id("s1", 1)
    assert (refund.kind, refund.action, refund.amount_cents) == ("COMPENSATION", "refund", 50_00)
    (
        scenario.success()
        .expect_no_command()
        .expect_status("ROLLED_BACK")
        .expect_outcomes("COMPENSATED", "FAILED")
        .expect_event(SagaRolledBack)
    )


def test_duplicate_reply_is_ignored_and_changes_nothing() -> None:
    scenario = given_saga().success()
    first_reply = scenario.reply_to(scenario.sent[0][1], "SUCCESS")
    before = scenario.saga
    # The reply that made the latest move comes again: resend the awaited command
    # (same id), in case the first send was lost with a crashed worker.
    scenario.deliver(first_reply).expect_command("service-b-add")
    assert scenario.saga == before
    assert scenario.awaited.command_id == action_id("s1", 2)


def test_late_reply_after_terminal_never_moves_the_saga_back() -> None:
    scenario = given_saga().success().success().expect_status("COMPLETED")
    add = scenario.sent[1][1]
    for status in ("FAILED", "SUCCESS"):
        scenario.deliver(scenario.reply_to(add, status))
        scenario.expect_status("COMPLETED").expect_no_command().expect_event(MessageIgnored)


def test_reply_for_a_command_not_awaited_is_ignored() -> None:
    scenario = given_saga()
    deduct = scenario.awaited
    stray = scenario.reply_to(deduct, "SUCCESS")
    stray = type(stray)(**{**stray.__dict__, "command_id": "s1-9", "step": 1})
    before = scenario.saga
    scenario.deliver(stray).expect_no_command().expect_event(MessageIgnored)
    assert scenario.saga == before


def test_reply_for_an_unknown_saga_is_ignored_without_state() -> None:
    scenario = given_saga()
    reply = scenario.reply_to(scenario.awaited, "SUCCESS")
    decision = decide(None, reply, 5, WORKFLOWS)
    assert decision.saga is None and decision.commands == ()
    assert isinstance(decision.events[0], MessageIgnored)


def test_redelivered_request_resends_the_awaited_command_only() -> None:
    scenario = given_saga()
    scenario.deliver(scenario.request).expect_command("service-a-deduct")
    assert scenario.awaited.command_id == action_id("s1", 1)
    event = scenario.last.events[0]
    assert isinstance(event, StepDispatched) and event.resent
    # Once ended, a redelivered request does nothing at all.
    scenario.success().success().deliver(scenario.request).expect_no_command()


def test_pending_command_is_derived_from_the_steps() -> None:
    scenario = given_saga().success().failure()
    assert scenario.saga is not None
    pending = pending_command(TRANSFER, scenario.saga)
    assert pending is not None and pending[0] == "service-a-refund"


def test_a_refused_compensation_keeps_the_saga_compensating() -> None:
    scenario = given_saga().success().failure()
    refund = scenario.awaited
    scenario.deliver(scenario.reply_to(refund, "FAILED", "ledger unavailable"))
    scenario.expect_status("COMPENSATING").expect_no_command()
    assert scenario.saga is not None and scenario.saga.steps[0].error == "ledger unavailable"
    # The same compensation, answered later, still completes the rollback.
    scenario.deliver(scenario.reply_to(refund, "SUCCESS")).expect_status("ROLLED_BACK")


def test_unknown_workflow_request_is_ignored() -> None:
    scenario = given_saga()
    request = type(scenario.request)("s2", "no-such-flow", 100, 1)
    decision = decide(None, request, 5, WORKFLOWS)
    assert decision.saga is None and decision.commands == ()


# -- timeouts and retries (policy: 1 s, doubling, 3 attempts, at most 3 s) ---------------


def test_timeout_resends_the_same_command_waiting_twice_as_long() -> None:
    scenario = given_saga()
    first = scenario.awaited
    assert scenario.saga is not None and scenario.saga.deadline == scenario.clock + 1_000
    scenario.timeout().expect_command("service-a-deduct").expect_status("STARTED")
    again = scenario.awaited
    assert (again.command_id, again.attempt, again.issued_at) == (
        first.command_id,
        2,
        first.issued_at,
    )
    assert scenario.saga is not None and scenario.saga.deadline == scenario.clock + 2_000
    assert scenario.saga.steps[0].attempts == 2
    # The reply to any attempt moves the saga on.
    scenario.success().expect_command("service-b-add")


def test_step_two_silent_after_max_attempts_is_undone_itself_then_step_one() -> None:
    scenario = given_saga().success()
    scenario.timeout().timeout().expect_command("service-b-add")
    assert scenario.awaited.attempt == 3
    scenario.timeout().expect_command("service-b-remove").expect_status("COMPENSATING")
    scenario.expect_event(StepTimedOut)
    assert scenario.saga is not None
    assert scenario.saga.steps[1].error == "TIMED_OUT: no reply after 3 attempts"
    remove = scenario.awaited
    assert (remove.undoes, remove.issued_at) == (action_id("s1", 2), scenario.sent[1][1].issued_at)
    # B never saw the add: it voids it and acknowledges; then A is refunded.
    scenario.success().expect_command("service-a-refund").expect_outcomes(
        "COMPENSATING", "COMPENSATED"
    )
    scenario.success().expect_status("ROLLED_BACK").expect_outcomes("COMPENSATED", "COMPENSATED")
    assert scenario.saga is not None and scenario.saga.deadline is None


def test_step_one_silent_is_compensated_in_case_it_ran_and_ends_failed() -> None:
    scenario = given_saga().timeout().timeout().timeout().expect_command("service-a-refund")
    scenario.success().expect_status("FAILED").expect_event(SagaFailed)
    failed = next(e for e in scenario.last.events if isinstance(e, SagaFailed))
    assert failed.compensated and failed.error.startswith("TIMED_OUT")


def test_a_late_reply_after_giving_up_is_ignored() -> None:
    scenario = given_saga().timeout().timeout()
    deduct = scenario.awaited
    scenario.timeout().expect_command("service-a-refund")
    scenario.deliver(scenario.reply_to(deduct, "SUCCESS")).expect_no_command()
    scenario.expect_event(MessageIgnored).expect_status("COMPENSATING")


def test_compensation_is_retried_forever_with_capped_backoff() -> None:
    scenario = given_saga().success().failure().expect_command("service-a-refund")
    waits = []
    for _ in range(6):
        before = scenario.clock
        scenario.timeout().expect_command("service-a-refund").expect_status("COMPENSATING")
        assert scenario.saga is not None and scenario.saga.deadline is not None
        waits.append(scenario.saga.deadline - scenario.clock)
        assert scenario.clock > before
    assert waits == [2_000, 3_000, 3_000, 3_000, 3_000, 3_000]
    assert scenario.saga is not None and scenario.saga.steps[0].compensation_attempts == 7
    scenario.success().expect_status("ROLLED_BACK")


def test_refused_compensation_waits_for_its_deadline_then_goes_again() -> None:
    scenario = given_saga().success().failure()
    refund = scenario.awaited
    scenario.deliver(scenario.reply_to(refund, "FAILED", "LEDGER_EXPIRED: cannot tell"))
    scenario.expect_no_command().expect_status("COMPENSATING")
    assert (
        scenario.saga is not None and scenario.saga.steps[0].error == "LEDGER_EXPIRED: cannot tell"
    )
    scenario.timeout().expect_command("service-a-refund")


def test_stale_or_pointless_timeouts_change_nothing() -> None:
    scenario = given_saga()
    assert scenario.saga is not None
    stale = TimeoutElapsed("s1", scenario.saga.deadline - 1)  # type: ignore[operator]
    before = scenario.saga
    scenario.deliver(stale).expect_no_command()
    assert scenario.saga == before and scenario.last.events == ()
    early = TimeoutElapsed("s1", before.deadline)  # type: ignore[arg-type]
    scenario.clock = 0
    scenario.deliver(early).expect_no_command()
    assert scenario.saga == before
    scenario.success().success().expect_status("COMPLETED")
    assert decide(scenario.saga, TimeoutElapsed("s1", 1), 10**12, WORKFLOWS).commands == ()
    assert decide(None, TimeoutElapsed("s9", 1), 10**12, WORKFLOWS) == Decision(None)


def test_a_refused_request_ends_failed_before_any_step() -> None:
    request = TransferRequested("s9", "transfer", -50_00, requested_at=1)
    decision = decide(None, RequestRefused(request, "amount must be greater than 0"), 5, WORKFLOWS)
    assert decision.saga is not None and decision.commands == ()
    assert (decision.saga.status, decision.saga.error) == (
        "FAILED",
        "amount must be greater than 0",
    )
    assert [s.outcome for s in decision.saga.steps] == ["NOT_STARTED", "NOT_STARTED"]
    assert [type(e) for e in decision.events] == [SagaRefused]

    # Later inputs for it change nothing: it is terminal.
    again = decide(decision.saga, RequestRefused(request, "again"), 6, WORKFLOWS)
    assert again.saga == decision.saga and isinstance(again.events[0], MessageIgnored)


def test_a_refusal_never_touches_an_existing_saga() -> None:
    scenario = given_saga()
    assert scenario.saga is not None
    refused = RequestRefused(replace(scenario.request, amount_cents=-1), "bad amount")
    decision = decide(scenario.saga, refused, 99_000, WORKFLOWS)
    assert decision.saga == scenario.saga and decision.commands == ()


def test_a_reply_that_repeats_another_command_under_the_awaited_id_is_ignored() -> None:
    scenario = given_saga(100_00)
    forged = replace(scenario.awaited, account="A-7", amount_cents=-100_00)
    scenario.deliver(scenario.reply_to(forged, "FAILED", "INVALID_AMOUNT"))
    scenario.expect_no_command().expect_status("STARTED").expect_event(MessageIgnored)
    scenario.success().expect_command("service-b-add")
