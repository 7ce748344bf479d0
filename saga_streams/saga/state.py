"""A saga's state as the orchestrator's table stores it.

Values are plain JSON-able dicts in the table (readable in the changelog with kcat); this
module turns them into frozen dataclasses and back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "TERMINAL",
    "Saga",
    "SagaStatus",
    "StepOutcome",
    "StepState",
    "iso_ms",
]

SagaStatus = Literal["STARTED", "COMPENSATING", "COMPLETED", "ROLLED_BACK", "FAILED"]
#: A saga in one of these never moves again (invariant 6: monotonic state).
TERMINAL: frozenset[str] = frozenset({"COMPLETED", "ROLLED_BACK", "FAILED"})

StepOutcome = Literal[
    "NOT_STARTED", "PENDING", "SUCCEEDED", "FAILED", "COMPENSATING", "COMPENSATED"
]


@dataclass(frozen=True)
class StepState:
    outcome: StepOutcome = "NOT_STARTED"
    error: str | None = None


@dataclass(frozen=True)
class Saga:
    saga_id: str
    workflow: str
    amount_cents: int
    status: SagaStatus
    steps: tuple[StepState, ...]
    created_at: int  # epoch milliseconds
    updated_at: int
    #: The command whose reply made the latest move. A redelivery of that same reply
    #: means the commands it caused may never have been sent (the worker died between
    #: writing this state and producing them), so the engine sends them again.
    last_move: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def with_step(self, number: int, outcome: StepOutcome, error: str | None = None) -> Saga:
        steps = list(self.steps)
        steps[number - 1] = StepState(outcome=outcome, error=error or steps[number - 1].error)
        return replace(self, steps=tuple(steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "saga_id": self.saga_id,
            "workflow": self.workflow,
            "amount_cents": self.amount_cents,
            "status": self.status,
            "steps": [{"outcome": s.outcome, "error": s.error} for s in self.steps],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_move": self.last_move,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Saga:
        return cls(
            saga_id=data["saga_id"],
            workflow=data["workflow"],
            amount_cents=data["amount_cents"],
            status=data["status"],
            steps=tuple(StepState(outcome=s["outcome"], error=s["error"]) for s in data["steps"]),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            last_move=data.get("last_move"),
        )


def iso_ms(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-11-26T04:51:57.123Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
