"""``python -m saga_streams run`` (``make run``): Kafka and one worker per role, in the foreground.

Starts a local broker (unless ``KAFKA_BROKER`` names another one), or a cluster of
several with ``--brokers 3`` (``KAFKA_BROKERS=3``), on a SASL_SSL listener with
``--secure``, then one worker per role with the settings to reach it, streams their
output with a role prefix, and on Ctrl-C or SIGTERM stops the workers and then the
broker, leaving no process behind.  Such a cluster keeps its data, its workers' tables
and the logs in ``DATA_DIR/brokers-N/`` (``secure/``, ``secure-brokers-N/``), apart from
the usual single broker's, so that no worker starts on tables another cluster wrote.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from saga_streams.config import ConfigError, Settings, load_settings
from saga_streams.local.kafka import (
    LocalKafka,
    LocalKafkaError,
    broker_count,
    default_data_root,
    env_int,
)
from saga_streams.local.ports import port_in_use
from saga_streams.local.workers import WorkerError, WorkerProcess
from saga_streams.roles import ROLES

__all__ = ["main"]

_print_lock = threading.Lock()


def _say(prefix: str, line: str) -> None:
    with _print_lock:
        sys.stdout.write(f"{prefix:<12} | {line}\n")
        sys.stdout.flush()


def _pump(worker: WorkerProcess, log_dir: Path) -> None:
    """Copy a worker's output to the terminal (role-prefixed) and to its own log file,
    so one role can be followed alone: ``tail -f .data/logs/orchestrator.log``."""
    assert worker.proc is not None and worker.proc.stdout is not None
    with (log_dir / f"{worker.role}.log").open("a", encoding="utf-8") as log_file:
        for raw in worker.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            _say(worker.role, line)
            log_file.write(line + "\n")
            log_file.flush()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m saga_streams run",
        description=(
            "Kafka and one worker per role, in the foreground; Ctrl-C stops all. "
            "KAFKA_BROKER set: use that broker instead of starting one."
        ),
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="Kafka nodes to start (KAFKA_BROKERS, 1); 3: replicated topics, one may die",
    )
    parser.add_argument(
        "--secure", action="store_true", help="workers reach Kafka over SASL_SSL (SCRAM)"
    )
    return parser.parse_args([] if argv is None else argv)


class _Refused(Exception):
    """The run cannot begin (settings, or a port taken): nothing was started."""


@dataclass(frozen=True)
class _Plan:
    settings: Settings
    brokers: int
    secure: bool
    #: KAFKA_BROKER names a broker to use: none is started here.
    external: bool
    #: Where the broker's data, the workers' tables and the logs go.
    root: Path


def _plan(args: argparse.Namespace) -> _Plan:
    """What to start, checked before anything is: settings, the broker count, a broker
    named and one asked for at once, web ports already taken."""
    try:
        settings = load_settings()
        brokers = broker_count(args.brokers)
    except (ConfigError, LocalKafkaError) as exc:
        raise _Refused(str(exc)) from exc
    external = "KAFKA_BROKER" in os.environ
    if external and (brokers > 1 or args.secure):
        raise _Refused(
            "KAFKA_BROKER names a broker to use; --brokers/KAFKA_BROKERS "
            "and --secure start a local one instead: unset one of them"
        )
    busy = [f"{r.name} ({r.web_port})" for r in ROLES.values() if port_in_use(r.web_port)]
    if busy:
        raise _Refused(f"web port already in use for {', '.join(busy)}")
    root = (
        settings.data_dir
        if external
        else default_data_root(settings.data_dir, brokers, args.secure)
    )
    return _Plan(settings, brokers, args.secure, external, root)


class _Foreground:
    """The broker (unless external) and one worker per role, until one exits or a
    signal stops them; then the workers first and the broker last."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.began = time.monotonic()
        self.kafka: LocalKafka | None = None
        self.workers: list[WorkerProcess] = []
        self.env = {
            "KAFKA_BROKER": plan.settings.kafka_broker,
            "DATA_DIR": str(plan.root.absolute()),
        }

    def start_kafka(self) -> None:
        plan = self.plan
        port = env_int("KAFKA_PORT", 9092)
        kafka = LocalKafka(plan.root / "kafka", port=port, brokers=plan.brokers, secure=plan.secure)
        self.kafka = kafka
        over = " over SASL_SSL" if plan.secure else ""
        _say("kafka", f"starting Kafka on {kafka.bootstrap}{over} (data in {kafka.data_dir})")
        kafka.start()
        self.env.update(kafka.client_env())
        _say("kafka", f"ready in {kafka.last_start_seconds:.1f}s")

    def start_workers(self) -> None:
        log_dir = self.plan.root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for role in ROLES.values():
            worker = WorkerProcess(role.name, role.web_port, self.env)
            worker.start(pipe_output=True)
            threading.Thread(target=_pump, args=(worker, log_dir), daemon=True).start()
            self.workers.append(worker)
        for worker in self.workers:
            worker.wait_ready()
        _say(
            "saga_streams",
            f"✅ ready in {time.monotonic() - self.began:.1f}s: "
            "curl -X POST http://localhost:8000/transfer -H 'Content-Type: application/json' "
            "-d '{\"amount\": 100}'   (Ctrl-C stops everything)",
        )

    def watch(self) -> int:
        """Until a signal (raised as :class:`_Stop`), or 1 once a worker exits."""
        while True:
            for worker in self.workers:
                if not worker.is_running():
                    _say("saga_streams", f"❌ {worker.role} exited with {worker.returncode()}")
                    return 1
            time.sleep(0.5)

    def stop(self) -> None:
        # Ignore further Ctrl-C while stopping: a half-stopped stack is what we avoid.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.stop()
        if self.kafka is not None:
            self.kafka.stop()
        _say("saga_streams", "stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        plan = _plan(args)
    except _Refused as refused:
        print(f"saga_streams: {refused}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    run = _Foreground(plan)
    try:
        if not plan.external:
            run.start_kafka()
        run.start_workers()
        return run.watch()
    except _Stop as stop:
        _say("saga_streams", f"{stop} received: stopping the workers, then Kafka")
        return 0
    except (LocalKafkaError, WorkerError) as exc:
        _say("saga_streams", f"❌ {exc}")
        return 1
    finally:
        run.stop()
