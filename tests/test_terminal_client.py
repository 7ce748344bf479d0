"""The terminal client on a real broker: each command run as a person runs it,
``python -m saga_streams ...`` in a subprocess, against a live stack.

Failure injection is off so each outcome is known: $100 from A completes, $5000 from A
(more than its $1000) fails at its first step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from saga_streams.local.ports import free_ports
from saga_streams.money import format_dollars
from saga_streams.roles import PARTICIPANTS
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

WAIT_S = 90  # --timeout of each --wait; the subprocess gets a margin beyond it


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rates = {p.failure_rate_variable: "0" for p in PARTICIPANTS.values()}
    stack = Stack(tmp_path_factory.mktemp("terminal"), rates)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def run(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m saga_streams ARGS``, with the stack's settings (its accounts) in the
    environment, as the workers have them."""
    env = {**os.environ, **stack.worker_env()}
    command = [sys.executable, "-m", "saga_streams", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def orchestrator(stack: Stack) -> list[str]:
    return ["--url", stack.url("orchestrator")]


@pytest.fixture(scope="module")
def completed(stack: Stack) -> tuple[subprocess.CompletedProcess[str], str]:
    """The seed's Test 1 from a terminal: ``transfer 100 --wait``."""
    wait = ["--wait", "--timeout", str(WAIT_S)]
    result = run(stack, "transfer", "100", *wait, *orchestrator(stack), timeout=WAIT_S + 30)
    return result, result.stdout.split("\n", 1)[0]


@pytest.fixture(scope="module")
def failed(
    stack: Stack, completed: tuple[subprocess.CompletedProcess[str], str]
) -> tuple[subprocess.CompletedProcess[str], str]:
    """More than A holds; after ``completed``, so the listing's order is known."""
    wait = ["--wait", "--timeout", str(WAIT_S)]
    result = run(stack, "transfer", "5000", *wait, *orchestrator(stack), timeout=WAIT_S + 30)
    return result, result.stdout.split("\n", 1)[0]


def test_transfer_wait_follows_the_saga_and_exits_0_once_completed(
    stack: Stack, completed: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    result, saga_id = completed
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.saga(saga_id)["status"] == "COMPLETED"
    lines = result.stdout.splitlines()
    assert lines[1] == f"saga {saga_id}: transfer, $100 from A to B"
    assert "  step 1 service-a.deduct on A: SUCCEEDED" in lines
    assert "  step 2 service-b.add on B: SUCCEEDED" in lines
    assert lines[-1] == f"saga {saga_id}: COMPLETED"


def test_a_transfer_beyond_the_balance_exits_non_zero_saying_failed(
    stack: Stack, failed: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    result, saga_id = failed
    assert result.returncode == 1, result.stdout + result.stderr
    assert stack.saga(saga_id)["status"] == "FAILED"
    assert f"saga {saga_id}: FAILED" in result.stdout
    assert result.stderr.strip() == f"saga_streams: saga {saga_id} ended FAILED, not COMPLETED"


def test_sagas_lists_them_newest_first_with_the_total(
    stack: Stack,
    completed: tuple[subprocess.CompletedProcess[str], str],
    failed: tuple[subprocess.CompletedProcess[str], str],
) -> None:
    result = run(stack, "sagas", *orchestrator(stack))
    assert result.returncode == 0, result.stderr
    header, newest, oldest, total = result.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "AMOUNT"]
    assert newest.split()[:3] == [failed[1], "FAILED", "$5000"]
    assert oldest.split()[:3] == [completed[1], "COMPLETED", "$100"]
    assert total == "2 of 2 saga(s), newest first"
    only = run(stack, "sagas", "--status", "FAILED", "--limit", "5", *orchestrator(stack))
    assert only.returncode == 0 and only.stdout.splitlines()[-1] == "1 of 1 saga(s), newest first"


def test_saga_id_shows_the_steps_and_the_history(
    stack: Stack, completed: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    saga_id = completed[1]
    result = run(stack, "saga", saga_id, *orchestrator(stack))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"saga {saga_id}: COMPLETED (transfer, $100 from A to B)")
    assert "  1. service-a.deduct on A: SUCCEEDED" in out
    assert "  2. service-b.add on B: SUCCEEDED" in out
    history = out.split("history:\n", 1)[1].splitlines()
    assert len(history) == len(stack.saga(saga_id)["history"]) >= 2


def test_balance_matches_the_api(
    stack: Stack, failed: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    # After ``failed``: both sagas have ended, so no balance moves while they are compared.
    urls = [f"--{name}={stack.url(name)}" for name in PARTICIPANTS]
    a, b = (format_dollars(stack.balance_cents(role)) for role in ("service-a", "service-b"))
    assert (a, b) == ("$900", "$600")
    one = run(stack, "balance", "A", *urls)
    assert (one.returncode, one.stdout) == (0, f"A: {a}\n"), one.stderr
    of_b = run(stack, "balance", "B", "--url", stack.url("service-b"))
    assert (of_b.returncode, of_b.stdout) == (0, f"B: {b}\n"), of_b.stderr
    every = run(stack, "balance", *urls)
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines() == [f"A: {a}", f"B: {b}", "C: $0"]
    stack.assert_invariants()


def test_an_unknown_saga_prints_the_404s_error(stack: Stack) -> None:
    result = run(stack, "saga", "no-such-saga", *orchestrator(stack))
    error = (
        "no saga 'no-such-saga': it never existed, or it ended more than 7 days ago "
        "and expired (SAGA_RETENTION)"
    )
    assert (result.returncode, result.stderr) == (1, f"saga_streams: 404: {error}\n")


def test_a_refused_connection_is_one_line_without_a_traceback(stack: Stack) -> None:
    (closed,) = free_ports(1)  # nothing listens there
    url = f"http://127.0.0.1:{closed}"
    for args in (["transfer", "1"], ["sagas"], ["saga", "x"], ["balance", "A"]):
        result = run(stack, *args, "--url", url)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr == f"saga_streams: cannot reach {url}: Connection refused\n", args
