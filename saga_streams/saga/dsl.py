"""The language workflows are declared in: an ordered list of steps, each an action and
its compensation. The business's own workflows are declared with it in ``workflows.py``.

A saga is declared top to bottom, the way it runs, in the spirit of Eventuate Tram's
``step().invokeParticipant(...).withCompensation(...)``::

    TRANSFER = (
        saga("transfer", "Take the amount from one account, give it to another")
        .step("service-a", account=FROM_ACCOUNT)
        .invoke("deduct", topic="service-a-deduct")
        .with_compensation("refund", topic="service-a-refund")
        .step("service-b", account=TO_ACCOUNT)
        .invoke("add", topic="service-b-add")
        .with_compensation("remove", topic="service-b-remove")
        .build()
    )

A step's account is either one of the transfer's two parties (``FROM_ACCOUNT``,
``TO_ACCOUNT``: the request's ``from_account`` and ``to_account``) or a fixed account,
like the fee account C.

The orchestrator knows nothing of money; its engine walks any such declaration. Adding a
step means adding a ``.step(...)`` to a declaration (and a participant that listens on its
topics), not new code paths. Whoever needs the workflows is handed a ``Registry``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FROM_ACCOUNT",
    "PARTIES",
    "TO_ACCOUNT",
    "AmountRule",
    "Registry",
    "Step",
    "Workflow",
    "WorkflowError",
    "fee_cents",
    "saga",
]

#: Which part of the saga's amount a step moves: the amount itself, the fee, or both.
AmountRule = Literal["amount", "fee", "amount+fee"]


#: A step on the account the transfer is paid from (the request's ``from_account``).
FROM_ACCOUNT = "from_account"
#: A step on the account the transfer is paid to (the request's ``to_account``).
TO_ACCOUNT = "to_account"
PARTIES = (FROM_ACCOUNT, TO_ACCOUNT)


class WorkflowError(ValueError):
    """A workflow declaration that cannot run; raised when the app starts."""


def fee_cents(amount_cents: int) -> int:
    """The transfer fee: 1% of the amount, rounded up to the cent, at least one cent."""
    return max(1, -(-amount_cents // 100))


@dataclass(frozen=True)
class Step:
    """One participant's part of a saga: what to do, and how to undo it."""

    participant: str  # "service-a": the role that executes it
    account: str  # FROM_ACCOUNT, TO_ACCOUNT, or a fixed account id ("C")
    action: str  # "deduct"
    action_topic: str  # "service-a-deduct"
    compensation: str | None = None  # "refund"; None when there is nothing to undo
    compensation_topic: str | None = None
    amount: AmountRule = "amount"

    @property
    def label(self) -> str:
        """The seed's name for a step in logs: ``service-a.deduct``."""
        return f"{self.participant}.{self.action}"

    def account_for(self, from_account: str, to_account: str) -> str:
        """The account this step moves money on, in a transfer between these two."""
        if self.account == FROM_ACCOUNT:
            return from_account
        if self.account == TO_ACCOUNT:
            return to_account
        return self.account

    def amount_cents(self, saga_amount_cents: int) -> int:
        fee = fee_cents(saga_amount_cents)
        return {"amount": saga_amount_cents, "fee": fee, "amount+fee": saga_amount_cents + fee}[
            self.amount
        ]


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise WorkflowError(f"workflow {self.name!r} has no steps")
        seen: set[str] = set()
        parties: dict[str, str] = {}
        for number, step in enumerate(self.steps, start=1):
            where = f"workflow {self.name!r}, step {number} ({step.participant})"
            if not step.action or not step.action_topic:
                raise WorkflowError(f"{where} has no action")
            if (step.compensation is None) != (step.compensation_topic is None):
                raise WorkflowError(f"{where}: a compensation needs both a name and a topic")
            owner = parties.setdefault(step.account, step.participant)
            if step.account in PARTIES and owner != step.participant:
                raise WorkflowError(
                    f"{where}: {step.account} is already {owner}'s; "
                    "one account cannot belong to two participants"
                )
            for topic in filter(None, (step.action_topic, step.compensation_topic)):
                if topic in seen:
                    raise WorkflowError(f"{where}: topic {topic!r} is used twice")
                seen.add(topic)

    def parties(self) -> dict[str, str]:
        """Which participant owns each party's account: ``{"from_account": "service-a",
        "to_account": "service-b"}`` for the transfer."""
        return {s.account: s.participant for s in self.steps if s.account in PARTIES}

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


