"""What happened to a saga, as the engine reports it; the agent turns these into log lines.

Keeping them as data lets the engine stay pure and lets tests assert on what happened
without parsing log text.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CompensationDispatched",
    "CompensationRefused",
    "MessageIgnored",
    "OperatorActed",
    "OperatorActionIgnored",
    "RollbackStarted",
    "SagaCompleted",
    "SagaEvent",
    "SagaFailed",
    "SagaRefused",
    "SagaRolledBack",
    "SagaStarted",
    "StepCompensated",
    "StepDispatched",
    "StepFailed",
    "StepSucceeded",
    "StepTimedOut",
]


@dataclass(frozen=True)
class SagaStarted:
    saga_id: str
    workflow: str
    amount_cents: int
    total_steps: int
    accounts: tuple[str, ...]  # the account of each step, in order


@dataclass(frozen=True)
class StepDispatched:
    saga_id: str
    step: int
    total_steps: int
    label: str  # service-a.deduct
    topic: str
    attempt: int  # 1 for the first send
    max_attempts: int
    resent: bool  # sent again: after a timeout (attempt > 1) or a redelivery
    #: Sent again, unchanged, because a message came again (not in the history: Kafka's
    #: redeliveries are not the saga's story).
    redelivered: bool = False


@dataclass(frozen=True)
class StepTimedOut:
    saga_id: str
    step: int
    total_steps: int
    label: str
    attempts: int


@dataclass(frozen=True)
class StepSucceeded:
    saga_id: str
    step: int
    total_steps: int
    label: str


@dataclass(frozen=True)
class StepFailed:
    saga_id: str
    step: int
    total_steps: int
    label: str
    error: str


@dataclass(frozen=True)
class RollbackStarted:
    saga_id: str
    failed_step: int


@dataclass(frozen=True)
class CompensationDispatched:
    saga_id: str
    step: int
    participant: str
    attempt: int
    resent: bool
    redelivered: bool = False


@dataclass(frozen=True)
class StepCompensated:
    saga_id: str
    step: int
    participant: str


@dataclass(frozen=True)
class CompensationRefused:
    saga_id: str
    step: int
    error: str


@dataclass(frozen=True)
class SagaCompleted:
    saga_id: str
    amount_cents: int


@dataclass(frozen=True)
class SagaRolledBack:
    saga_id: str


@dataclass(frozen=True)
class SagaFailed:
    saga_id: str
    failed_step: int
    error: str
    compensated: bool  # the failed step was undone in case it ran (it timed out)


@dataclass(frozen=True)
class SagaRefused:
    """A request broke the rules (unknown account, amount out of range...): the saga
    ended FAILED before any step, with the reason."""

    saga_id: str
    reason: str


@dataclass(frozen=True)
class MessageIgnored:
    saga_id: str
    reason: str


@dataclass(frozen=True)
class OperatorActed:
    """An operator's retry or cancel, taken: the moves it causes follow."""

    saga_id: str
    action: str  # retry | cancel
    by: str
    reason: str | None
    step: int  # the step the saga was waiting on


@dataclass(frozen=True)
class OperatorActionIgnored:
    """An operator's retry or cancel that no longer made sense when it arrived."""

    saga_id: str
    action: str
    by: str
    reason: str | None
    why: str


SagaEvent = (
    SagaStarted
    | StepDispatched
    | StepSucceeded
    | StepFailed
    | StepTimedOut
    | RollbackStarted
    | CompensationDispatched
    | StepCompensated
    | CompensationRefused
    | SagaCompleted
    | SagaRolledBack
    | SagaFailed
    | SagaRefused
    | MessageIgnored
    | OperatorActed
    | OperatorActionIgnored
)
