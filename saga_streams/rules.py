"""The rules an input must satisfy, wherever it enters: HTTP or a Kafka topic.

``POST /transfer`` is not the only door. Anyone with a producer (kcat, another team's
service, an operator re-sending by hand) can write a ``TransferRequested`` onto
``transfer-requests`` or a command onto a participant's topic. So the HTTP view and the
agents check with the same functions, here:

- ``TransferRules.check``: a transfer request (the view, then the orchestrator agent, which
  turns a refused one into a FAILED saga that names the reason and starts no step);
- ``command_refusal``: a command (the participant, which answers a refused one FAILED and
  never applies it).

Anything refused changes no balance.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from saga_streams.messages import COMPENSATION, Command, TransferRequested
from saga_streams.money import check_cents
from saga_streams.saga.dsl import FROM_ACCOUNT, TO_ACCOUNT, Registry, Workflow

__all__ = [
    "IDENTIFIER",
    "ID_RULE",
    "MAX_EPOCH_MS",
    "Refused",
    "TransferRules",
    "command_refusal",
    "late_refusal",
]

#: An account id or a saga id: letters, digits, ``_``, ``.`` and ``-``, at most 64. Readable
#: as a Kafka key, safe in a URL path, and never holding the ``/`` of archive keys.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ID_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
#: 9999-12-31T23:59:59.999Z: the latest time an ISO 8601 date can show.
MAX_EPOCH_MS = 253_402_300_799_999


class Refused(ValueError):
    """An input breaks a rule; the message says which, for a 400 or a FAILED saga."""


@dataclass(frozen=True)
class TransferRules:
    """What a transfer may ask for: a known workflow, accounts its participants own, two
    different parties, an amount in range."""

    workflows: Registry
    #: participant role name -> the accounts it owns
    accounts: Mapping[str, Collection[str]]
    #: participant role name -> its default account (the seed's A, B, C)
    default_accounts: Mapping[str, str]

    def workflow(self, name: object) -> Workflow:
        workflow = self.workflows.get(name) if isinstance(name, str) else None
        if workflow is None:
            raise Refused(f"unknown workflow {name!r}; use one of: {', '.join(self.workflows)}")
        return workflow

    def parties(self, workflow: Workflow, given: Mapping[str, object]) -> dict[str, str]:
        """The account of each party of ``workflow`` (``from_account``, ``to_account``):
        as ``given``, or the owning participant's default when absent."""
        parties: dict[str, str] = {}
        for party, owner in workflow.parties().items():
            account = given[party] if party in given else self.default_accounts.get(owner)
            if not isinstance(account, str):
                raise Refused(f"{party} must be a string, an account id of {owner}")
            if account not in self.accounts.get(owner, ()):
                raise Refused(f"unknown {party} {account!r}: {owner} has no such account")
            parties[party] = account
        if parties.get(FROM_ACCOUNT, "") == parties.get(TO_ACCOUNT):
            raise Refused("from_account and to_account are the same account")
        return parties

    def check(self, request: TransferRequested) -> None:
        """Raise ``Refused`` if the orchestrator must not start this request's saga. (Its
        ``saga_id`` must match ``IDENTIFIER``, or there is no saga to record a refusal
        under: the agent skips such a request before it gets here.)"""
        workflow = self.workflow(request.workflow)
        given = {FROM_ACCOUNT: request.from_account, TO_ACCOUNT: request.to_account}
        self.parties(workflow, given)
        try:
            check_cents(request.amount_cents)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if not 0 <= request.requested_at <= MAX_EPOCH_MS:
            raise Refused("requested_at must be a time in epoch milliseconds")


def late_refusal(request: TransferRequested, appended_at: int | None) -> str | None:
    """Why a request Kafka appended after its ``accept_by`` must not run: the view had
    stopped waiting by then and answered 503. ``appended_at``: the broker's append time
    (epoch ms; None when the topic stamps create times, which say nothing of it)."""
    if request.accept_by is None or appended_at is None or appended_at <= request.accept_by:
        return None
    late = (appended_at - request.accept_by) / 1000
    return (
        f"NOT_ACCEPTED: Kafka appended the request {late:.1f}s after its deadline; "
        "the client was answered 503"
    )


def command_refusal(
    command: Command, topic: str, action: str, owned: Collection[str]
) -> str | None:
    """Why a participant must refuse ``command``, consumed on ``topic`` (which carries
    ``action``), for its accounts ``owned``; None if it may execute it.

    A refused command is answered FAILED with this error, is not recorded in the ledger,
    and moves no money. Its reply names the account and amount it asked for, so the
    orchestrator does not mistake it for the answer to a command it sent itself (see
    ``saga/engine.py``).
    """
    if command.account not in owned:
        return f"UNKNOWN_ACCOUNT: {command.account}"
    if command.action != action:
        return f"UNKNOWN_ACTION: {topic} carries {action!r}, not {command.action!r}"
    try:
        check_cents(command.amount_cents)
    except ValueError as exc:
        return f"INVALID_AMOUNT: {exc}"
    if command.kind == COMPENSATION and not command.undoes:
        return "INVALID_COMMAND: a compensation must name the action it undoes ('undoes')"
    return None
