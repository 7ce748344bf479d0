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

The ledger window: entries expire, late duplicates still never apply twice
-------------------------------------------------------------------------
Kept forever, the archive would grow by one key per action. So entries expire, on *stream
time* (``Window.now``): the latest record timestamp the participant has processed on the
command's topic partition, never ahead of its own clock. A participant that was down for
a day catches up on its backlog at the stream time of that backlog and forgets nothing
meanwhile. Each entry records ``touched_at``, the stream time of the last command that
wrote it (applied, failed, voided, compensated, a compensation refused for funds, or a
duplicate answered from it). With ``K = RetryPolicy.ledger_retention_ms(steps)`` (the most
steps of any workflow):

- an entry is *expired* once ``now - touched_at > K``; ``execute`` treats it as absent,
  in the account value and in the archive alike, whether or not the sweep
  (agents/participant.py) has removed it yet, so no answer depends on when a sweep ran;
- an action with no live entry, issued (``Command.issued_at``) more than the action
  window plus ``ARRIVAL_MARGIN_MS`` before ``now``, is refused ``EXPIRED``: never applied,
  never recorded.

Why no command then takes effect twice. Commands about one action are keyed by its
account, so each lands in one partition of its topic in append order, and a record sent
at ``s`` is appended within ``ARRIVAL_MARGIN_MS`` (which also covers the clocks of the
orchestrator and the participant differing): it is processed before the stream time of
its partition passes ``s + ARRIVAL_MARGIN_MS``.

