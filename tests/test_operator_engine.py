"""The engine's history of a saga, and the operator's retry and cancel, without Kafka."""

from __future__ import annotations

from saga_streams.messages import OperatorAction
from saga_streams.saga.engine import RequestRefused, decide
from saga_streams.saga.events import OperatorActed, OperatorActionIgnored
from saga_streams.saga.history import CAP, DROPPED, HEAD, HistoryEntry, bounded
from saga_streams.saga.state import Saga
from saga_streams.workflows import TRANSFER, TRANSFER_WITH_FEE, WORKFLOWS
from tests.sagatest import POLICY, SagaScenario, given_saga


def story(scenario: SagaScenario) -> list[tuple[str, int | None]]:
    assert scenario.saga is not None
    return [(entry.event, entry.step) for entry in scenario.saga.history]


def details(scenario: SagaScenario) -> list[str]:
    assert scenario.saga is not None
    return [entry.detail for entry in scenario.saga.history]


# -- history ------------------------------------------------------------------------------


def test_history_tells_a_completed_saga_oldest_first() -> None:
    scenario = given_saga(20_50).success().success().expect_status("COMPLETED")
    assert story(scenario) == [
        ("started", None),
        ("command_sent", 1),
        ("step_succeeded", 1),
        ("command_sent", 2),
        ("step_succeeded", 2),
        ("finished", None),
    ]
    assert details(scenario)[0] == "transfer, $20.50, 2 steps"
    assert details(scenario)[1] == "service-a.deduct sent, attempt 1 of 3"
    assert details(scenario)[-1] == "COMPLETED"
    assert scenario.saga is not None
    times = [entry.at for entry in scenario.saga.history]
    assert times == sorted(times) and times[0] == 1_000


def test_history_tells_a_failure_and_its_rollback() -> None:
    scenario = given_saga().success().failure("Account verification failed").success()
    scenario.expect_status("ROLLED_BACK")
    assert story(scenario) == [
        ("started", None),
        ("command_sent", 1),
        ("step_succeeded", 1),
        ("command_sent", 2),
        ("step_failed", 2),
        ("rollback_started", 2),
        ("compensation_sent", 1),
        ("compensated", 1),
        ("finished", None),
    ]
    assert details(scenario)[4] == "service-b.add: Account verification failed"
    assert details(scenario)[-1] == "ROLLED_BACK"


def test_history_shows_timeouts_resends_and_giving_up() -> None:
    scenario = given_saga().success().timeout().timeout().timeout()
    assert story(scenario)[3:] == [
        ("command_sent", 2),
        ("resent", 2),
        ("resent", 2),
        ("timed_out", 2),
        ("rollback_started", 2),
        ("compensation_sent", 2),
    ]
    assert details(scenario)[5] == "no reply in time: service-b.add sent again, attempt 3 of 3"
    assert details(scenario)[6] == "no reply after 3 attempts"


def test_history_records_a_refusal() -> None:
    request = given_saga().request
    decision = decide(None, RequestRefused(request, "unknown account 'Z'"), 5, WORKFLOWS)
    assert decision.saga is not None
    assert [e.to_dict() for e in decision.saga.history] == [
        {"at": 5, "event": "refused", "step": None, "detail": "unknown account 'Z'"}
    ]


def test_a_saga_that_retries_forever_keeps_a_bounded_history() -> None:
    # A compensation is never given up: its history would grow with every resend.
    scenario = given_saga().success().failure()
    for _ in range(200):
        scenario.timeout()
    assert scenario.saga is not None
    history = scenario.saga.history
    assert len(history) == CAP
    assert [e.event for e in history[:HEAD]] == [
        "started",
        "command_sent",
        "step_succeeded",
        "command_sent",
        "step_failed",
    ]
    marker = history[HEAD]
    assert marker.event == DROPPED and marker.step is None
    # 7 entries before the timeouts, one resend per timeout; CAP - 1 of them are shown.
    assert marker.dropped == 7 + 200 - (CAP - 1)
    assert marker.detail == f"{marker.dropped} entries dropped to keep the history short"
    assert all(e.event == "compensation_sent" for e in history[HEAD + 1 :])
    assert history[-1].detail == "no reply in time: service-a compensation sent, attempt 201"
    # Kept in the table value: the history survives a restart of the worker.
    assert Saga.from_dict(scenario.saga.to_dict()) == scenario.saga


def test_bounded_keeps_the_head_a_count_and_the_latest() -> None:
    entries = tuple(HistoryEntry(n, "resent", 1, f"#{n}") for n in range(12))
    cut = bounded(entries, cap=6, head=2)
    dropped = "7 entries dropped to keep the history short"
    assert [e.detail for e in cut] == ["#0", "#1", dropped, "#9", "#10", "#11"]
    assert cut[2].dropped == 7 and cut[2].at == 8  # the time of the latest entry dropped
    again = bounded((*cut, HistoryEntry(12, "resent", 1, "#12")), cap=6, head=2)
    assert [e.detail for e in again][3:] == ["#10", "#11", "#12"]
    assert again[2].dropped == 8 and again[2].at == 9
    assert bounded(entries[:6], cap=6, head=2) == entries[:6]


# -- retry --------------------------------------------------------------------------------


