"""The processes of the system: who owns what, on which port, in which consumer group."""

from __future__ import annotations

from dataclasses import dataclass

from saga_streams.accounts import ActionRule
from saga_streams.config import Settings
from saga_streams.messages import ACTION, COMPENSATION, CommandKind
from saga_streams.saga.workflow import WORKFLOWS

__all__ = ["ORCHESTRATOR", "PARTICIPANTS", "ROLES", "Participant", "Role"]


@dataclass(frozen=True)
class Role:
    name: str  # as typed on the command line: orchestrator, service-a, service-b
    app_id: str  # the Faust app id, which is also the Kafka consumer group
    web_port: int
    module: str  # what ``faust -A`` loads


@dataclass(frozen=True)
class Participant:
    """A service that owns one account and executes the steps a workflow gives it."""

    role: Role
    account: str
    effects: dict[str, ActionRule]  # action name -> its effect on the account
    failure_error: str  # the error an injected failure reports, in the seed's words

    def opening_balance(self, settings: Settings) -> int:
        return {"A": settings.opening_balance_a_cents, "B": settings.opening_balance_b_cents}[
            self.account
        ]

    def failure_rate(self, settings: Settings) -> float:
        return {"A": settings.service_a_failure_rate, "B": settings.service_b_failure_rate}[
            self.account
        ]

    def topics(self) -> dict[str, tuple[CommandKind, ActionRule]]:
        """Every command topic this participant consumes: which kind of command arrives
        there, and the effect on the account of the step it belongs to."""
        topics: dict[str, tuple[CommandKind, ActionRule]] = {}
        for workflow in WORKFLOWS.values():
            for step in workflow.steps:
                if step.participant == self.role.name:
                    effect = self.effects[step.action]
                    topics[step.action_topic] = (ACTION, effect)
                    if step.compensation_topic:
                        topics[step.compensation_topic] = (COMPENSATION, effect)
        return topics


ORCHESTRATOR = Role("orchestrator", "saga-orchestrator", 8000, "saga_streams.agents.orchestrator")
SERVICE_A = Participant(
    role=Role("service-a", "saga-service-a", 8001, "saga_streams.agents.service_a"),
    account="A",
    effects={"deduct": "debit"},
    failure_error="Account verification failed",
)
SERVICE_B = Participant(
    role=Role("service-b", "saga-service-b", 8002, "saga_streams.agents.service_b"),
    account="B",
    effects={"add": "credit"},
    failure_error="Account verification failed",
)
PARTICIPANTS: dict[str, Participant] = {p.role.name: p for p in (SERVICE_A, SERVICE_B)}
ROLES: dict[str, Role] = {
    ORCHESTRATOR.name: ORCHESTRATOR,
    **{name: participant.role for name, participant in PARTICIPANTS.items()},
}
