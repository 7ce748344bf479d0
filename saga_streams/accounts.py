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

The account value keeps only the most recent ``RECENT_ACTIONS`` entries, so the value
written to the changelog on every change stays small however busy the account is. Older
entries move to ``archived``, which the caller stores under keys of their own (see
tables/accounts.py) *before* the account value that no longer holds them: a crash in
between leaves an entry in both places, never in neither. ``execute`` looks an action up
in the account value first, then through ``recall``, the caller's window on the archive.
Nothing is ever forgotten, so no command has to be refused for being too old.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from saga_streams.messages import ACTION, Command, ReplyStatus

__all__ = [
    "RECENT_ACTIONS",
    "Account",
    "ActionRule",
    "Entry",
    "Execution",
    "execute",
]

EntryState = Literal["APPLIED", "FAILED", "COMPENSATED", "VOIDED"]

#: How many of its latest actions an account keeps in its table value. A command comes
#: again while its saga is in flight (a redelivery after a crash, or the orchestrator
#: resending after a timeout), usually within seconds, so most lookups end here; older
#: entries are archived under their own keys. The bound keeps the value, written to the
#: changelog on every change, at a few kilobytes (about 50 bytes an entry).
RECENT_ACTIONS = 64

#: The sign of each action's effect on the balance; a compensation applies the opposite.
ActionRule = Literal["debit", "credit"]
#: An action id -> its archived ledger entry, or None if it was never archived.
Recall = Callable[[str], "Entry | None"]


@dataclass(frozen=True)
class Entry:
    state: EntryState
    amount_cents: int
    issued_at: int
    error: str | None = None

    def to_list(self) -> list[Any]:
        """As stored: in the account value's ledger, or alone under an archive key."""
        return [self.state, self.amount_cents, self.issued_at, self.error]

    @classmethod
    def from_list(cls, data: list[Any]) -> Entry:
        return cls(state=data[0], amount_cents=data[1], issued_at=data[2], error=data[3])


@dataclass
class Account:
    account_id: str
    balance_cents: int
    ledger: dict[str, Entry] = field(default_factory=dict)  # insertion-ordered: oldest first
    #: Entries moved out of ``ledger`` since the account was loaded, for the caller to
    #: store under their own keys; not part of the table value.
    archived: dict[str, Entry] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "balance_cents": self.balance_cents,
            "ledger": {k: e.to_list() for k, e in self.ledger.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(
            account_id=data["account_id"],
            balance_cents=data["balance_cents"],
            ledger={k: Entry.from_list(v) for k, v in data["ledger"].items()},
        )


@dataclass(frozen=True)
class Execution:
    """What executing a command did: the answer for the orchestrator and for the log."""

    status: ReplyStatus
    error: str | None
    balance_before: int
    balance_after: int
    #: applied: money moved now; failed: refused now (funds, injected failure);
    #: voided: a compensation came before its action; repeated: answered from the
    #: ledger; nothing_to_undo: compensation of a refused action; refused: not done
    #: now and not recorded (a compensation that would overdraw), to be tried again.
    what: Literal["applied", "failed", "voided", "repeated", "nothing_to_undo", "refused"]

    @property
    def recorded(self) -> bool:
        """The account changed (balance or ledger) and must be stored."""
        return self.what in ("applied", "failed", "voided")


def _remember(account: Account, action_id: str, entry: Entry) -> None:
    account.ledger.pop(action_id, None)
    account.archived.pop(action_id, None)
    account.ledger[action_id] = entry
    while len(account.ledger) > RECENT_ACTIONS:
        oldest = next(iter(account.ledger))
        account.archived[oldest] = account.ledger.pop(oldest)


def _nowhere(action_id: str) -> Entry | None:
    return None


def _find(account: Account, action_id: str, recall: Recall) -> Entry | None:
    return account.ledger.get(action_id) or account.archived.get(action_id) or recall(action_id)


def _signed(rule: ActionRule, amount: int) -> int:
    return -amount if rule == "debit" else amount


def execute(
    account: Account,
    command: Command,
    rule: ActionRule,
    failure: str | None,
    recall: Recall = _nowhere,
) -> Execution:
    """Apply ``command`` to ``account`` in place, at most once.

    ``rule`` says whether the step's action debits or credits the account. ``failure`` is
    the injected failure decided by the caller for a fresh action (None: no failure).
    ``recall`` finds an action's entry among those archived before this call.
    """
    before = account.balance_cents
    if command.kind == ACTION:
        action_id = command.command_id
        seen = _find(account, action_id, recall)
        if seen is not None:
            if seen.state in ("APPLIED", "COMPENSATED"):
                return Execution("SUCCESS", None, before, before, "repeated")
            error = (
                seen.error if seen.state == "FAILED" else "VOIDED: compensated before it arrived"
            )
            return Execution("FAILED", error, before, before, "repeated")
        delta = _signed(rule, command.amount_cents)
        if failure is None and before + delta < 0:
            failure = "INSUFFICIENT_FUNDS"
        issued = command.issued_at
        if failure is not None:
            _remember(account, action_id, Entry("FAILED", command.amount_cents, issued, failure))
            return Execution("FAILED", failure, before, before, "failed")
        account.balance_cents = before + delta
        _remember(account, action_id, Entry("APPLIED", command.amount_cents, issued))
        return Execution("SUCCESS", None, before, account.balance_cents, "applied")

    # A compensation undoes exactly what its action did, using the amount the ledger
    # recorded, never the amount the compensation claims.
    action_id = command.undoes or ""
    seen = _find(account, action_id, recall)
    if seen is None:
        _remember(account, action_id, Entry("VOIDED", command.amount_cents, command.issued_at))
        return Execution("SUCCESS", None, before, before, "voided")
    if seen.state == "FAILED":
        return Execution("SUCCESS", None, before, before, "nothing_to_undo")
    if seen.state != "APPLIED":
        return Execution("SUCCESS", None, before, before, "repeated")
    after = before - _signed(rule, seen.amount_cents)
    if after < 0:
        # Undoing a credit the account has spent since: no balance goes below zero. Not
        # recorded; the orchestrator sends the compensation again until it can be done.
        return Execution("FAILED", "INSUFFICIENT_FUNDS", before, before, "refused")
    account.balance_cents = after
    _remember(account, action_id, Entry("COMPENSATED", seen.amount_cents, seen.issued_at))
    return Execution("SUCCESS", None, before, after, "applied")
