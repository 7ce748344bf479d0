"""The terminal client without a network: its arguments, its rendering, its exit codes,
with the HTTP function injected (a fake that answers from canned pages)."""

from __future__ import annotations

import io
import urllib.error
from collections.abc import Mapping
from typing import Any

import pytest

from saga_streams.__main__ import main as cli_main
from saga_streams.terminal import Api, ApiError, SagaWatch, main, render_sagas, wait_for_end


def saga(status: str, outcomes: tuple[str, str], error: str | None = None) -> dict[str, Any]:
    steps = [
        {"step": 1, "service": "service-a", "action": "deduct", "account": "A", "error": None},
        {"step": 2, "service": "service-b", "action": "add", "account": "B", "error": error},
    ]
    for step, outcome in zip(steps, outcomes, strict=True):
        step["outcome"] = outcome
    return {
        "saga_id": "s1",
        "workflow": "transfer",
        "amount": 100.5,
        "from_account": "A",
        "to_account": "B",
        "status": status,
        "error": None,
        "steps": steps,
        "created_at": "2026-11-27T05:31:09.123Z",
    }


class FakeHttp:
    """Answers each (method, path) from a list of answers, the last one repeated; records
    every request."""

    def __init__(self, answers: Mapping[tuple[str, str], list[tuple[int, Any]]]) -> None:
        self.answers = {key: list(value) for key, value in answers.items()}
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, url: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        path = url.removeprefix("http://orchestrator").removeprefix("http://127.0.0.1:8002")
        self.requests.append((method, url, body))
        queue = self.answers[(method, path)]
        return queue.pop(0) if len(queue) > 1 else queue[0]


ACCEPTED = (202, {"saga_id": "s1", "amount": 100.5, "status": "STARTED"})


def test_transfer_posts_the_amount_exactly_and_prints_the_saga_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    http = FakeHttp({("POST", "/transfer"): [ACCEPTED]})
    argv = ["100.50", "--from", "A", "--to", "B", "--workflow", "transfer"]
    assert main("transfer", [*argv, "--url", "http://orchestrator/"], http) == 0
    assert capsys.readouterr().out == "s1\n"
    body = {"amount": 100.5, "workflow": "transfer", "from_account": "A", "to_account": "B"}
    assert http.requests == [("POST", "http://orchestrator/transfer", body)]


@pytest.mark.parametrize(
    "argv",
    [["abc"], ["0"], ["1.001"], ["-5"], ["nan"], [], ["1", "--timeout", "0"], ["1", "--bad"]],
)
def test_bad_transfer_arguments_exit_2_with_the_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main("transfer", argv, FakeHttp({}))
    assert exited.value.code == 2
    assert "usage: python -m saga_streams transfer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--status", "DONE"], ["--limit", "0"], ["--limit", "1001"], ["--limit", "1_0"]]
)
def test_bad_listing_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main("sagas", argv, FakeHttp({}))
    assert exited.value.code == 2


def test_the_wait_prints_each_change_and_exits_0_once_completed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("saga_streams.terminal.time.sleep", lambda _: None)
    moves = [
        (404, {"error": "no saga 's1'"}),  # not created yet: waited out
        (200, saga("STARTED", ("PENDING", "NOT_STARTED"))),
        (200, saga("STARTED", ("PENDING", "NOT_STARTED"))),
        (200, saga("STARTED", ("SUCCEEDED", "PENDING"))),
        (200, saga("COMPLETED", ("SUCCEEDED", "SUCCEEDED"))),
    ]
    http = FakeHttp({("POST", "/transfer"): [ACCEPTED], ("GET", "/sagas/s1"): moves})
    assert main("transfer", ["100.5", "--wait", "--url", "http://orchestrator"], http) == 0
    assert capsys.readouterr().out.splitlines() == [
        "s1",
        "saga s1: transfer, $100.50 from A to B",
        "saga s1: STARTED",
        "  step 1 service-a.deduct on A: PENDING",
        "  step 1 service-a.deduct on A: SUCCEEDED",
        "  step 2 service-b.add on B: PENDING",
        "  step 2 service-b.add on B: SUCCEEDED",
        "saga s1: COMPLETED",
    ]


def test_a_failed_saga_exits_1_saying_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("saga_streams.terminal.time.sleep", lambda _: None)
    ended = saga("FAILED", ("FAILED", "NOT_STARTED"))
    ended["steps"][0]["error"] = "insufficient funds"
    http = FakeHttp({("POST", "/transfer"): [ACCEPTED], ("GET", "/sagas/s1"): [(200, ended)]})
    assert main("transfer", ["5000", "--wait", "--url", "http://orchestrator"], http) == 1
    captured = capsys.readouterr()
    assert "  step 1 service-a.deduct on A: FAILED: insufficient funds" in captured.out
    assert "saga s1 ended FAILED, not COMPLETED" in captured.err


