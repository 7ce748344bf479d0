"""``python -m saga_streams run`` (``make run``): Kafka and one worker per role, in the foreground.

Starts a local broker (unless ``KAFKA_BROKER`` names another one), then one worker per
role, streams their output with a role prefix, and on Ctrl-C or SIGTERM stops the workers
and then the broker, leaving no process behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from saga_streams.config import ConfigError, load_settings
from saga_streams.local.kafka import LocalKafka, LocalKafkaError, port_in_use
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


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"saga_streams: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    began = time.monotonic()
    kafka: LocalKafka | None = None
    workers: list[WorkerProcess] = []
    env = {"KAFKA_BROKER": settings.kafka_broker, "DATA_DIR": str(settings.data_dir.absolute())}
    busy = [f"{r.name} ({r.web_port})" for r in ROLES.values() if port_in_use(r.web_port)]
    if busy:
        print(f"saga_streams: web port already in use for {', '.join(busy)}", file=sys.stderr)
        return 1
    try:
        if "KAFKA_BROKER" not in os.environ:
            port = int(os.environ.get("KAFKA_PORT", "9092"))
            kafka = LocalKafka(
                Path(settings.data_dir) / "kafka", port=port, controller_port=port + 1
            )
            _say("kafka", f"starting Kafka on 127.0.0.1:{port} (data in {kafka.data_dir})")
            kafka.start()
            env["KAFKA_BROKER"] = f"kafka://{kafka.bootstrap}"
            _say("kafka", f"ready in {kafka.last_start_seconds:.1f}s")
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for role in ROLES.values():
            worker = WorkerProcess(role.name, role.web_port, env)
            worker.start(pipe_output=True)
            threading.Thread(target=_pump, args=(worker, log_dir), daemon=True).start()
            workers.append(worker)
        for worker in workers:
            worker.wait_ready()
        _say(
            "saga_streams",
            f"✅ ready in {time.monotonic() - began:.1f}s: "
            "curl -X POST http://localhost:8000/transfer -H 'Content-Type: application/json' "
            "-d '{\"amount\": 100}'   (Ctrl-C stops everything)",
        )
        while True:
            for worker in workers:
                if not worker.is_running():
                    _say("saga_streams", f"❌ {worker.role} exited with {worker.returncode()}")
                    return 1
            time.sleep(0.5)
    except _Stop as stop:
        _say("saga_streams", f"{stop} received: stopping the workers, then Kafka")
        return 0
    except (LocalKafkaError, WorkerError) as exc:
        _say("saga_streams", f"❌ {exc}")
        return 1
    finally:
        # Ignore further Ctrl-C while stopping: a half-stopped stack is what we avoid.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.stop()
        if kafka is not None:
            kafka.stop()
        _say("saga_streams", "stopped")
