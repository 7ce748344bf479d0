"""Workflows are data: an ordered list of steps, each an action and its compensation.

The orchestrator knows nothing of money; it walks a workflow. Adding a step means adding a
``Step`` here (and a participant that listens on its topics), not new code paths.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_WORKFLOW", "TRANSFER", "WORKFLOWS", "Step", "Workflow"]


@dataclass(frozen=True)
class Step:
    """One participant's part of a saga: what to do, and how to undo it."""

    participant: str  # "service-a": the role that executes it
    account: str  # the account the participant moves money on
    action: str  # "deduct"
    action_topic: str  # "service-a-deduct"
    compensation: str | None = None  # "refund"; None when there is nothing to undo
    compensation_topic: str | None = None

    @property
    def label(self) -> str:
        """The seed's name for a step in logs: ``service-a.deduct``."""
        return f"{self.participant}.{self.action}"


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        for step in self.steps:
            if (step.compensation is None) != (step.compensation_topic is None):
                raise ValueError(
                    f"workflow {self.name!r}: step {step.label} names a compensation "
                    "without its topic, or a topic without its compensation"
                )

    def step(self, number: int) -> Step:
        """Steps are numbered from 1, as the seed's logs count them."""
        return self.steps[number - 1]

    @property
    def topics(self) -> tuple[str, ...]:
        names: list[str] = []
        for step in self.steps:
            names.append(step.action_topic)
            if step.compensation_topic:
                names.append(step.compensation_topic)
        return tuple(names)


#: The seed's money transfer: take from Account A, then give to Account B.
TRANSFER = Workflow(
    name="transfer",
    steps=(
        Step(
            participant="service-a",
            account="A",
            action="deduct",
            action_topic="service-a-deduct",
            compensation="refund",
            compensation_topic="service-a-refund",
        ),
        Step(
            participant="service-b",
            account="B",
            action="add",
            action_topic="service-b-add",
            compensation="remove",
            compensation_topic="service-b-remove",
        ),
    ),
)

WORKFLOWS: dict[str, Workflow] = {TRANSFER.name: TRANSFER}
DEFAULT_WORKFLOW = TRANSFER.name
