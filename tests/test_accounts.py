"""A participant's account: at most once per command, compensation undoes only what ran."""

from __future__ import annotations

from saga_streams.accounts import RECENT_ACTIONS, Account, Entry, execute
from saga_streams.messages import Command


def action(step_id: str = "s1-1", amount: int = 100_00, issued_at: int = 1_000) -> Command:
    return Command(step_id, "s1", 1, "ACTION", "deduct", "A", amount, issued_at=issued_at)


def undo(step_id: str = "s1-1", amount: int = 100_00, issued_at: int = 1_000) -> Command:
    return Command(
        f"{step_id}-undo",
        "s1",
        1,
        "COMPENSATION",
        "refund",
        "A",
        amount,
        issued_at=issued_at,
        undoes=step_id,
    )


def test_deduct_moves_money_once_however_often_delivered() -> None:
    account = Account("A", 1000_00)
    first = execute(account, action(), "debit", None)
    assert (first.status, first.balance_before, first.balance_after) == ("SUCCESS", 1000_00, 900_00)
    again = execute(account, action(), "debit", None)
    assert (
        again.what == "repeated" and again.status == "SUCCESS" and account.balance_cents == 900_00
    )


def test_injected_failure_is_remembered_for_redelivery() -> None:
    account = Account("A", 1000_00)
    assert execute(account, action(), "debit", "Account verification failed").status == "FAILED"
    again = execute(account, action(), "debit", None)  # a second roll would have succeeded
    assert again.status == "FAILED" and again.error == "Account verification failed"
    assert account.balance_cents == 1000_00


def test_insufficient_funds_never_goes_negative() -> None:
    account = Account("A", 50_00)
    result = execute(account, action(amount=50_01), "debit", None)
    assert (result.status, result.error, account.balance_cents) == (
        "FAILED",
        "INSUFFICIENT_FUNDS",
        50_00,
    )
    assert execute(account, action("s2-1", 50_00), "debit", None).status == "SUCCESS"
    assert account.balance_cents == 0


def test_refund_undoes_once_using_the_recorded_amount() -> None:
    account = Account("A", 1000_00)
    execute(account, action(amount=100_00), "debit", None)
    # Even a compensation that claims another amount gives back what was really taken.
    refund = execute(account, undo(amount=999_00), "debit", None)
    assert refund.status == "SUCCESS" and account.balance_cents == 1000_00
    assert execute(account, undo(), "debit", None).what == "repeated"
    assert account.balance_cents == 1000_00
    # The action, redelivered after its refund, does not take money again.
    assert execute(account, action(), "debit", None).what == "repeated"
    assert account.balance_cents == 1000_00


def test_refund_of_a_failed_action_moves_nothing() -> None:
    account = Account("A", 1000_00)
    execute(account, action(), "debit", "boom")
    assert execute(account, undo(), "debit", None).status == "SUCCESS"
    assert account.balance_cents == 1000_00


def test_compensation_before_its_action_voids_the_action() -> None:
    account = Account("A", 1000_00)
    early = execute(account, undo(), "debit", None)
    assert early.status == "SUCCESS" and early.what == "voided"
    late = execute(account, action(), "debit", None)
    assert late.status == "FAILED" and "VOIDED" in (late.error or "")
    assert account.balance_cents == 1000_00


def test_remove_undoes_an_add_on_a_credit_account() -> None:
    account = Account("B", 500_00)
    add = Command("s1-2", "s1", 2, "ACTION", "add", "B", 100_00, issued_at=5)
    remove = Command(
        "s1-2-undo", "s1", 2, "COMPENSATION", "remove", "B", 100_00, issued_at=5, undoes="s1-2"
    )
    execute(account, add, "credit", None)
    assert account.balance_cents == 600_00
    execute(account, remove, "credit", None)
    assert account.balance_cents == 500_00


def test_ledger_is_bounded_and_round_trips() -> None:
    account = Account("A", 10**9)
    for n in range(RECENT_ACTIONS + 10):
        execute(account, action(f"s{n}-1", 1, issued_at=10 + n), "debit", None)
    assert len(account.ledger) == RECENT_ACTIONS
    assert "s0-1" not in account.ledger and f"s{RECENT_ACTIONS + 9}-1" in account.ledger
    assert list(account.archived) == [f"s{n}-1" for n in range(10)]  # the ten oldest
    assert Account.from_dict(account.to_dict()) == account


def test_failure_injection_is_stable_per_command_and_near_its_rate() -> None:
    from saga_streams.faults import should_fail

    ids = [f"saga{n}-1" for n in range(20_000)]
    decisions = [should_fail("service-a", i, 0.2) for i in ids]
    assert decisions == [should_fail("service-a", i, 0.2) for i in ids]
    assert 0.18 < sum(decisions) / len(ids) < 0.22
    assert not any(should_fail("service-a", i, 0.0) for i in ids)
    assert all(should_fail("service-a", i, 1.0) for i in ids)


def test_archived_actions_are_still_answered_and_undone_once() -> None:
    """Entries that left the account value are found through ``recall``, as the table's
    archive keys find them, and keep every at-most-once rule."""
    account = Account("A", 10**9)
    archive: dict[str, Entry] = {}
    for n in range(RECENT_ACTIONS + 5):
        execute(account, action(f"s{n}-1", 1, issued_at=10 + n), "debit", None, archive.get)
        archive.update(account.archived)  # what AccountStore.put stores under own keys
        account.archived.clear()
    assert "s0-1" not in account.ledger and "s0-1" in archive
    balance = account.balance_cents

    replay = execute(account, action("s0-1", 1, issued_at=10), "debit", None, archive.get)
    assert (replay.status, replay.what) == ("SUCCESS", "repeated") and not replay.recorded
    assert account.balance_cents == balance

    refund = execute(account, undo("s1-1", 1, issued_at=11), "debit", None, archive.get)
    assert (refund.status, refund.what) == ("SUCCESS", "applied")
    assert account.balance_cents == balance + 1
    assert account.ledger["s1-1"].state == "COMPENSATED"  # back in the value, up to date
    again = execute(account, undo("s1-1", 1, issued_at=11), "debit", None, archive.get)
    assert again.what == "repeated" and account.balance_cents == balance + 1

    never_seen = execute(account, undo("zz-1", 1, issued_at=5), "debit", None, archive.get)
    assert never_seen.what == "voided"  # nothing to undo, and the late action is refused
    late = execute(account, action("zz-1", 1, issued_at=5), "debit", None, archive.get)
    assert (late.status, late.what) == ("FAILED", "repeated")


def test_undoing_a_credit_already_spent_is_refused_not_overdrawn() -> None:
    account = Account("B", 0)
    add = Command("s1-2", "s1", 2, "ACTION", "add", "B", 100_00, issued_at=5)
    remove = Command(
        "s1-2-undo", "s1", 2, "COMPENSATION", "remove", "B", 100_00, issued_at=5, undoes="s1-2"
    )
    execute(account, add, "credit", None)
    account.balance_cents = 40_00  # spent since, by a debit of the same account

    result = execute(account, remove, "credit", None)
    assert (result.status, result.error, result.recorded) == ("FAILED", "INSUFFICIENT_FUNDS", False)
    assert account.balance_cents == 40_00 and account.ledger["s1-2"].state == "APPLIED"

    account.balance_cents = 100_00  # funds back: the compensation sent again goes through
    assert execute(account, remove, "credit", None).status == "SUCCESS"
    assert account.balance_cents == 0
