"""A given/expect helper over the pure engine, in the spirit of Eventuate's saga tests:

given_saga(amount=100).expect_command("service-a-deduct")
    .success().expect_command("service-b-add")
    .failure("Account verification failed").expect_command("service-a-refund")
    .success().expect_status("ROLLED_BACK")
"""

from __future__ import annotations

from saga_streams.messages import Command, Reply, ReplyStatus, TransferRequested
from saga_streams.saga.engine import Decision, decide
from saga_streams.saga.events import SagaEvent
from saga_streams.saga.state import Saga
from saga_streams.saga.workflow import TRANSFER, Workflow


class SagaScenario:
    def __init__(self, workflow: Workflow, amount_cents: int, saga_id: str = "s1") -> None:
        self.workflow = workflow
        self.clock = 1_000
        self.request = TransferRequested(saga_id, workflow.name, amount_cents, self.clock)
        self.last: Decision = decide(None, self.request, self.clock, {workflow.name: workflow})
        self.saga: Saga | None = self.last.saga
        self.sent: list[tuple[str, Command]] = list(self.last.commands)

    # -- acting -------------------------------------------------------------------------
    def deliver(self, message: TransferRequested | Reply) -> SagaScenario:
        self.clock += 10
        self.last = decide(self.saga, message, self.clock, {self.workflow.name: self.workflow})
        self.saga = self.last.saga
        self.sent.extend(self.last.commands)
        return self

    def reply_to(self, command: Command, status: ReplyStatus, error: str | None = None) -> Reply:
        return Reply(
            command_id=command.command_id,
            saga_id=command.saga_id,
            step=command.step,
            kind=command.kind,
            service=self.workflow.step(command.step).participant,
            action=command.action,
            status=status,
            error=error,
        )

    def success(self) -> SagaScenario:
        return self.deliver(self.reply_to(self.awaited, "SUCCESS"))

    def failure(self, error: str = "Account verification failed") -> SagaScenario:
        return self.deliver(self.reply_to(self.awaited, "FAILED", error))

    @property
    def awaited(self) -> Command:
        assert self.last.commands, f"no command awaited; last events: {self.last.events}"
        return self.last.commands[-1][1]

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