def test_retry_resends_the_awaited_command_and_resets_the_backoff() -> None:
    scenario = given_saga().success().timeout().timeout()
    assert scenario.saga is not None and scenario.saga.step(2).attempts == 3
    before = scenario.awaited
    scenario.operator("retry", "B is back").expect_command("service-b-add")
    assert scenario.last.commands[0][1].command_id == before.command_id
    assert scenario.saga is not None
    assert scenario.saga.step(2).attempts == 1
    assert scenario.saga.deadline == scenario.clock + POLICY.step_timeout_ms
    assert story(scenario)[-2:] == [("operator_action", 2), ("command_sent", 2)]
    assert details(scenario)[-2] == "retry by alice: B is back"
    scenario.expect_event(OperatorActed).expect_status("STARTED")
    # The step gets its full round of sends again before it is given up.
    scenario.timeout().timeout().expect_command("service-b-add").expect_status("STARTED")
    scenario.success().expect_status("COMPLETED")


def test_retry_of_a_compensating_saga_resends_the_compensation() -> None:
    scenario = given_saga().success().failure().timeout().timeout()
    scenario.operator("retry").expect_command("service-a-refund")
    assert scenario.saga is not None and scenario.saga.step(1).compensation_attempts == 1
    assert details(scenario)[-2] == "retry by alice (no reason given)"
    scenario.success().expect_status("ROLLED_BACK")


def test_retry_of_an_ended_saga_is_ignored_and_recorded() -> None:
    scenario = given_saga().success().success()
    before = scenario.saga
    scenario.operator("retry", "just in case").expect_no_command().expect_status("COMPLETED")
    scenario.expect_event(OperatorActionIgnored)
    assert scenario.saga is not None and before is not None
    assert scenario.saga.steps == before.steps and scenario.saga.updated_at == before.updated_at
    assert story(scenario)[-1] == ("operator_action_ignored", None)
    assert details(scenario)[-1] == (
        "retry by alice: just in case; ignored: saga already COMPLETED"
    )


# -- cancel -------------------------------------------------------------------------------


def test_cancel_at_step_one_compensates_it_and_ends_failed() -> None:
    scenario = given_saga().operator("cancel", "wrong amount")
    scenario.expect_command("service-a-refund").expect_status("COMPENSATING")
    scenario.success().expect_status("FAILED").expect_outcomes("COMPENSATED", "NOT_STARTED")
    assert scenario.saga is not None
    assert scenario.saga.cancelled_by == "alice"
    assert scenario.saga.step(1).error == "CANCELLED by alice: wrong amount"
    assert story(scenario) == [
        ("started", None),
        ("command_sent", 1),
        ("operator_action", 1),
        ("rollback_started", 1),
        ("compensation_sent", 1),
        ("compensated", 1),
        ("finished", None),
    ]
    assert details(scenario)[2] == "cancel by alice: wrong amount"
    assert details(scenario)[-1] == "FAILED: CANCELLED by alice: wrong amount"


def test_cancel_at_step_two_compensates_it_then_step_one_and_rolls_back() -> None:
    scenario = given_saga().success().timeout().operator("cancel", "B is down")
    scenario.expect_command("service-b-remove").expect_status("COMPENSATING")
    scenario.success().expect_command("service-a-refund")
    scenario.success().expect_status("ROLLED_BACK").expect_outcomes("COMPENSATED", "COMPENSATED")
    assert story(scenario)[5:] == [
        ("operator_action", 2),
        ("rollback_started", 2),
        ("compensation_sent", 2),
        ("compensated", 2),
        ("compensation_sent", 1),
        ("compensated", 1),
        ("finished", None),
    ]


def test_cancel_at_the_last_step_of_three_undoes_all_three_latest_first() -> None:
    scenario = SagaScenario(TRANSFER_WITH_FEE, 100_00).success().success()
    scenario.operator("cancel").expect_command("service-c-return")
    scenario.success().expect_command("service-b-remove")
    scenario.success().expect_command("service-a-refund")
    scenario.success().expect_status("ROLLED_BACK")
    scenario.expect_outcomes("COMPENSATED", "COMPENSATED", "COMPENSATED")


def test_a_late_reply_to_the_cancelled_action_is_ignored() -> None:
    scenario = given_saga().success()
    action = scenario.awaited
    scenario.operator("cancel").expect_command("service-b-remove")
    scenario.deliver(scenario.reply_to(action, "SUCCESS")).expect_no_command()
    scenario.expect_status("COMPENSATING")


def test_a_second_cancel_is_the_same_request_and_moves_nothing() -> None:
    scenario = given_saga().success().operator("cancel", "first")
    saga = scenario.saga
    scenario.operator("cancel", "second", by="bob").expect_no_command()
    scenario.expect_event(OperatorActionIgnored).expect_status("COMPENSATING")
    assert scenario.saga is not None and saga is not None
    assert scenario.saga.steps == saga.steps and scenario.saga.cancelled_by == "alice"
    assert details(scenario)[-1] == (
        "cancel by bob: second; ignored: saga already cancelled by alice"
    )


def test_cancel_of_a_saga_already_compensating_or_ended_is_ignored() -> None:
    compensating = given_saga().success().failure().operator("cancel")
    compensating.expect_no_command().expect_event(OperatorActionIgnored)
    assert details(compensating)[-1].endswith("ignored: saga already compensating")
    assert compensating.saga is not None and compensating.saga.cancelled_by is None
    ended = given_saga().success().success().operator("cancel").expect_no_command()
    ended.expect_status("COMPLETED").expect_event(OperatorActionIgnored)


def test_an_action_for_an_unknown_saga_stores_nothing() -> None:
    action = OperatorAction("nope", "cancel", "alice", 1_000, None)
    decision = decide(None, action, 1_000, {TRANSFER.name: TRANSFER}, POLICY)
    assert decision.saga is None and decision.commands == ()
