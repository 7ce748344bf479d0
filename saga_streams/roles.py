"""The processes of the system: who owns what, on which port, in which consumer group."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from saga_streams.accounts import ActionRule
from saga_streams.messages import ACTION, COMPENSATION, CommandKind
from saga_streams.saga.dsl import PARTIES, Workflow, WorkflowError

__all__ = ["ORCHESTRATOR", "PARTICIPANTS", "ROLES", "Participant", "Role", "check_workflows"]


@dataclass(frozen=True)
class Role:
    name: str  # as typed on the command line: orchestrator, service-a, service-b
    app_id: str  # the Faust app id, which is also the Kafka consumer group
    web_port: int
    module: str  # what ``faust -A`` loads


@dataclass(frozen=True)
class Participant:
    """A service that owns accounts and executes the steps a workflow gives it."""

    role: Role
    account: str  # its default account: the seed's A or B (more come from settings)
    effects: dict[str, ActionRule]  # action name -> its effect on the account
    failure_error: str  # the error an injected failure reports, in the seed's words
    default_failure_rate: float  # SERVICE_<X>_FAILURE_RATE when unset
    default_opening_cents: int  # OPENING_BALANCE_<ACCOUNT> when unset

    @property
    def failure_rate_variable(self) -> str:
        return f"{self.role.name.upper().replace('-', '_')}_FAILURE_RATE"

    @property
    def opening_balance_variable(self) -> str:
        return f"OPENING_BALANCE_{self.account}"

    @property
    def accounts_variable(self) -> str:
        return f"{self.role.name.upper().replace('-', '_')}_ACCOUNTS"

    def topics(
        self, workflows: Mapping[str, Workflow]
    ) -> dict[str, tuple[CommandKind, str, ActionRule]]:
        """Every command topic this participant consumes: which kind of command arrives
        there, the action (or compensation) it carries, and the effect on the account of
        the step it belongs to."""
        topics: dict[str, tuple[CommandKind, str, ActionRule]] = {}
        for workflow in workflows.values():
            for step in workflow.steps:
                if step.participant == self.role.name:
                    effect = self.effects[step.action]
                    topics[step.action_topic] = (ACTION, step.action, effect)
                    if step.compensation and step.compensation_topic:
                        topics[step.compensation_topic] = (COMPENSATION, step.compensation, effect)
        return topics


ORCHESTRATOR = Role("orchestrator", "saga-orchestrator", 8000, "saga_streams.agents.orchestrator")
SERVICE_A = Participant(
    role=Role("service-a", "saga-service-a", 8001, "saga_streams.agents.service_a"),
    account="A",
    effects={"deduct": "debit"},
    failure_error="Account verification failed",
    default_failure_rate=0.2,
    default_opening_cents=1000_00,
)
SERVICE_B = Participant(
    role=Role("service-b", "saga-service-b", 8002, "saga_streams.agents.service_b"),
    account="B",
    effects={"add": "credit"},
    failure_error="Account verification failed",
    default_failure_rate=0.3,
    default_opening_cents=500_00,
)
#: The fee account: collects the fee of a transfer-with-fee as its third step.
SERVICE_C = Participant(
    role=Role("service-c", "saga-service-c", 8003, "saga_streams.agents.service_c"),
    account="C",
    effects={"collect": "credit"},
    failure_error="Fee ledger unavailable",
    default_failure_rate=0.1,
    default_opening_cents=0,
)
PARTICIPANTS: dict[str, Participant] = {p.role.name: p for p in (SERVICE_A, SERVICE_B, SERVICE_C)}
ROLES: dict[str, Role] = {
    ORCHESTRATOR.name: ORCHESTRATOR,
    **{name: participant.role for name, participant in PARTICIPANTS.items()},
}


def check_workflows(
    workflows: Mapping[str, Workflow],
    participants: Mapping[str, Participant],
    accounts: Mapping[str, Mapping[str, int]],
) -> None:
    """Every step names a known participant, an account it owns (a fixed one, or a party
    of the transfer), and an action it can do.

    Called when an app starts, so a mistake in a declaration stops the worker with one
    clear line instead of surfacing at the first message.
    """
    for workflow in workflows.values():
        for number, step in enumerate(workflow.steps, start=1):
            where = f"workflow {workflow.name!r}, step {number}"
            participant = participants.get(step.participant)
            if participant is None:
                known = ", ".join(participants)
                raise WorkflowError(f"{where}: unknown participant {step.participant!r} ({known})")
            owned = accounts.get(step.participant, {})
            if step.account not in PARTIES and step.account not in owned:
                raise WorkflowError(
                    f"{where}: {step.participant} does not own account {step.account!r}"
                )
            if step.action not in participant.effects:
                raise WorkflowError(
                    f"{where}: {step.participant} cannot {step.action!r} "
                    f"(it can: {', '.join(participant.effects)})"
                )