# -- the declaration API ------------------------------------------------------------------


@dataclass
class _StepDraft:
    participant: str
    account: str
    action: str = ""
    action_topic: str = ""
    amount: AmountRule = "amount"
    compensation: str | None = None
    compensation_topic: str | None = None


@dataclass
class SagaBuilder:
    """Collects steps in order; ``build()`` checks the whole and returns a ``Workflow``."""

    name: str
    description: str = ""
    _steps: list[_StepDraft] = field(default_factory=list)

    def step(self, participant: str, *, account: str) -> SagaBuilder:
        """Start the next step: ``participant`` executes it on ``account`` (FROM_ACCOUNT,
        TO_ACCOUNT, or a fixed account id)."""
        self._steps.append(_StepDraft(participant, account))
        return self

    def invoke(self, action: str, *, topic: str, amount: AmountRule = "amount") -> SagaBuilder:
        """What the current step does, on which topic, with which part of the amount."""
        draft = self._current("invoke")
        if draft.action:
            raise WorkflowError(f"{self._where()} invokes twice")
        draft.action, draft.action_topic, draft.amount = action, topic, amount
        return self

    def with_compensation(self, action: str, *, topic: str) -> SagaBuilder:
        """How to undo the current step if a later one fails."""
        draft = self._current("with_compensation")
        draft.compensation, draft.compensation_topic = action, topic
        return self

    def build(self) -> Workflow:
        steps = []
        for number, draft in enumerate(self._steps, start=1):
            if not draft.action:
                raise WorkflowError(
                    f"workflow {self.name!r}, step {number} ({draft.participant}) has no action"
                )
            steps.append(
                Step(
                    participant=draft.participant,
                    account=draft.account,
                    action=draft.action,
                    action_topic=draft.action_topic,
                    compensation=draft.compensation,
                    compensation_topic=draft.compensation_topic,
                    amount=draft.amount,
                )
            )
        return Workflow(self.name, tuple(steps), self.description)

    def _current(self, verb: str) -> _StepDraft:
        if not self._steps:
            raise WorkflowError(f"workflow {self.name!r}: {verb}() before any step()")
        return self._steps[-1]

    def _where(self) -> str:
        return f"workflow {self.name!r}, step {len(self._steps)} ({self._steps[-1].participant})"


def saga(name: str, description: str = "") -> SagaBuilder:
    """Begin declaring a workflow."""
    return SagaBuilder(name, description)


class Registry(Mapping[str, Workflow]):
    """The workflows a system runs, by name, and the one a request gets by default."""

    def __init__(self, *workflows: Workflow, default: str | None = None) -> None:
        if not workflows:
            raise WorkflowError("a registry needs at least one workflow")
        self._workflows = {w.name: w for w in workflows}
        if len(self._workflows) != len(workflows):
            raise WorkflowError("two workflows share a name")
        self.default = default if default is not None else workflows[0].name
        if self.default not in self._workflows:
            raise WorkflowError(f"default workflow {self.default!r} is not registered")

    def __getitem__(self, name: str) -> Workflow:
        return self._workflows[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._workflows)

    def __len__(self) -> int:
        return len(self._workflows)

    @property
    def topics(self) -> tuple[str, ...]:
        """Every command topic of every workflow, once each, in declaration order."""
        names: dict[str, None] = {}
        for workflow in self._workflows.values():
            names.update(dict.fromkeys(workflow.topics))
        return tuple(names)
