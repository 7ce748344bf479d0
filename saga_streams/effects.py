"""What a completed saga does to each account: the one definition the orchestrator's
settled totals (``tables/settled.py``) and the audit (``audit.py``) both use, so that
the money of a saga removed from the table is counted exactly as it was while held."""

from __future__ import annotations

from saga_streams.roles import PARTICIPANTS
from saga_streams.saga.dsl import Workflow

__all__ = ["saga_effects"]


def saga_effects(
    workflow: Workflow | None, amount_cents: int, from_account: str, to_account: str
) -> dict[str, int]:
    """account -> signed cents that a saga of ``workflow`` moves when it completes.
    None (a refused request naming a workflow that does not exist) moves nothing."""
    effects: dict[str, int] = {}
    if workflow is None:
        return effects
    for step in workflow.steps:
        participant = PARTICIPANTS[step.participant]
        sign = -1 if participant.effects[step.action] == "debit" else 1
        account = step.account_for(from_account, to_account)
        effects[account] = effects.get(account, 0) + sign * step.amount_cents(amount_cents)
    return effects