1. A legitimate command about an action is sent within ``command_window_ms(steps)`` of
   the previous one (the retry policy: resends at most ``max_delay_ms`` apart, a
   compensation at most the later steps' action windows after its action), so it is
   processed at a stream time within ``K`` of the entry's last touch and finds the entry:
   it is answered from the ledger, as before.
2. The orchestrator never sends an action more than its action window after
   ``issued_at``, so an action with no live entry refused for its age is a replay (kcat,
   a stale redelivery): had it run here, its entry would be live or the action would be
   older still. The saga, if it still waits, compensates; the compensation voids an
   action that never ran. The age is checked only once the ledger has no live answer,
   so an action that ran is never answered FAILED.
3. A replayed compensation after expiry finds nothing, records ``VOIDED`` and moves
   nothing: harmless whether its action was compensated (undone once already), completed
   without compensation (its saga ended; it stays done), or never ran. The ``VOIDED``
   entry then refuses the action by age and by ledger alike.

The assumption under 1: every compensation is acknowledged the first time it can be
done, and a compensation refused for funds refreshes its own entry each time it is
refused (it is sent again until it can be done). A rollback that waits longer than ``K``
on a *later* step's compensation refused for funds goes beyond it: the earlier steps'
entries are not touched meanwhile, expire, and their compensations then void instead of
undoing. The participant logs such a late void (compensation issued more than ``K``
ago with nothing left to undo) as a warning.

An operator's retry grants an action a new round of sends under the same ``issued_at``,
so its sends may come later than its action window. An action that ran here is answered
from its entry, which each duplicate refreshes; one that never ran is refused by age,
its saga rolls back without it, and every later copy is refused by age too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from saga_streams.messages import ACTION, Command, ReplyStatus

__all__ = [
    "RECENT_ACTIONS",
    "Account",
    "ActionRule",
    "Entry",
    "Execution",
    "Window",
    "execute",
]

EntryState = Literal["APPLIED", "FAILED", "COMPENSATED", "VOIDED"]

#: How many of its latest actions an account keeps in its table value. A command comes
#: again while its saga is in flight (a redelivery after a crash, or the orchestrator
#: resending after a timeout), usually within seconds, so many lookups end here; older
#: entries are archived under their own keys, one read away. The value is read, decoded,
#: encoded and written to the changelog on every command of the account, so the bound
#: is its cost: with 64 entries (4.4 KB) that took 106 µs a command, with 16 (1.1 KB)
#: 27 µs. Every action is archived once pushed out, whatever the bound, so a smaller one
#: writes no more keys.
RECENT_ACTIONS = 16

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
    #: Stream time (epoch ms) of the command that last wrote the entry; the entry expires
    #: ``Window.retention_ms`` after it.
    touched_at: int = 0

    def to_list(self) -> list[Any]:
        """As stored: in the account value's ledger, or alone under an archive key."""
        return [self.state, self.amount_cents, self.issued_at, self.error, self.touched_at]

    @classmethod
    def from_list(cls, data: list[Any]) -> Entry:
        # Entries stored before they recorded a touch read as touched when issued.
        touched = data[4] if len(data) > 4 else data[2]
        return cls(data[0], data[1], data[2], data[3], touched)


@dataclass(frozen=True)
class Window:
    """The ledger window ``execute`` works in (see the module docstring)."""

    #: Stream time of the command's topic partition (epoch ms).
    now: int = 0
    #: ``K``: how long after its last touch an entry is remembered; None: forever.
    retention_ms: int | None = None
    #: How old (by ``issued_at``) an action with no entry may be; None: any age.
    action_limit_ms: int | None = None

    def expired(self, entry: Entry, grace_ms: int = 0) -> bool:
        """Whether ``entry`` is forgotten (``grace_ms``: only if for that much longer)."""
        if self.retention_ms is None:
            return False
        return self.now - entry.touched_at > self.retention_ms + grace_ms

    def too_old(self, command: Command) -> bool:
        """Whether the orchestrator would have given up on ``command``'s action by now."""
        if self.action_limit_ms is None:
            return False
        return self.now - command.issued_at > self.action_limit_ms


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


Outcome = Literal[
    "applied", "failed", "voided", "repeated", "nothing_to_undo", "refused", "expired"
]


@dataclass(frozen=True)
class Execution:
    """What executing a command did: the answer for the orchestrator and for the log."""

    status: ReplyStatus
    error: str | None
    balance_before: int
    balance_after: int
    #: applied: money moved now; failed: refused now (funds, injected failure);
    #: voided: a compensation came before its action (or after its entry expired);
    #: repeated: answered from the ledger; nothing_to_undo: compensation of a refused
    #: action; refused: a compensation that would overdraw, not done now, to be tried
    #: again; expired: an action too old to run, refused and not recorded.
    what: Outcome
    #: The command refreshed its entry's ``touched_at`` without changing its state.
    touched: bool = False

    @property
    def recorded(self) -> bool:
        """The account changed (balance or ledger) and must be stored."""
        return self.touched or self.what in ("applied", "failed", "voided")


def _remember(account: Account, action_id: str, entry: Entry, window: Window) -> None:
    account.ledger.pop(action_id, None)
    account.archived.pop(action_id, None)
    account.ledger[action_id] = entry
    while len(account.ledger) > RECENT_ACTIONS:
        oldest = next(iter(account.ledger))
        leaving = account.ledger.pop(oldest)
        # An expired entry is not archived: it would only wait there for the sweep.
        if not window.expired(leaving):
            account.archived[oldest] = leaving


def _nowhere(action_id: str) -> Entry | None:
    return None


def _find(account: Account, action_id: str, recall: Recall, window: Window) -> Entry | None:
    """The action's live entry. The first copy found is the latest (the account value
    is written after the archive), so an expired one means the action is forgotten."""
    for look_up in (account.ledger.get, account.archived.get, recall):
        entry = look_up(action_id)
        if entry is not None:
            return None if window.expired(entry) else entry
    return None


def _touch(account: Account, action_id: str, entry: Entry, window: Window) -> bool:
    """Refresh ``entry``'s last touch to now; whether that changed it."""
    if entry.touched_at >= window.now:
        return False
    _remember(account, action_id, replace(entry, touched_at=window.now), window)
    return True


def _signed(rule: ActionRule, amount: int) -> int:
    return -amount if rule == "debit" else amount


def execute(
    account: Account,
    command: Command,
    rule: ActionRule,
    failure: str | None,
    recall: Recall = _nowhere,
    window: Window = Window(),
) -> Execution:
    """Apply ``command`` to ``account`` in place, at most once.

    ``rule`` says whether the step's action debits or credits the account. ``failure`` is
    the injected failure decided by the caller for a fresh action (None: no failure).
    ``recall`` finds an action's entry among those archived before this call; ``window``
    is the stream time and the ledger window (default: nothing ever expires).
    """
    if command.kind == ACTION:
        return _act(account, command, rule, failure, recall, window)
    return _compensate(account, command, rule, recall, window)


def _act(
    account: Account,
    command: Command,
    rule: ActionRule,
    failure: str | None,
    recall: Recall,
    window: Window,
) -> Execution:
    before = account.balance_cents
    action_id = command.command_id
    seen = _find(account, action_id, recall, window)
    if seen is not None:
        touched = _touch(account, action_id, seen, window)
        if seen.state in ("APPLIED", "COMPENSATED"):
            return Execution("SUCCESS", None, before, before, "repeated", touched)
        error = seen.error if seen.state == "FAILED" else "VOIDED: compensated before it arrived"
        return Execution("FAILED", error, before, before, "repeated", touched)
    if window.too_old(command):
        age = (window.now - command.issued_at) / 1000
        limit = (window.action_limit_ms or 0) / 1000
        error = (
            f"EXPIRED: issued {age:.0f}s ago, after the orchestrator gives up on an action "
            f"({limit:.0f}s)"
        )
        return Execution("FAILED", error, before, before, "expired")
    delta = _signed(rule, command.amount_cents)
    if failure is None and before + delta < 0:
        failure = "INSUFFICIENT_FUNDS"
    amount, issued, now = command.amount_cents, command.issued_at, window.now
    if failure is not None:
        _remember(account, action_id, Entry("FAILED", amount, issued, failure, now), window)
        return Execution("FAILED", failure, before, before, "failed")
    account.balance_cents = before + delta
    _remember(account, action_id, Entry("APPLIED", amount, issued, None, now), window)
    return Execution("SUCCESS", None, before, account.balance_cents, "applied")


def _compensate(
    account: Account, command: Command, rule: ActionRule, recall: Recall, window: Window
) -> Execution:
    # A compensation undoes exactly what its action did, using the amount the ledger
    # recorded, never the amount the compensation claims.
    before = account.balance_cents
    action_id = command.undoes or ""
    seen = _find(account, action_id, recall, window)
    if seen is None:
        voided = Entry("VOIDED", command.amount_cents, command.issued_at, None, window.now)
        _remember(account, action_id, voided, window)
        return Execution("SUCCESS", None, before, before, "voided")
    if seen.state != "APPLIED":
        touched = _touch(account, action_id, seen, window)
        what: Outcome = "nothing_to_undo" if seen.state == "FAILED" else "repeated"
        return Execution("SUCCESS", None, before, before, what, touched)
    after = before - _signed(rule, seen.amount_cents)
    if after < 0:
        # Undoing a credit the account has spent since: no balance goes below zero. The
        # orchestrator sends the compensation again until it can be done; each refusal
        # refreshes the entry, so it outlives however long that takes.
        touched = _touch(account, action_id, seen, window)
        return Execution("FAILED", "INSUFFICIENT_FUNDS", before, before, "refused", touched)
    account.balance_cents = after
    undone = replace(seen, state="COMPENSATED", touched_at=window.now)
    _remember(account, action_id, undone, window)
    return Execution("SUCCESS", None, before, after, "applied")
