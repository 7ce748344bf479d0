"""A given/expect helper over the pure engine, in the spirit of Eventuate's saga tests:

given_saga(amount=100).expect_command("service-a-deduct")
    .success().expect_command("service-b-add")
    .failure("Account verification failed").expect_command("service-a-refund")
    .success().expect_status("ROLLED_BACK")
"""

from __future__ import annotations

from saga_streams.messages import (
    Command,
    OperatorAction,
    OperatorVerb,
    Reply,
    ReplyStatus,
    TimeoutElapsed,
    TransferRequested,
)
from saga_streams.saga.dsl import Workflow
from saga_streams.saga.engine import Decision, SagaInput, decide, pending_command
from saga_streams.saga.events import SagaEvent
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import Saga
from saga_streams.workflows import TRANSFER

POLICY = RetryPolicy(step_timeout_ms=1_000, max_attempts=3, max_delay_ms=3_000)


class SagaScenario:
    def __init__(
        self,
        workflow: Workflow,
        amount_cents: int,
        saga_id: str = "s1",
        parties: tuple[str, str] = ("A", "B"),
    ) -> None:
        self.workflow = workflow
        self.clock = 1_000
        self.request = TransferRequested(saga_id, workflow.name, amount_cents, self.clock, *parties)
        self.last: Decision = self._decide(None, self.request)
        self.saga: Saga | None = self.last.saga
        self.sent: list[tuple[str, Command]] = list(self.last.commands)

    # -- acting -------------------------------------------------------------------------
    def _decide(self, saga: Saga | None, message: SagaInput) -> Decision:
        return decide(saga, message, self.clock, {self.workflow.name: self.workflow}, POLICY)

    def deliver(self, message: SagaInput) -> SagaScenario:
        self.clock += 10
        self.last = self._decide(self.saga, message)
        self.saga = self.last.saga
        self.sent.extend(self.last.commands)
        return self

    def timeout(self) -> SagaScenario:
        """Let the clock pass the saga's deadline, and the timer tell the engine."""
        assert self.saga is not None and self.saga.deadline is not None, self.saga
        deadline = self.saga.deadline
        self.clock = deadline - 10
        return self.deliver(TimeoutElapsed(self.saga.saga_id, deadline))

    def operator(
        self, action: OperatorVerb, reason: str | None = None, by: str = "alice"
    ) -> SagaScenario:
        """An operator's retry or cancel, as the view publishes it."""
        assert self.saga is not None
        return self.deliver(OperatorAction(self.saga.saga_id, action, by, self.clock, reason))

    def reply_to(self, command: Command, status: ReplyStatus, error: str | None = None) -> Reply:
        return Reply.for_command(
            command, self.workflow.step(command.step).participant, status, error
        )

    def success(self) -> SagaScenario:
        return self.deliver(self.reply_to(self.awaited, "SUCCESS"))

    def failure(self, error: str = "Account verification failed") -> SagaScenario:
        return self.deliver(self.reply_to(self.awaited, "FAILED", error))

    @property
    def awaited(self) -> Command:
        """The command the saga waits on now, as the engine derives it from the state."""
        assert self.saga is not None
        pending = pending_command(self.workflow, self.saga)
        assert pending is not None, f"no command awaited: {self.saga}"
        return pending[1]

    # -- checking -----------------------------------------------------------------------
    def expect_command(self, topic: str) -> SagaScenario:
        assert [t for t, _ in self.last.commands] == [topic], self.last
        return self

    def expect_no_command(self) -> SagaScenario:
        assert self.last.commands == (), self.last
        return self

    def expect_status(self, status: str) -> SagaScenario:
        assert self.saga is not None and self.saga.status == status, self.saga
        return self

    def expect_outcomes(self, *outcomes: str) -> SagaScenario:
        assert self.saga is not None
        assert tuple(s.outcome for s in self.saga.steps) == outcomes, self.saga.steps
        return self

    def expect_event(self, kind: type[SagaEvent]) -> SagaScenario:
        assert any(isinstance(e, kind) for e in self.last.events), self.last.events
        return self


def given_saga(amount_cents: int = 100_00, workflow: Workflow = TRANSFER) -> SagaScenario:
    return SagaScenario(workflow, amount_cents)
