"""``python -m saga_streams audit``: check the invariants through the HTTP API.

Reads every saga and every balance, then checks the invariants (README, "Invariants"):
1. conservation: the accounts hold the opening total, less what in-flight sagas hold;
2. outcome consistency: each balance is its opening balance plus the effects of the
   COMPLETED sagas (exactly, with no saga in flight; within the in-flight amounts else);
4. termination: no saga older than ``--stuck-after`` seconds is still in flight;
5. no negative balance;
and that no key of any role's table is held in a partition it does not belong to (a
phantom copy of an account or a saga, ``GET /integrity``).

Sagas that ended longer ago than the retention are no longer held: the orchestrator
settled their totals before removing them (``GET /retention``), and the audit counts
those totals as it counts the sagas still held.
Prints a short report; exits 1 on any violation, 2 if an API cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from saga_streams.config import ConfigError, Settings, load_settings
from saga_streams.effects import saga_effects
from saga_streams.http_client import http_json
from saga_streams.money import cents, format_dollars
from saga_streams.partitions import partition_for
from saga_streams.roles import PARTICIPANTS
from saga_streams.saga.dsl import Registry
from saga_streams.saga.state import TERMINAL, epoch_seconds
from saga_streams.workflows import WORKFLOWS

__all__ = [
    "AuditReport",
    "SettledTotals",
    "audit",
    "audit_api",
    "main",
    "misplaced_violation",
    "read_settled",
    "settled_totals",
]


@dataclass
class AuditReport:
    balances: dict[str, int]  # account -> cents
    opening: dict[str, int]
    statuses: Counter[str] = field(default_factory=Counter)
    #: Of ``statuses``, those of sagas removed once expired (the settled totals).
    expired: Counter[str] = field(default_factory=Counter)
    misplaced: int = 0  # keys held in a partition they do not belong to
    in_flight: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        lines = [
            "saga_streams audit",
            "  sagas: "
            + (", ".join(f"{s} {n}" for s, n in sorted(self.statuses.items())) or "none"),
            "  balances: "
            + (
                ", ".join(f"{a} {format_dollars(c)}" for a, c in sorted(self.balances.items()))
                if len(self.balances) <= _SHOWN
                else f"{len(self.balances)} accounts"
            )
            + f" (total {format_dollars(sum(self.balances.values()))},"
            + f" opening {format_dollars(sum(self.opening.values()))})",
        ]
        if self.expired:
            lines.insert(
                2,
                "  expired and settled: "
                + ", ".join(f"{s} {n}" for s, n in sorted(self.expired.items())),
            )
        lines += [f"  ❌ {v}" for v in self.violations] or ["  ✅ every invariant holds"]
        return "\n".join(lines)


#: Up to this many accounts, the report names each balance; beyond, it counts them.
_SHOWN = 8


def _effects(saga: Mapping[str, Any], workflows: Registry) -> dict[str, int]:
    """What a saga (as the API shows it) does to each account when it completes."""
    workflow = workflows.get(saga["workflow"])
    parties = saga["from_account"], saga["to_account"]
    return saga_effects(workflow, cents(saga["amount"]), *parties)


@dataclass(frozen=True)
class SettledTotals:
    """What the expired sagas add up to (``GET /retention``): they are no longer held."""

    #: terminal status -> how many sagas in it expired
    expired: Mapping[str, int] = field(default_factory=dict)
    #: account -> signed cents the expired COMPLETED sagas moved
    effects: Mapping[str, int] = field(default_factory=dict)
    #: partition -> (updated_at epoch ms, saga_id) of the last saga settled in it
    through: Mapping[int, tuple[int, str]] = field(default_factory=dict)
    partitions: int = 1

    def covers(self, saga: Mapping[str, Any]) -> bool:
        """Whether a listed saga is in the totals already: it expired while the listing
        was read, and is counted there, not twice."""
        through = self.through.get(partition_for(saga["saga_id"], self.partitions))
        if through is None or "updated_at" not in saga:
            return False
        return (round(epoch_seconds(saga["updated_at"]) * 1000), saga["saga_id"]) <= through


def settled_totals(body: Mapping[str, Any]) -> SettledTotals:
    """``GET /retention``'s answer as ``SettledTotals``."""
    through = {
        item["partition"]: (
            round(epoch_seconds(item["through"]["updated_at"]) * 1000),
            item["through"]["saga_id"],
        )
        for item in body["partitions"]
        if item["through"] is not None
    }
    return SettledTotals(
        expired={status: n for status, n in body["expired"].items() if n},
        effects={account: cents(amount) for account, amount in body["effects"].items()},
        through=through,
        partitions=body["partition_count"],
    )


