"""A whole system on one machine: its own broker and worker processes.

One worker per role to begin with, named after its role; ``add_worker`` starts more of a
role (``service-a-2``, ...), each with its own web port and data folder, sharing the
role's partitions. Used by the end-to-end tests, ``python -m saga_streams chaos`` and the
bench. Each cluster has its own broker, ports and data folders, so several never see each
other's topics, consumer offsets or tables. ``brokers=3`` runs the system on a
three-node Kafka cluster, ``secure=True`` on a SASL_SSL listener; every worker gets the
settings to reach it (:meth:`LocalKafka.client_env`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from saga_streams.audit import AuditReport, audit_api, read_sagas
from saga_streams.config import load_settings
from saga_streams.http_client import http_json
from saga_streams.local.ending import wait_until_ended
from saga_streams.local.kafka import LocalKafka
from saga_streams.local.ports import free_ports
from saga_streams.local.workers import WorkerProcess
from saga_streams.money import cents
from saga_streams.roles import ROLES
from saga_streams.workflows import WORKFLOWS

__all__ = ["LocalCluster"]


class LocalCluster:
    def __init__(
        self,
        root: Path,
        env: Mapping[str, str] | None = None,
        worker_args: Sequence[str] = (),
        brokers: int = 1,
        secure: bool = False,
    ) -> None:
        self.root = root
        self.env = dict(env or {})
        self.worker_args = tuple(worker_args)  # e.g. ("--loglevel", "warn")
        ports = free_ports(2 * brokers + len(ROLES))
        kafka_ports, controller_ports = ports[:brokers], ports[brokers : 2 * brokers]
        web_ports = ports[2 * brokers :]
        self.kafka = LocalKafka(
            root / "kafka",
            brokers=brokers,
            secure=secure,
            ports=kafka_ports,
            controller_ports=controller_ports,
        )
        self.ports = dict(zip(ROLES, web_ports, strict=True))  # worker name -> web port
        self.role_of = {role: role for role in ROLES}  # worker name -> its role
        self.workers: dict[str, WorkerProcess] = {}

    # -- processes ----------------------------------------------------------------------
    def worker_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A worker's environment: the cluster's client settings (``KAFKA_BROKER``,
        ``TOPIC_REPLICATION_FACTOR``, SASL_SSL ones in secure mode), ``DATA_DIR``, then
        the cluster's ``env`` and ``extra``."""
        return {
            **self.kafka.client_env(),
            "DATA_DIR": str(self.root / "data"),
            **self.env,
            **(extra or {}),
        }

    def start(self, roles: Iterable[str] = tuple(ROLES)) -> None:
        if not self.kafka.is_running():
            self.kafka.start()
        started = [self.start_worker(role) for role in roles]
        for worker in started:
            worker.wait_ready()

    def add_worker(self, role: str) -> WorkerProcess:
        """Start one more worker of ``role`` (not waiting for it); its name is the role's
        with a number, ``service-a-2``."""
        number = sum(1 for r in self.role_of.values() if r == role) + 1
        name = f"{role}-{number}"
        (self.ports[name],) = free_ports(1)
        self.role_of[name] = role
        return self.start_worker(name)

    def names(self, role: str) -> list[str]:
        """The names of ``role``'s workers, the first one first."""
        return [name for name, r in self.role_of.items() if r == role and name in self.workers]

    def start_worker(
        self,
        name: str,
        extra_env: Mapping[str, str] | None = None,
        command: list[str] | None = None,
    ) -> WorkerProcess:
        worker = WorkerProcess(
            self.role_of[name],
            self.ports[name],
            self.worker_env(extra_env),
            log_path=self.root / "logs" / f"{name}.log",
            command=command,
            extra_args=self.worker_args,
        )
        worker.start()
        self.workers[name] = worker
        return worker

    def restart(self, name: str, kill: bool = False) -> None:
        worker = self.workers[name]
        worker.resume()
        if kill:
            worker.kill()
        else:
            worker.stop()
        self.start_worker(name).wait_ready()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.resume()
            worker.stop()
        self.kafka.stop()

    def log(self, name: str) -> str:
        return self.workers[name].log_text()

    # -- HTTP ---------------------------------------------------------------------------
    def authorization(self) -> dict[str, str]:
        """The workers' ``API_TOKEN`` (from the cluster's ``env``) as a header, if any;
        without one here, ``http_json`` sends the caller's own ``API_TOKEN``."""
        token = self.env.get("API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def url(self, name: str, path: str = "") -> str:
        """``name``: a worker's name; a role's name is its first worker."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def transfer(
        self, amount: Any, timeout: float = 10.0, workflow: str | None = None
    ) -> tuple[int, Any]:
        body = {"amount": amount} if workflow is None else {"amount": amount, "workflow": workflow}
        url = self.url("orchestrator", "/transfer")
        return http_json("POST", url, body, timeout, headers=self.authorization())

    def saga(self, saga_id: str) -> dict[str, Any]:
        url = self.url("orchestrator", f"/sagas/{saga_id}")
        status, body = http_json("GET", url, headers=self.authorization())
        assert status == 200, body
        return dict(body)

    def all_sagas(self) -> list[dict[str, Any]]:
        """Every saga, following ``next`` links page by page."""
        return read_sagas(self.url("orchestrator"))

    def balance_cents(self, role: str) -> int:
        status, body = http_json("GET", self.url(role, "/balance"), headers=self.authorization())
        assert status == 200, body
        return cents(body["balance"])

    def wait_terminal(
        self, saga_ids: Iterable[str], timeout: float = 90.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until every saga has a terminal status (invariant 4); return them by id.
        Raises :class:`~saga_streams.local.ending.SagasStillRunning` (an AssertionError)
        naming those still pending after ``timeout`` seconds."""
        awaited = set(saga_ids)
        ending = wait_until_ended(self.all_sagas, awaited, timeout=timeout).raise_unless_ended()
        return {saga_id: saga for saga_id, saga in ending.by_id().items() if saga_id in awaited}

    def audit(self, stuck_after_s: float = 3600.0) -> AuditReport:
        """The invariants, checked as ``python -m saga_streams audit`` checks them."""
        urls = {role: self.url(role) for role in ROLES}
        return audit_api(urls, load_settings(self.worker_env()), stuck_after_s, WORKFLOWS)

    def assert_invariants(self) -> AuditReport:
        report = self.audit()
        assert report.ok, report.render()
        assert report.in_flight == 0, report.render()
        return report
