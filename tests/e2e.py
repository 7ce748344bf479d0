"""The system as a person runs it: a real broker, one worker process per role, real HTTP.

Each ``Stack`` has its own broker and data folders, so tests never see each other's
topics, consumer offsets or tables.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from saga_streams.local.kafka import LocalKafka, free_ports
from saga_streams.local.workers import WorkerProcess, http_json
from saga_streams.roles import ROLES

TERMINAL = {"COMPLETED", "ROLLED_BACK", "FAILED"}
OPENING = {"service-a": 1000_00, "service-b": 500_00}


def cents(amount: float | int) -> int:
    return round(amount * 100)


class Stack:
    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.env = dict(env or {})
        kafka_port, controller_port, *web_ports = free_ports(2 + len(ROLES))
        self.kafka = LocalKafka(root / "kafka", port=kafka_port, controller_port=controller_port)
        self.ports = dict(zip(ROLES, web_ports, strict=True))
        self.workers: dict[str, WorkerProcess] = {}

    # -- processes ----------------------------------------------------------------------
    def worker_env(self, role: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "KAFKA_BROKER": f"kafka://{self.kafka.bootstrap}",
            "DATA_DIR": str(self.root / "data"),
            **self.env,
            **(extra or {}),
        }

    def start(self, roles: Iterable[str] = tuple(ROLES), **per_role_env: dict[str, str]) -> None:
        if not self.kafka.is_running():
            self.kafka.start()
        started = []
        for role in roles:
            self.start_worker(role, per_role_env.get(role.replace("-", "_")))
            started.append(role)
        for role in started:
            self.workers[role].wait_ready()

    def start_worker(
        self,
        role: str,
        extra_env: Mapping[str, str] | None = None,
        command: list[str] | None = None,
    ) -> WorkerProcess:
        worker = WorkerProcess(
            role,
            self.ports[role],
            self.worker_env(role, extra_env),
            log_path=self.root / "logs" / f"{role}.log",
            command=command,
        )
        worker.start()
        self.workers[role] = worker
        return worker

    def restart(
        self, role: str, kill: bool = False, extra_env: Mapping[str, str] | None = None
    ) -> None:
        worker = self.workers[role]
        worker.kill() if kill else worker.stop()
        self.start_worker(role, extra_env).wait_ready()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.resume()
            worker.stop()
        self.kafka.stop()

    def log(self, role: str) -> str:
        return self.workers[role].log_text()

    # -- HTTP -----------------------------------------------------------------------------
    def url(self, role: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}{path}"

    def transfer(self, amount: Any, **request: Any) -> tuple[int, Any]:
        return http_json(
            "POST", self.url("orchestrator", "/transfer"), {"amount": amount, **request}
        )

    def saga(self, saga_id: str) -> dict[str, Any]:
        status, body = http_json("GET", self.url("orchestrator", f"/sagas/{saga_id}"))
        assert status in (200, 404), body
        return body if status == 200 else {"status": None}

    def all_sagas(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every saga, following ``next`` links page by page."""
        path: str | None = "/sagas?limit=100" + (f"&status={status}" if status else "")
        sagas: list[dict[str, Any]] = []
        while path:
            code, body = http_json("GET", self.url("orchestrator", path))
            assert code == 200, body
            sagas.extend(body["sagas"])
            path = body["next"]
        return sagas

    def balance_cents(self, role: str) -> int:
        code, body = http_json("GET", self.url(role, "/balance"))
        assert code == 200, body
        return cents(body["balance"])

    def wait_terminal(
        self, saga_ids: Iterable[str], timeout: float = 90.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until every saga has a terminal status (invariant 4); return them by id."""
        pending = set(saga_ids)
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for saga in self.all_sagas():
                if saga["saga_id"] in pending and saga["status"] in TERMINAL:
                    found[saga["saga_id"]] = saga
                    pending.discard(saga["saga_id"])
            if pending:
                time.sleep(0.3)
        assert not pending, (
            f"{len(pending)} sagas not terminal after {timeout}s: {sorted(pending)[:5]}"
        )
        return found

    def assert_invariants(self, sagas: Iterable[Mapping[str, Any]]) -> None:
        """Invariants 1, 2 and 5 of DESIGN.md section 4, with no saga in flight."""
        sagas = list(sagas)
        assert all(s["status"] in TERMINAL for s in sagas)
        completed = sum(cents(s["amount"]) for s in sagas if s["status"] == "COMPLETED")
        a, b = self.balance_cents("service-a"), self.balance_cents("service-b")
        assert a + b == sum(OPENING.values()), (a, b)
        assert a == OPENING["service-a"] - completed, (a, completed)
        assert b == OPENING["service-b"] + completed, (b, completed)
        assert a >= 0 and b >= 0

    # -- Kafka, as kcat shows it ------------------------------------------------------------
    def kcat(self, *args: str) -> str:
        kcat = shutil.which("kcat")
        assert kcat, "kcat is not installed: run scripts/install-test-tools (make test does)"
        result = subprocess.run(
            [kcat, "-b", self.kafka.bootstrap, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def topic_messages(self, topic: str) -> list[dict[str, Any]]:
        """Every message of a topic, read with ``kcat -C -e`` as README shows."""
        out = self.kcat("-t", topic, "-C", "-e", "-q")
        return [json.loads(line) for line in out.splitlines() if line.strip()]
