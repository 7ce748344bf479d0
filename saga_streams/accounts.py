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

The ledger keeps the most recent ``LEDGER_CAPACITY`` actions. Every command carries
``issued_at``, when the orchestrator first issued its step, and the account remembers the
newest ``issued_at`` it has evicted (its *horizon*). A command missing from the ledger but
issued at or before the horizon may have been applied and forgotten, so it is refused
instead of guessed at: an action is not applied (a replay of an old deduct takes no money),
and a compensation answers FAILED (``LEDGER_EXPIRED``) without moving money, which keeps
its saga COMPENSATING and visible to an operator rather than silently wrong.
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

#: How many recent actions an account remembers. A command comes again while its saga
#: is in flight (a redelivery after a crash, or the orchestrator sending it again after a
#: timeout), which at the default retry policy means within a few minutes; the oldest go
#: first. The bound keeps the table value, written to the changelog on every command,
#: small (about 50 bytes an entry, 100 KB when full).
LEDGER_CAPACITY = 2000

EXPIRED = "EXPIRED: issued before the oldest command this account remembers"

#: The sign of each action's effect on the balance; a compensation applies the opposite.
ActionRule = Literal["debit", "credit"]


@dataclass(frozen=True)
class Entry:
    state: EntryState
    amount_cents: int
    issued_at: int
    error: str | None = None


@dataclass
class Account:
    account_id: str
    balance_cents: int
    ledger: dict[str, Entry] = field(default_factory=dict)  # insertion-ordered: oldest first
    horizon: int = 0  # the newest issued_at evicted from the ledger

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "balance_cents": self.balance_cents,
            "horizon": self.horizon,
            "ledger": {
                k: [e.state, e.amount_cents, e.issued_at, e.error] for k, e in self.ledger.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(
            account_id=data["account_id"],
            balance_cents=data["balance_cents"],
            horizon=data.get("horizon", 0),
            ledger={
                k: Entry(state=v[0], amount_cents=v[1], issued_at=v[2], error=v[3])
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
    #: applied: money moved now; failed: refused now (funds, injected failure);
    #: voided: a compensation came before its action; repeated: answered from the
    #: ledger; nothing_to_undo: compensation of a refused action; expired: beyond the
    #: ledger's memory, refused without a trace.
    what: Literal["applied", "failed", "voided", "repeated", "nothing_to_undo", "expired"]

    @property
    def recorded(self) -> bool:
        """The account changed (balance or ledger) and must be stored."""
        return self.what in ("applied", "failed", "voided")


def _remember(account: Account, action_id: str, entry: Entry) -> None:
    account.ledger.pop(action_id, None)
    account.ledger[action_id] = entry
    while len(account.ledger) > LEDGER_CAPACITY:
        oldest = account.ledger.pop(next(iter(account.ledger)))
        account.horizon = max(account.horizon, oldest.issued_at)


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
                return Execution("SUCCESS", None, before, before, "repeated")
            error = (
                seen.error if seen.state == "FAILED" else "VOIDED: compensated before it arrived"
            )
            return Execution("FAILED", error, before, before, "repeated")
        if command.issued_at <= account.horizon:
            # Forgotten or never seen, we cannot tell: refuse, and record nothing, so a
            # compensation of the original is not mistaken for one of a refused action.
            return Execution("FAILED", EXPIRED, before, before, "expired")
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
    seen = account.ledger.get(action_id)
    if seen is None:
        if command.issued_at <= account.horizon:
            error = f"LEDGER_EXPIRED: cannot tell whether {action_id} ran here"
            return Execution("FAILED", error, before, before, "expired")
        _remember(account, action_id, Entry("VOIDED", command.amount_cents, command.issued_at))
        return Execution("SUCCESS", None, before, before, "voided")
    if seen.state == "FAILED":
        return Execution("SUCCESS", None, before, before, "nothing_to_undo")
    if seen.state != "APPLIED":
        return Execution("SUCCESS", None, before, before, "repeated")
    account.balance_cents = before - _signed(rule, seen.amount_cents)
    _remember(account, action_id, Entry("COMPENSATED", seen.amount_cents, seen.issued_at))
    return Execution("SUCCESS", None, before, account.balance_cents, "applied")
