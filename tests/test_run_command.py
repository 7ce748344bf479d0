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

from saga_streams.local.kafka import port_in_use
from saga_streams.local.workers import http_json

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
        deadline = time.monotonic() + 120
        while "✅ ready" not in log_path.read_text(errors="replace"):
            assert run.poll() is None, log_path.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "not ready after 120 s"
            time.sleep(0.5)
        status, body = http_json("POST", "http://127.0.0.1:8000/transfer", {"amount": 100})
        assert status == 202 and body["status"] == "STARTED"
        saga_id = body["saga_id"]
        while time.monotonic() < deadline:
            status, saga = http_json("GET", f"http://127.0.0.1:8000/sagas/{saga_id}")
            if status == 200 and saga["status"] == "COMPLETED":
                break
            time.sleep(0.3)
        assert http_json("GET", "http://127.0.0.1:8001/balance")[1]["balance"] == 900
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
