"""Strict parsing of what clients send. Anything doubtful is a 400 that changes nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from saga_streams.money import parse_cents
from saga_streams.rules import Refused, TransferRules
from saga_streams.saga.dsl import FROM_ACCOUNT, TO_ACCOUNT
from saga_streams.saga.state import STATUSES

__all__ = [
    "SAGA_STATUSES",
    "AccountQuery",
    "BadRequest",
    "SagaQuery",
    "TransferInput",
    "json_object",
    "parse_account_query",
    "parse_saga_query",
    "parse_transfer",
]

SAGA_STATUSES = STATUSES
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


#: A number as a query string writes it: ASCII digits, an optional fraction and exponent.
#: ``float()`` alone also takes "1_000", "inf" and padding, which no client means.
_QUERY_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _is_whole(raw: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²" and Arabic-Indic digits, which
    ``int()`` refuses (a 500) or reads as a number the client did not write."""
    return raw.isascii() and raw.isdigit()


class BadRequest(ValueError):
    """The request is wrong; the message says how, for the ``error`` field of a 400."""


@dataclass(frozen=True)
class TransferInput:
    amount_cents: int
    workflow: str
    from_account: str
    to_account: str


@dataclass(frozen=True)
class AccountQuery:
    limit: int
    cursor: str | None  # the last account id already seen


@dataclass(frozen=True)
class SagaQuery:
    status: str | None
    limit: int
    cursor: tuple[int, str] | None  # (created_at, saga_id) of the last saga already seen
    older_than: float | None = None  # seconds since creation, at least


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"body is not valid JSON: {name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(f"field {key!r} appears twice")
        result[key] = value
    return result


def json_object(content_type: str, body: bytes, example: str = '{"amount": 100}') -> dict[str, Any]:
    """A JSON body that must be an object (like ``example``), strictly: the JSON content
    type, no NaN, no duplicate keys, exact decimals, no nesting deeper than the parser."""
    if content_type != "application/json":
        raise BadRequest("Content-Type must be application/json")
    try:
        # Decimal keeps "0.1" exact, so "at most 2 decimals" is checked on what was sent.
        data = json.loads(
            body,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except BadRequest:
        raise
    except RecursionError:  # brackets nested deeper than the parser recurses
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(f"body must be a JSON object like {example}")
    return data


def parse_transfer(content_type: str, body: bytes, rules: TransferRules) -> TransferInput:
    """Validate ``POST /transfer``: JSON ``{"amount": <dollars>, "workflow": <name>?,
    "from_account": <id>?, "to_account": <id>?}``.

    The workflow and the accounts are checked by ``rules``, the same rules the orchestrator
    applies to a request produced straight onto its topic; a party the request leaves out
    is the owning participant's default account.
    """
    data = json_object(content_type, body)
    fields = ("amount", "workflow", FROM_ACCOUNT, TO_ACCOUNT)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; expected one of {', '.join(fields)}")
    try:
        workflow = rules.workflow(data.get("workflow", rules.workflows.default))
        parties = rules.parties(workflow, data)
    except Refused as exc:
        raise BadRequest(str(exc)) from None
    if "amount" not in data:
        raise BadRequest('missing field "amount"')
    amount = data["amount"]
    if isinstance(amount, str):
        # A string that looks like a number is still a string: refuse rather than guess.
        raise BadRequest("amount must be a JSON number, not a string")
    try:
        amount_cents = parse_cents(amount)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return TransferInput(
        amount_cents=amount_cents,
        workflow=workflow.name,
        from_account=parties.get(FROM_ACCOUNT, ""),
        to_account=parties.get(TO_ACCOUNT, ""),
    )


def _limit(query: Mapping[str, str]) -> int:
    if "limit" not in query:
        return DEFAULT_PAGE_SIZE
    raw = query["limit"]
    if not _is_whole(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def parse_account_query(query: Mapping[str, str]) -> AccountQuery:
    """Validate ``GET /accounts`` parameters: ``limit`` and ``cursor``."""
    unknown = sorted(set(query) - {"limit", "cursor"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}")
    cursor = query.get("cursor")
    if cursor is not None and not cursor:
        raise BadRequest("cursor is empty; use the 'next' link of the previous page")
    return AccountQuery(limit=_limit(query), cursor=cursor)


def parse_saga_query(query: dict[str, str]) -> SagaQuery:
    """Validate ``GET /sagas`` parameters: ``status``, ``limit``, ``cursor``, ``older_than``."""
    unknown = sorted(set(query) - {"status", "limit", "cursor", "older_than"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}")
    status = query.get("status")
    if status is not None and status not in SAGA_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(SAGA_STATUSES)}")
    limit = _limit(query)
    cursor = None
    if "cursor" in query:
        created, _, saga_id = query["cursor"].partition(".")
        if not _is_whole(created) or not saga_id:
            raise BadRequest("cursor is malformed; use the 'next' link of the previous page")
        cursor = (int(created), saga_id)
    older_than = None
    if "older_than" in query:
        raw = query["older_than"]
        older_than = float(raw) if _QUERY_NUMBER.fullmatch(raw) else -1.0
        if not 0 <= older_than < 10**9:  # also rejects NaN
            raise BadRequest("older_than must be a number of seconds, 0 or more")
    return SagaQuery(status=status, limit=limit, cursor=cursor, older_than=older_than)
