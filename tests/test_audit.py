"""The audit's checks on data it would read from the API."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, ClassVar

import pytest

from saga_streams.audit import SettledTotals, audit, main, settled_totals
from saga_streams.partitions import partition_for
from saga_streams.saga.state import iso_ms
from saga_streams.workflows import WORKFLOWS

OPENING = {"A": 1000_00, "B": 500_00, "C": 0}
NOW = 1_800_000_000.0  # 2027: long after CREATED
CREATED = "2026-01-15T08:00:00.000Z"


def saga(saga_id: str, status: str, amount: float, created: str = CREATED) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "workflow": "transfer",
        "status": status,
        "amount": amount,
        "from_account": "A",
        "to_account": "B",
        "created_at": created,
    }


def test_consistent_books_pass() -> None:
    sagas = [saga("s1", "COMPLETED", 100), saga("s2", "ROLLED_BACK", 5), saga("s3", "FAILED", 7)]
    report = audit(
        sagas,
        {"A": 900_00, "B": 600_00, "C": 0},
        OPENING,
        stuck_after_s=60,
        now_s=NOW,
        workflows=WORKFLOWS,
    )
    assert report.ok, report.render()
    assert report.statuses == {"COMPLETED": 1, "ROLLED_BACK": 1, "FAILED": 1}
    assert "every invariant holds" in report.render()


def test_money_created_or_lost_is_reported() -> None:
    sagas = [saga("s1", "COMPLETED", 100)]
    created = audit(
        sagas, {"A": 900_00, "B": 700_00, "C": 0}, OPENING, 60, NOW, workflows=WORKFLOWS
    )
    assert any(v.startswith("conservation") for v in created.violations)
    lost = audit(sagas, {"A": 1000_00, "B": 500_00, "C": 0}, OPENING, 60, NOW, workflows=WORKFLOWS)
    assert any(v.startswith("outcome consistency: account A") for v in lost.violations)


def test_in_flight_sagas_allow_their_amount_and_old_ones_are_stuck() -> None:
    epoch = 1_768_464_000.0  # 2026-01-15T08:00:00Z
    sagas = [saga("s1", "STARTED", 10), saga("s2", "COMPENSATING", 5)]
    halfway = audit(
        sagas, {"A": 990_00, "B": 500_00, "C": 0}, OPENING, 60, epoch + 30, workflows=WORKFLOWS
    )
    assert halfway.ok and halfway.in_flight == 2, halfway.render()
    stuck = audit(
        sagas, {"A": 990_00, "B": 500_00, "C": 0}, OPENING, 60, epoch + 3600, workflows=WORKFLOWS
    )
    assert [v.split(":")[0] for v in stuck.violations] == ["termination"]
    assert "2 saga(s)" in stuck.violations[0]


def test_negative_balance_is_reported() -> None:
    report = audit([], {"A": -1, "B": 1500_01, "C": 0}, OPENING, 60, NOW, workflows=WORKFLOWS)
    assert any(v.startswith("negative balance: account A") for v in report.violations)


class _Api(http.server.BaseHTTPRequestHandler):
    """Canned answers for the audit command: A lost $5 that no saga explains."""

    pages: ClassVar[dict[str, Any]] = {
        "a": {"accounts": [{"account": "A", "balance": 895}], "count": 1, "next": None},
        "b": {"accounts": [{"account": "B", "balance": 600}], "count": 1, "next": None},
        "c": {"accounts": [{"account": "C", "balance": 0}], "count": 1, "next": None},
        "/integrity": {"table": "accounts", "misplaced": []},
        "/retention": {
            "retention_s": 604800.0,
            "expired": {"COMPLETED": 0, "ROLLED_BACK": 0, "FAILED": 0},
            "effects": {},
            "partition_count": 4,
            "partitions": [],
        },
        "/sagas?limit=1000": {
            "sagas": [saga("s1", "COMPLETED", 100)],
            "count": 1,
            "next": None,
        },
    }

    def do_GET(self) -> None:
        port = int(self.server.server_address[1])  # type: ignore[index]  # (host, port)
        if self.path in ("/integrity", "/retention"):
            key = self.path
        else:
            key = self.path if self.path.startswith("/sagas") else port_names[port]
        body = json.dumps(self.pages[key]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


port_names: dict[int, str] = {}


def test_audit_command_prints_the_report_and_exits_1_on_a_violation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api) for _ in range(4)]
    for name, server in zip(("o", "a", "b", "c"), servers, strict=True):
        port_names[server.server_address[1]] = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    try:
        roles = ("--orchestrator", "--service-a", "--service-b", "--service-c")
        code = main([arg for pair in zip(roles, urls, strict=True) for arg in pair])
    finally:
        for server in servers:
            server.shutdown()
    captured = capsys.readouterr()
    out = captured.out
    assert code == 1, out + captured.err
    assert "conservation" in out and "outcome consistency: account A holds $895" in out


def test_audit_command_exits_2_when_the_api_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--orchestrator", "http://127.0.0.1:9", "--service-a", "http://127.0.0.1:9"])
    assert code == 2
    assert "cannot read the API" in capsys.readouterr().err


def test_a_key_held_in_a_partition_it_does_not_belong_to_is_a_violation() -> None:
    from saga_streams.audit import misplaced_violation

    line = misplaced_violation("service-a", {"key": "A", "partition": 2, "held_in": [2, 3]})
    assert line == "account A held in partitions 2 and 3 (it belongs in 2; service-a)"
    report = audit(
        [],
        {"A": 1000_00, "B": 500_00, "C": 0},
        OPENING,
        60,
        NOW,
        misplaced=[line],
        workflows=WORKFLOWS,
    )
    assert not report.ok and report.misplaced == 1
    assert report.violations == [f"partitioning: {line}"]


def test_a_saga_refused_for_an_unknown_workflow_has_no_effect() -> None:
    refused = {**saga("s9", "FAILED", -50), "workflow": "no-such-workflow"}
    assert audit(
        [refused], {"A": 1000_00, "B": 500_00, "C": 0}, OPENING, 60, NOW, workflows=WORKFLOWS
    ).ok


# -- sagas removed once expired: the settled totals ---------------------------------------

#: Two expired COMPLETED transfers of $100 and $150 from A to B, and one FAILED.
SETTLED = SettledTotals(expired={"COMPLETED": 2, "FAILED": 1}, effects={"A": -250_00, "B": 250_00})
#: What the accounts hold after the settled transfers and one held COMPLETED one of $100.
AFTER_ALL = {"A": 650_00, "B": 850_00, "C": 0}


def test_settled_totals_count_as_the_sagas_they_replace() -> None:
    held = [saga("s9", "COMPLETED", 100)]
    report = audit(held, AFTER_ALL, OPENING, 60, NOW, workflows=WORKFLOWS, settled=SETTLED)
    assert report.ok, report.render()
    assert report.statuses == {"COMPLETED": 3, "FAILED": 1}
    assert report.expired == {"COMPLETED": 2, "FAILED": 1}
    assert "expired and settled: COMPLETED 2, FAILED 1" in report.render()


def test_without_the_settled_totals_the_removed_sagas_money_is_unexplained() -> None:
    held = [saga("s9", "COMPLETED", 100)]
    report = audit(held, AFTER_ALL, OPENING, 60, NOW, workflows=WORKFLOWS)
    assert [v.split(":")[0] for v in report.violations] == ["outcome consistency"] * 2


def test_settled_effects_that_do_not_match_the_balances_are_a_violation() -> None:
    off_by_a_cent = SettledTotals(expired={"COMPLETED": 2}, effects={"A": -250_01, "B": 250_00})
    report = audit([], AFTER_ALL, OPENING, 60, NOW, workflows=WORKFLOWS, settled=off_by_a_cent)
    assert any(v.startswith("outcome consistency: account A") for v in report.violations)


def listed(saga_id: str, amount: float, updated_ms: int) -> dict[str, Any]:
    return {**saga(saga_id, "COMPLETED", amount), "updated_at": iso_ms(updated_ms)}


def test_a_saga_listed_and_settled_since_is_counted_once() -> None:
    # s1 expired between the listing and GET /retention: both show it. s4 (another
    # partition) ended later than the last saga settled in its own: it is only listed.
    partitions = 4
    s1, s4 = listed("s1", 100, 1_000), listed("s4", 50, 5_000)
    assert partition_for("s1", partitions) != partition_for("s4", partitions)
    through = {
        partition_for("s1", partitions): (1_000, "s1"),
        partition_for("s4", partitions): (4_999, "zz"),
    }
    settled = SettledTotals({"COMPLETED": 1}, {"A": -100_00, "B": 100_00}, through, partitions)
    balances = {"A": 850_00, "B": 650_00, "C": 0}
    report = audit([s1, s4], balances, OPENING, 60, NOW, workflows=WORKFLOWS, settled=settled)
    assert report.ok, report.render()
    assert report.statuses == {"COMPLETED": 2}


def test_settled_totals_read_from_get_retention() -> None:
    body = {
        "retention_s": 604800.0,
        "expired": {"COMPLETED": 2, "ROLLED_BACK": 0, "FAILED": 1},
        "effects": {"A": -250.5, "B": 250.5},
        "partition_count": 4,
        "partitions": [
            {
                "partition": 1,
                "expired": 3,
                "through": {"updated_at": iso_ms(1_234), "saga_id": "x"},
            },
            {"partition": 2, "expired": 0, "through": None},
        ],
    }
    assert settled_totals(body) == SettledTotals(
        expired={"COMPLETED": 2, "FAILED": 1},
        effects={"A": -250_50, "B": 250_50},
        through={1: (1_234, "x")},
        partitions=4,
    )
