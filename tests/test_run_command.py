"""``python -m saga_streams run`` (what ``make run`` starts): up, usable, and gone on SIGTERM.

It uses the fixed ports of the contract (Kafka 9092, web 8000-8003), as a person would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saga_streams.audit import read_sagas
from saga_streams.http_client import http_json
from saga_streams.local.ending import wait_until_ended
from saga_streams.local.kafka import port_in_use

pytestmark = pytest.mark.kafka

PORTS = (9092, 9093, 8000, 8001, 8002, 8003)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (proc / "stat").read_text().split(") ")[1][0]
            except (OSError, IndexError):
                continue
            if text in cmdline and state != "Z":
                found.append(cmdline[:120])
    return found


def balances() -> tuple[float, float]:
    """Account A's balance (service A, port 8001) and account B's (service B, port 8002)."""
    status_a, a = http_json("GET", "http://127.0.0.1:8001/balance")
    status_b, b = http_json("GET", "http://127.0.0.1:8002/balance")
    assert (status_a, status_b) == (200, 200), (a, b)
    return a["balance"], b["balance"]


def wait_ready(run: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    """Until ``make run`` says it is ready (polled at most ``timeout`` s, every 0.5 s)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.5) + 1):
        if "✅ ready" in log_path.read_text(errors="replace"):
            return
        assert run.poll() is None, log_path.read_text(errors="replace")[-2000:]
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout:.0f} s")


def test_run_starts_everything_and_sigterm_stops_everything(tmp_path: Path) -> None:
    busy = [port for port in PORTS if port_in_use(port)]
    assert not busy, f"ports {busy} are taken; stop what holds them (another `make run`?)"
    data = tmp_path / "data"
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "SERVICE_A_FAILURE_RATE": "0",
        "SERVICE_B_FAILURE_RATE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KAFKA_BROKER", None)
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "saga_streams", "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_ready(run, log_path, timeout=120)
        assert balances() == (1000, 500)  # the seed's opening balances
        status, body = http_json("POST", "http://127.0.0.1:8000/transfer", {"amount": 100})
        assert status == 202 and body["status"] == "STARTED"
        saga_id = body["saga_id"]
        ending = wait_until_ended(
            lambda: read_sagas("http://127.0.0.1:8000"), [saga_id], timeout=60
        ).raise_unless_ended()
        assert ending.by_id()[saga_id]["status"] == "COMPLETED", ending.by_id()[saga_id]
        # Both steps ran: A paid (step 1) and B was paid (step 2).
        assert balances() == (900, 600)
        text = log_path.read_text(errors="replace")
        for prefix in ("kafka        | ", "orchestrator | ", "service-a    | ", "service-c    | "):
            assert prefix in text, prefix
        assert f"🚀 STARTING SAGA: {saga_id}" in (data / "logs" / "orchestrator.log").read_text()
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=90)
    assert code == 0, log_path.read_text(errors="replace")[-2000:]
    assert "stopped" in log_path.read_text(errors="replace")
    assert _processes_mentioning(str(data)) == []
    assert [port for port in PORTS if port_in_use(port)] == []
