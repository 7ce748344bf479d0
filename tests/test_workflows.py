"""Workflows as declarations: the builder, start-up validation, and the engine on N steps.

For every N and every failure point, the compensations sent are exactly the completed
steps' compensations, latest first; a property test checks the same over random shapes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_streams.config import load_settings
from saga_streams.roles import PARTICIPANTS, check_workflows
from saga_streams.saga.dsl import (
    FROM_ACCOUNT,
    Registry,
    Step,
    Workflow,
    WorkflowError,
    fee_cents,
    saga,
)
from saga_streams.saga.engine import pending_command
from saga_streams.saga.policy import RetryPolicy
from saga_streams.workflows import TRANSFER, TRANSFER_WITH_FEE, WORKFLOWS
from tests.sagatest import SagaScenario


def chain(steps: int, undoable: tuple[bool, ...] | None = None) -> Workflow:
    """A workflow of ``steps`` participants p1..pN; step k is undoable unless told."""
    builder = saga(f"chain-{steps}")
    for number in range(1, steps + 1):
        builder = builder.step(f"p{number}", account=f"P{number}").invoke(
            "do", topic=f"p{number}-do"
        )
        if undoable is None or undoable[number - 1]:
            builder = builder.with_compensation("undo", topic=f"p{number}-undo")
    return builder.build()


def run_until_failure(workflow: Workflow, failing_step: int | None) -> SagaScenario:
    scenario = SagaScenario(workflow, 10_00)
    for number in range(1, len(workflow.steps) + 1):
        scenario.expect_command(f"p{number}-do")
        if number == failing_step:
            return scenario.failure("no")
        scenario.success()
    return scenario


def undo_topics_in_order(scenario: SagaScenario) -> list[str]:
    """Acknowledge each compensation as it comes; the order they were sent in."""
    sent: list[str] = []
    for _ in range(20):  # bounded: a workflow here has at most 20 steps
        if not scenario.last.commands:
            break
        topic, _command = scenario.last.commands[-1]
        assert topic.endswith("-undo"), topic
        sent.append(topic)
        scenario.success()
    return sent


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_every_failure_point_compensates_the_completed_steps_in_reverse(steps: int) -> None:
    workflow = chain(steps)
    run_until_failure(workflow, None).expect_status("COMPLETED")
    for failing in range(1, steps + 1):
        scenario = run_until_failure(workflow, failing)
        undone = undo_topics_in_order(scenario)
        assert undone == [f"p{n}-undo" for n in range(failing - 1, 0, -1)]
        scenario.expect_status("FAILED" if failing == 1 else "ROLLED_BACK")
        assert scenario.saga is not None
        outcomes = [s.outcome for s in scenario.saga.steps]
        assert outcomes == (
            ["COMPENSATED"] * (failing - 1) + ["FAILED"] + ["NOT_STARTED"] * (steps - failing)
        )


@settings(max_examples=200, deadline=None)
@given(
    undoable=st.lists(st.booleans(), min_size=1, max_size=8),
    data=st.data(),
)
def test_property_rollback_undoes_exactly_the_undoable_completed_steps(
    undoable: list[bool], data: st.DataObject
) -> None:
    steps = len(undoable)
    failing = data.draw(st.integers(min_value=1, max_value=steps + 1), label="failing step")
    workflow = chain(steps, tuple(undoable))
    scenario = run_until_failure(workflow, failing if failing <= steps else None)
    if failing > steps:
        scenario.expect_status("COMPLETED")
        return
    undone = undo_topics_in_order(scenario)
    expected = [f"p{n}-undo" for n in range(failing - 1, 0, -1) if undoable[n - 1]]
    assert undone == expected
    scenario.expect_status("ROLLED_BACK" if failing > 1 else "FAILED")


def test_the_fee_workflow_moves_amount_plus_fee_amount_and_fee() -> None:
    scenario = SagaScenario(TRANSFER_WITH_FEE, 100_00)
    deduct = scenario.awaited
    assert (deduct.action, deduct.amount_cents) == ("deduct", 101_00)
    add = scenario.success().awaited
    assert (add.action, add.amount_cents) == ("add", 100_00)
    collect = scenario.success().awaited
    assert (collect.action, collect.account, collect.amount_cents) == ("collect", "C", 1_00)
    # A failure at step 3 undoes step 2 then step 1, each with its own amount.
    scenario.failure("Fee ledger unavailable").expect_command("service-b-remove")
    assert scenario.awaited.amount_cents == 100_00
    scenario.success().expect_command("service-a-refund")
    assert scenario.awaited.amount_cents == 101_00
    scenario.success().expect_status("ROLLED_BACK")


def test_the_parties_of_a_transfer_are_the_accounts_its_commands_name() -> None:
    scenario = SagaScenario(TRANSFER_WITH_FEE, 10_00, parties=("A-7", "B-3"))
    assert scenario.awaited.account == "A-7"
    assert scenario.success().awaited.account == "B-3"
    assert scenario.success().awaited.account == "C"  # the fee account is fixed
    scenario.failure("Fee ledger unavailable").expect_command("service-b-remove")
    assert scenario.awaited.account == "B-3"
    assert scenario.success().awaited.account == "A-7"
    assert scenario.saga is not None
    assert (scenario.saga.from_account, scenario.saga.to_account) == ("A-7", "B-3")


def test_one_party_cannot_belong_to_two_participants() -> None:
    with pytest.raises(WorkflowError, match="already service-a's"):
        (
            saga("confused")
            .step("service-a", account=FROM_ACCOUNT)
            .invoke("deduct", topic="t1")
            .step("service-b", account=FROM_ACCOUNT)
            .invoke("add", topic="t2")
            .build()
        )


def test_fee_is_one_percent_rounded_up_and_at_least_a_cent() -> None:
    assert [fee_cents(c) for c in (1, 99, 100, 101, 100_00, 12_345)] == [1, 1, 1, 2, 100, 124]


def test_declared_workflows_pass_the_start_up_check() -> None:
    check_workflows(WORKFLOWS, PARTICIPANTS, load_settings({}).accounts)
    assert TRANSFER.topics == (
        "service-a-deduct",
        "service-a-refund",
        "service-b-add",
        "service-b-remove",
    )


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: saga("w").build(), "has no steps"),
        (lambda: saga("w").step("service-a", account="A").build(), "has no action"),
        (lambda: saga("w").invoke("deduct", topic="t"), "before any step"),
        (
            lambda: (
                saga("w")
                .step("service-a", account="A")
                .invoke("deduct", topic="t")
                .invoke("deduct", topic="u")
            ),
            "invokes twice",
        ),
        (
            lambda: (
                saga("w")
                .step("service-a", account="A")
                .invoke("deduct", topic="t")
                .step("service-b", account="B")
                .invoke("add", topic="t")
                .build()
            ),
            "used twice",
        ),
    ],
)
def test_malformed_declarations_fail_when_built(declare: object, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        declare()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (("service-z", "A", "deduct"), "unknown participant 'service-z'"),
        (("service-a", "B", "deduct"), "service-a does not own account 'B'"),
        (("service-a", "A", "add"), "cannot 'add'"),
    ],
)
def test_start_up_check_names_what_is_wrong(step: tuple[str, str, str], message: str) -> None:
    participant, account, action = step
    workflow = saga("bad").step(participant, account=account).invoke(action, topic="x").build()
    with pytest.raises(WorkflowError, match=message):
        check_workflows({"bad": workflow}, PARTICIPANTS, load_settings({}).accounts)


def test_a_registry_names_each_workflow_once_and_knows_its_default() -> None:
    assert (WORKFLOWS.default, list(WORKFLOWS)) == ("transfer", ["transfer", "transfer-with-fee"])
    assert len(WORKFLOWS) == 2 and WORKFLOWS["transfer"] is TRANSFER
    # Every command topic once, in declaration order: the fee workflow adds C's two.
    assert WORKFLOWS.topics == (*TRANSFER.topics, "service-c-collect", "service-c-return")
    with pytest.raises(WorkflowError, match="at least one"):
        Registry()
    with pytest.raises(WorkflowError, match="share a name"):
        Registry(TRANSFER, TRANSFER)
    with pytest.raises(WorkflowError, match="not registered"):
        Registry(TRANSFER, default="nope")


def test_a_step_needs_an_action_and_a_whole_compensation() -> None:
    with pytest.raises(WorkflowError, match="has no action"):
        Workflow("w", (Step("p1", "A", "", ""),))
    with pytest.raises(WorkflowError, match="needs both a name and a topic"):
        Workflow("w", (Step("p1", "A", "do", "p1-do", compensation="undo"),))


def test_a_retry_policy_must_wait_and_try_at_least_once() -> None:
    for bad in ({"step_timeout_ms": 0}, {"max_attempts": 0}, {"max_delay_ms": -1}):
        with pytest.raises(ValueError, match="invalid retry policy"):
            RetryPolicy(**bad)
    assert RetryPolicy(step_timeout_ms=1_000, max_delay_ms=3_000).delay_ms(5) == 3_000


def test_a_silent_step_with_nothing_to_undo_fails_and_the_earlier_ones_are_undone() -> None:
    scenario = SagaScenario(chain(2, undoable=(True, False)), 10_00).success()
    for _ in range(3):  # the second step's every attempt goes unanswered
        scenario.timeout()
    scenario.expect_command("p1-undo").expect_outcomes("COMPENSATING", "FAILED")
    scenario.success().expect_status("ROLLED_BACK")
    assert scenario.saga is not None
    assert pending_command(scenario.workflow, scenario.saga) is None  # nothing awaited