def test_a_wait_that_runs_out_of_time_exits_3() -> None:
    clock = iter(float(n) for n in range(100))
    http = FakeHttp({("GET", "/sagas/s1"): [(200, saga("STARTED", ("PENDING", "NOT_STARTED")))]})
    out = io.StringIO()
    api = Api("http://orchestrator", http)
    status = wait_for_end(api, "s1", 5.0, out, sleep=lambda _: None, clock=lambda: next(clock))
    assert status is None
    assert len(http.requests) == 5  # the clock reads 1..5 after each: 5 is the deadline
    assert out.getvalue().count("STARTED") == 1
    assert out.getvalue().splitlines()[:2] == [
        "saga s1: transfer, $100.50 from A to B",
        "saga s1: STARTED",
    ]


def test_the_wait_stops_at_a_client_error() -> None:
    http = FakeHttp({("GET", "/sagas/s1"): [(401, {"error": "missing bearer token"})]})
    with pytest.raises(ApiError, match="401: missing bearer token"):
        wait_for_end(Api("http://orchestrator", http), "s1", 5.0, io.StringIO())


def test_a_rollback_is_reported_after_its_steps() -> None:
    watch = SagaWatch()
    watch.changes(saga("STARTED", ("SUCCEEDED", "PENDING")))
    lines = watch.changes(saga("ROLLED_BACK", ("COMPENSATED", "FAILED"), error="no such account"))
    assert lines == [
        "  step 1 service-a.deduct on A: COMPENSATED",
        "  step 2 service-b.add on B: FAILED: no such account",
        "saga s1: ROLLED_BACK",
    ]


def test_the_listing_is_a_table_with_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    page = {"sagas": [saga("COMPLETED", ("SUCCEEDED", "SUCCEEDED"))], "count": 7, "next": "/x"}
    http = FakeHttp({("GET", "/sagas?limit=1&status=COMPLETED"): [(200, page)]})
    argv = ["--status", "COMPLETED", "--limit", "1", "--url", "http://orchestrator"]
    assert main("sagas", argv, http) == 0
    header, row, total = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "STATUS", "AMOUNT", "FROM", "→", "TO", "WORKFLOW", "CREATED"]
    shown = ["s1", "COMPLETED", "$100.50", "A", "→", "B", "transfer", "2026-11-27", "05:31:09.123"]
    assert row.split() == shown
    assert header.index("STATUS") == row.index("COMPLETED")  # columns line up
    assert total == "1 of 7 saga(s), newest first"
    assert render_sagas({"sagas": [], "count": 0, "next": None}) == "no sagas"


def test_the_balance_asks_the_owner_of_the_account(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERVICE_B_ACCOUNTS", raising=False)
    monkeypatch.delenv("OPENING_BALANCE_B", raising=False)
    http = FakeHttp({("GET", "/balance?account=B"): [(200, {"account": "B", "balance": 600})]})
    assert main("balance", ["B"], http) == 0
    assert capsys.readouterr().out == "B: $600\n"
    assert http.requests[0][1] == "http://127.0.0.1:8002/balance?account=B"


def test_the_balance_of_every_participant_and_of_an_unknown_account(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = {
        ("GET", f"http://127.0.0.1:{port}/balance"): [(200, {"account": a, "balance": 5})]
        for a, port in (("A", 1), ("B", 2), ("C", 3))
    }
    http = FakeHttp(answers)
    urls = [f"--service-{x}=http://127.0.0.1:{n}" for x, n in (("a", 1), ("b", 2), ("c", 3))]
    assert main("balance", urls, http) == 0
    assert capsys.readouterr().out == "A: $5\nB: $5\nC: $5\n"
    assert main("balance", ["nobody-has-it"], http) == 1
    assert "no participant owns account 'nobody-has-it'" in capsys.readouterr().err


def test_the_servers_error_is_printed_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    http = FakeHttp({("POST", "/transfer"): [(400, {"error": "amount is too large"})]})
    assert main("transfer", ["1", "--url", "http://orchestrator"], http) == 1
    assert capsys.readouterr().err == "saga_streams: 400: amount is too large\n"


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*_: Any, **__: Any) -> tuple[int, Any]:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    assert main("sagas", ["--url", "http://127.0.0.1:9"], refused) == 1
    assert capsys.readouterr().err == (
        "saga_streams: cannot reach http://127.0.0.1:9: Connection refused\n"
    )


def test_the_commands_are_wired_and_in_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    usage = capsys.readouterr().out
    for command in ("transfer AMOUNT", "sagas [--status S]", "balance [ACCOUNT]", "saga [show]"):
        assert f"python -m saga_streams {command}" in usage or command in usage
    with pytest.raises(SystemExit) as exited:
        cli_main(["balance", "--help"])
    assert exited.value.code == 0


def test_a_saga_first_seen_ended_still_ends_with_its_status() -> None:
    lines = SagaWatch().changes(saga("COMPLETED", ("SUCCEEDED", "SUCCEEDED")))
    assert lines == [
        "saga s1: transfer, $100.50 from A to B",
        "  step 1 service-a.deduct on A: SUCCEEDED",
        "  step 2 service-b.add on B: SUCCEEDED",
        "saga s1: COMPLETED",
    ]