def misplaced_violation(role: str, item: Mapping[str, Any]) -> str:
    """``account A held in partitions 1 and 3 (it belongs in 1)``, from ``GET /integrity``."""
    key, home, held = item["key"], item["partition"], item["held_in"]
    noun = "saga" if role == "orchestrator" else ("ledger entry" if "/" in key else "account")
    *others, last = (str(p) for p in held)
    where = f"{', '.join(others)} and {last}" if others else last
    return (
        f"{noun} {key} held in partition{'s' if len(held) > 1 else ''} {where} "
        f"(it belongs in {home}; {role})"
    )


@dataclass
class _Books:
    """What the sagas say each account should hold: exactly (``expected``, from the
    COMPLETED ones) and, with sagas in flight, within [``low``, ``high``]."""

    expected: dict[str, int]
    low: dict[str, int]
    high: dict[str, int]
    in_flight_sum: int = 0  # money in-flight sagas may have taken out and not yet put back
    stuck: list[str] = field(default_factory=list)

    @classmethod
    def opening(cls, opening: Mapping[str, int]) -> _Books:
        return cls(dict(opening), dict(opening), dict(opening))

    def add(self, effects: Mapping[str, int], completed: bool) -> None:
        for account, delta in effects.items():
            if completed:
                self.expected[account] += delta
            self.low[account] += delta if completed else min(delta, 0)
            self.high[account] += delta if completed else max(delta, 0)
        if not completed:
            self.in_flight_sum -= sum(delta for delta in effects.values() if delta < 0)


def audit(
    sagas: Sequence[Mapping[str, Any]],
    balances: Mapping[str, int],
    opening: Mapping[str, int],
    stuck_after_s: float,
    now_s: float | None = None,
    *,
    workflows: Registry,
    misplaced: Sequence[str] = (),
    settled: SettledTotals | None = None,
) -> AuditReport:
    """The checks themselves, on data already read (pure, so it is unit-tested).
    ``misplaced``: one line per key held in a partition it does not belong to;
    ``settled``: the totals of the sagas removed once expired, counted as if held."""
    now_s = time.time() if now_s is None else now_s
    report = AuditReport(balances=dict(balances), opening=dict(opening))
    report.misplaced = len(misplaced)
    report.violations.extend(f"partitioning: {line}" for line in misplaced)
    books = _Books.opening(opening)
    if settled is not None:
        report.expired.update(settled.expired)
        report.statuses.update(settled.expired)
        books.add(settled.effects, completed=True)
        sagas = [saga for saga in sagas if not settled.covers(saga)]
    for saga in sagas:
        report.statuses[saga["status"]] += 1
        if saga["status"] == "COMPLETED":
            books.add(_effects(saga, workflows), completed=True)
        elif saga["status"] not in TERMINAL:
            report.in_flight += 1
            books.add(_effects(saga, workflows), completed=False)
            if now_s - epoch_seconds(saga["created_at"]) > stuck_after_s:
                books.stuck.append(saga["saga_id"])
    report.violations += _book_violations(books, balances, opening, exact=not report.in_flight)
    if books.stuck:
        report.violations.append(
            f"termination: {len(books.stuck)} saga(s) in flight for over {stuck_after_s:g}s, "
            f"e.g. {', '.join(books.stuck[:3])}"
        )
    return report


