"""A participant's account and the ledger that makes every command take effect at most once.

Pure logic, no Kafka: the service agent loads an ``Account`` from its table, calls
``execute``, stores the new account and sends the reply. Balance and ledger live in one
table value, so a single changelog write records both: there is no moment at which the
money has moved but the record of it has not (or the reverse).

Ledger entries are keyed by the id of the *action* a command does or undoes:

- ``APPLIED``      the action moved money;
- ``FAILED``       the action was refused (insufficient funds, injected failure);
- ``COMPENSATED``  the action moved money and its compensation moved it back;
- ``VOIDED``       the compensation arrived first: nothing to undo, and the action,
                   should it arrive late, is refused; money never appears from nowhere.

A redelivered command finds its entry and gets the original answer again, balance untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from saga_streams.messages import ACTION, Command, ReplyStatus

__all__ = [
    "LEDGER_CAPACITY",
    "Account",
    "ActionRule",
    "Entry",
    "Execution",
    "execute",
]

EntryState = Literal["APPLIED", "FAILED", "COMPENSATED", "VOIDED"]

#: How many recent actions an account remembers. A command comes again only while its
#: saga is in flight (a redelivery after a crash, or the orchestrator sending it again),
#: so an entry matters for seconds; the oldest go first. The bound keeps the table value
#: (written to the changelog on every command) small.
LEDGER_CAPACITY = 1000

#: The sign of each action's effect on the balance; a compensation applies the opposite.
ActionRule = Literal["debit", "credit"]


@dataclass(frozen=True)
class Entry:
    state: EntryState
    amount_cents: int
    error: str | None = None


@dataclass
class Account:
    account_id: str
    balance_cents: int
    ledger: dict[str, Entry] = field(default_factory=dict)  # insertion-ordered: oldest first

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "balance_cents": self.balance_cents,
            "ledger": {k: [e.state, e.amount_cents, e.error] for k, e in self.ledger.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(
            account_id=data["account_id"],
            balance_cents=data["balance_cents"],
            ledger={
                k: Entry(state=v[0], amount_cents=v[1], error=v[2])
                for k, v in data["ledger"].items()
            },
        )


@dataclass(frozen=True)
class Execution:
    """What executing a command did: the answer for the orchestrator and for the log."""

    status: ReplyStatus
    error: str | None
    balance_before: int
    balance_after: int
    duplicate: bool  # the ledger already had the answer; nothing was applied now

    @property
    def moved_money(self) -> bool:
        return self.balance_before != self.balance_after


def _remember(account: Account, action_id: str, entry: Entry) -> None:
    account.ledger.pop(action_id, None)
    account.ledger[action_id] = entry
    while len(account.ledger) > LEDGER_CAPACITY:
        del account.ledger[next(iter(account.ledger))]


def _signed(rule: ActionRule, amount: int) -> int:
    return -amount if rule == "debit" else amount


def execute(account: Account, command: Command, rule: ActionRule, failure: str | None) -> Execution:
    """Apply ``command`` to ``account`` in place, at most once.

    ``rule`` says whether the step's action debits or credits the account. ``failure`` is
    the injected failure decided by the caller for a fresh action (None: no failure).
    """
    before = account.balance_cents
    if command.kind == ACTION:
        action_id = command.command_id
        seen = account.ledger.get(action_id)
        if seen is not None:
            if seen.state in ("APPLIED", "COMPENSATED"):
                return Execution("SUCCESS", None, before, before, duplicate=True)
            error = (
                seen.error if seen.state == "FAILED" else "VOIDED: compensated before it arrived"
            )
            return Execution("FAILED", error, before, before, duplicate=True)
        delta = _signed(rule, command.amount_cents)
        if failure is None and before + delta < 0:
            failure = "INSUFFICIENT_FUNDS"
        if failure is not None:
            _remember(account, action_id, Entry("FAILED", command.amount_cents, failure))
            return Execution("FAILED", failure, before, before, duplicate=False)
        account.balance_cents = before + delta
        _remember(account, action_id, Entry("APPLIED", command.amount_cents))
        return Execution("SUCCESS", None, before, account.balance_cents, duplicate=False)

    # A compensation undoes exactly what its action did, using the amount the ledger
    # recorded, never the amount the compensation claims.
    action_id = command.undoes or ""
    seen = account.ledger.get(action_id)
    if seen is None:
        _remember(account, action_id, Entry("VOIDED", command.amount_cents))
        return Execution("SUCCESS", None, before, before, duplicate=False)
    if seen.state != "APPLIED":
        return Execution("SUCCESS", None, before, before, duplicate=True)
    account.balance_cents = before - _signed(rule, seen.amount_cents)
    _remember(account, action_id, Entry("COMPENSATED", seen.amount_cents))
    return Execution("SUCCESS", None, before, account.balance_cents, duplicate=False)
