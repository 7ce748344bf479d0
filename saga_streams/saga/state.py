"""A saga's state as the orchestrator's table stores it.

Values are plain JSON-able dicts in the table (readable in the changelog with kcat); this
module turns them into frozen dataclasses and back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from saga_streams.saga.history import HistoryEntry

if TYPE_CHECKING:
    from saga_streams.saga.dsl import Step

__all__ = [
    "STATUSES",
    "TERMINAL",
    "Saga",
    "SagaStatus",
    "StepOutcome",
    "StepState",
    "epoch_seconds",
    "iso_ms",
    "now_ms",
]

#: A saga in flight, then in one of the terminal statuses, which it never leaves
#: (invariant 6: monotonic state).
InFlightStatus = Literal["STARTED", "COMPENSATING"]
TerminalStatus = Literal["COMPLETED", "ROLLED_BACK", "FAILED"]
SagaStatus = InFlightStatus | TerminalStatus
#: Every status, in the order a saga can pass through them.
STATUSES: tuple[str, ...] = (*get_args(InFlightStatus), *get_args(TerminalStatus))
TERMINAL: frozenset[str] = frozenset(get_args(TerminalStatus))

StepOutcome = Literal[
    "NOT_STARTED", "PENDING", "SUCCEEDED", "FAILED", "COMPENSATING", "COMPENSATED"
]


@dataclass(frozen=True)
class StepState:
    outcome: StepOutcome = "NOT_STARTED"
    error: str | None = None
    attempts: int = 0  # how often the action was sent
    compensation_attempts: int = 0  # how often its compensation was sent
    #: When the action was first sent (epoch ms). Every command of the step carries it,
    #: so a participant can tell a command it has forgotten from one it never saw.
    issued_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "error": self.error,
            "attempts": self.attempts,
            "compensation_attempts": self.compensation_attempts,
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        return cls(
            outcome=data["outcome"],
            error=data["error"],
            attempts=data["attempts"],
            compensation_attempts=data["compensation_attempts"],
            issued_at=data["issued_at"],
        )


@dataclass(frozen=True)
class Saga:
    saga_id: str
    workflow: str
    amount_cents: int
    #: The transfer's two parties: the steps on FROM_ACCOUNT and TO_ACCOUNT move money
    #: on these.
    from_account: str
    to_account: str
    status: SagaStatus
    steps: tuple[StepState, ...]
    created_at: int  # epoch milliseconds
    updated_at: int
    #: The step whose failure (or silence) ended the forward path; it decides whether a
    #: rollback ends FAILED (step 1) or ROLLED_BACK (a later step).
    failed_step: int | None = None
    #: When the awaited reply is overdue: the command is then sent again, or given up on.
    #: None once the saga has ended.
    deadline: int | None = None
    #: The command whose reply made the latest move. A redelivery of that same reply
    #: means the commands it caused may never have been sent (the worker died between
    #: writing this state and producing them), so the engine sends them again.
    last_move: str | None = None
    #: Why the saga was refused before any step (a request that broke the rules of
    #: ``rules.py``, produced straight onto the request topic); None for every other saga.
    error: str | None = None
    #: Who cancelled the saga by hand (an operator's cancel), if anyone did: a second
    #: cancel is then the same request again, not a conflict.
    cancelled_by: str | None = None
    #: What happened to the saga, oldest first, bounded (``saga/history.py``).
    history: tuple[HistoryEntry, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, number: int) -> StepState:
        return self.steps[number - 1]

    def account_of(self, step: Step) -> str:
        """The account a step of this saga's workflow moves money on."""
        return step.account_for(self.from_account, self.to_account)

    def with_step(self, number: int, **changes: Any) -> Saga:
        steps = list(self.steps)
        steps[number - 1] = replace(steps[number - 1], **changes)
        return replace(self, steps=tuple(steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "saga_id": self.saga_id,
            "workflow": self.workflow,
            "amount_cents": self.amount_cents,
            "status": self.status,
            "steps": [s.to_dict() for s in self.steps],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "failed_step": self.failed_step,
            "deadline": self.deadline,
            "last_move": self.last_move,
            "from_account": self.from_account,
            "to_account": self.to_account,
            "error": self.error,
            "cancelled_by": self.cancelled_by,
            "history": [entry.to_dict() for entry in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Saga:
        return cls(
            saga_id=data["saga_id"],
            workflow=data["workflow"],
            amount_cents=data["amount_cents"],
            status=data["status"],
            steps=tuple(StepState.from_dict(s) for s in data["steps"]),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            failed_step=data["failed_step"],
            deadline=data["deadline"],
            last_move=data["last_move"],
            from_account=data["from_account"],
            to_account=data["to_account"],
            error=data["error"],
            cancelled_by=data["cancelled_by"],
            history=tuple(HistoryEntry.from_dict(e) for e in data["history"]),
        )


def now_ms() -> int:
    """The time now, as the tables and messages store it: epoch milliseconds."""
    return int(time.time() * 1000)


def iso_ms(epoch_ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-11-26T04:51:57.123Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def epoch_seconds(iso: str) -> float:
    """The inverse of ``iso_ms``: seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