def _book_violations(
    books: _Books, balances: Mapping[str, int], opening: Mapping[str, int], exact: bool
) -> list[str]:
    """Conservation, outcome consistency and no negative balance."""
    violations = []
    total, opening_total = sum(balances.values()), sum(opening.values())
    if not opening_total - books.in_flight_sum <= total <= opening_total:
        violations.append(
            f"conservation: accounts hold {format_dollars(total)}, opening total "
            f"{format_dollars(opening_total)}, in flight {format_dollars(books.in_flight_sum)}"
        )
    for account, balance in sorted(balances.items()):
        expected = books.expected[account]
        if (exact and balance != expected) or not books.low[account] <= balance <= books.high[
            account
        ]:
            violations.append(
                f"outcome consistency: account {account} holds {format_dollars(balance)}, "
                f"COMPLETED sagas say {format_dollars(expected)}"
                + ("" if exact else f" (±{format_dollars(books.in_flight_sum)} in flight)")
            )
        if balance < 0:
            violations.append(f"negative balance: account {account}")
    return violations


def read_sagas(orchestrator_url: str) -> list[dict[str, Any]]:
    sagas: list[dict[str, Any]] = []
    path: str | None = "/sagas?limit=1000"
    while path:
        status, body = http_json("GET", orchestrator_url + path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}")
        sagas.extend(body["sagas"])
        path = body["next"]
    return sagas


def read_settled(orchestrator_url: str) -> SettledTotals:
    """The settled totals of the expired sagas, from ``GET /retention``."""
    status, body = http_json("GET", orchestrator_url + "/retention")
    if status != 200:
        raise OSError(f"GET {orchestrator_url}/retention: HTTP {status}")
    return settled_totals(body)


def audit_api(
    urls: Mapping[str, str], settings: Settings, stuck_after_s: float, workflows: Registry
) -> AuditReport:
    """Read every balance and saga through the HTTP API (``urls``: role name -> base URL)
    and audit them; raise OSError if an API cannot be read."""
    balances: dict[str, int] = {}
    for name in PARTICIPANTS:
        path: str | None = "/accounts?limit=1000"
        while path:
            status, body = http_json("GET", urls[name] + path)
            if status != 200:
                raise OSError(f"GET {urls[name]}{path}: HTTP {status}")
            balances.update({a["account"]: cents(a["balance"]) for a in body["accounts"]})
            path = body["next"]
    opening = settings.opening_balances
    misplaced: list[str] = []
    for role, url in urls.items():
        status, body = http_json("GET", url + "/integrity")
        if status != 200:
            raise OSError(f"GET {url}/integrity: HTTP {status}")
        misplaced += [misplaced_violation(role, item) for item in body["misplaced"]]
    sagas = read_sagas(urls["orchestrator"])
    # After the listing: a saga removed while the listing was read was settled before
    # its removal, so it is in these totals (and one listed too is counted once).
    settled = read_settled(urls["orchestrator"])
    return audit(
        sagas,
        balances,
        opening,
        stuck_after_s,
        workflows=workflows,
        misplaced=misplaced,
        settled=settled,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saga_streams audit", description=__doc__)
    parser.add_argument("--orchestrator", default="http://127.0.0.1:8000")
    for participant in PARTICIPANTS.values():
        role = participant.role
        parser.add_argument(f"--{role.name}", default=f"http://127.0.0.1:{role.web_port}")
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=None,
        help="seconds after which an unfinished saga is a violation "
        "(default: 10 times STEP_TIMEOUT plus RETRY_MAX_DELAY)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"saga_streams: {exc}", file=sys.stderr)
        return 2
    policy = settings.retry_policy
    stuck_after = args.stuck_after
    if stuck_after is None:
        stuck_after = (10 * policy.step_timeout_ms + policy.max_delay_ms) / 1000
    try:
        urls = {
            name: getattr(args, name.replace("-", "_")) for name in ("orchestrator", *PARTICIPANTS)
        }
        report = audit_api(urls, settings, stuck_after, WORKFLOWS)
    except OSError as exc:
        print(f"saga_streams audit: cannot read the API: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1
