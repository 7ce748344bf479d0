"""The audit's checks on data it would read from the API."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, ClassVar

import pytest

from saga_streams.audit import audit, main
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
        "/sagas?limit=1000": {
            "sagas": [saga("s1", "COMPLETED", 100)],
            "count": 1,
            "next": None,
        },
    }

    def do_GET(self) -> None:
        port = int(self.server.server_address[1])  # type: ignore[index]  # (host, port)
        if self.path == "/integrity":
            key = "/integrity"
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
