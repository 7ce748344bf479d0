"""Commands a person types, and the container set-up, checked without a broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from saga_streams.metrics import ConsumerLag, ParticipantMetrics, SagaMetrics
from saga_streams.workflows import WORKFLOWS

ROOT = Path(__file__).resolve().parents[1]
FAUST = str(Path(sys.executable).with_name("faust"))


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": "/nonexistent-never-used", **env},
    )


def test_unknown_role_is_one_line_and_exit_2() -> None:
    result = run(sys.executable, "-m", "saga_streams", "worker", "service-z")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "saga_streams: unknown role 'service-z'; "
        "use one of orchestrator, service-a, service-b, service-c"
    ]


def test_unknown_command_exits_2() -> None:
    result = run(sys.executable, "-m", "saga_streams", "launch")
    assert result.returncode == 2 and "unknown command 'launch'" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "saga_streams", "worker", "service-a"],
        [FAUST, "-A", "saga_streams.agents.service_a", "worker", "-l", "info"],
    ],
    ids=["python -m", "faust -A"],
)
@pytest.mark.parametrize(
    ("name", "value"),
    [("SERVICE_A_FAILURE_RATE", "1.5"), ("SERVICE_B_FAILURE_RATE", "often")],
)
def test_invalid_failure_rate_stops_the_worker_with_one_line(
    command: list[str], name: str, value: str
) -> None:
    result = run(*command, **{name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"saga_streams: {name}={value!r}"), result.stderr
    assert "Traceback" not in result.stderr


def test_docker_compose_file_is_valid_and_keeps_the_contract() -> None:
    docker = shutil.which("docker")
    assert docker, "docker CLI missing: run scripts/install-test-tools (make test does)"
    check = subprocess.run(
        [docker, "compose", "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stderr
    services = json.loads(check.stdout)["services"]
    brokers = {"kafka-1", "kafka-2", "kafka-3"}
    workers = {"orchestrator", "service-a", "service-b", "service-c"}
    assert set(services) == {*brokers, *workers, "prometheus", "grafana"}
    ports = {name: [p["published"] for p in svc.get("ports", [])] for name, svc in services.items()}
    assert ports == {
        "kafka-1": ["9092"],
        "kafka-2": ["9093"],
        "kafka-3": ["9094"],
        "orchestrator": ["8000"],
        "service-a": ["8001"],
        "service-b": ["8002"],
        "service-c": ["8003"],
        "prometheus": ["9090"],
        "grafana": ["3000"],
    }
    for role in ("orchestrator", "service-a", "service-b", "service-c"):
        service = services[role]
        assert service["command"][:2] == ["worker", role]
        assert service["build"]["context"] == str(ROOT)
        env = service["environment"]
        assert env["KAFKA_BROKER"] == "kafka-1:19092,kafka-2:19092,kafka-3:19092"
        assert env["TOPIC_REPLICATION_FACTOR"] == "3"
        assert set(service["depends_on"]) == brokers
        rates = {"SERVICE_A_FAILURE_RATE", "SERVICE_B_FAILURE_RATE", "SERVICE_C_FAILURE_RATE"}
        assert {"DATA_DIR", *rates} <= set(env)
        # The API token comes from the checked-in env file, a placeholder to replace.
        assert env["API_TOKEN"] == "change-me-to-a-long-random-token"
    for broker in brokers:
        kafka = services[broker]
        assert kafka["image"].startswith("apache/kafka:3.9")
        env = kafka["environment"]
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (
            "3",
            "2",
        )
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert voters == "1@kafka-1:29093,2@kafka-2:29093,3@kafka-3:29093"
    ids = sorted(services[b]["environment"]["KAFKA_NODE_ID"] for b in brokers)
    assert ids == ["1", "2", "3"]
    assert_monitoring(services, workers)


def assert_monitoring(services: dict[str, Any], workers: set[str]) -> None:
    """Prometheus scrapes every worker's /metrics from the config kept in the repo; Grafana
    gets its data source and dashboard from files kept in the repo."""
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["image"].startswith("prom/prometheus")
    assert grafana["image"].startswith("grafana/grafana")
    mounts = {v["target"]: Path(v["source"]) for s in (prometheus, grafana) for v in s["volumes"]}
    config = mounts["/etc/prometheus/prometheus.yml"]
    assert config == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    targets = set(re.findall(r'"([\w-]+):(\d+)"', config.read_text()))
    ports = {name: services[name]["ports"][0]["target"] for name in workers}
    assert targets == {(name, str(port)) for name, port in ports.items()}
    assert mounts["/etc/grafana/provisioning"] == ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["/etc/grafana/dashboards"] == ROOT / "deploy" / "grafana" / "dashboards"


def exported_metric_names() -> set[str]:
    """Every sample name a worker's /metrics can hold: ours, and Faust's sensor's."""
    orchestrator, participant = CollectorRegistry(), CollectorRegistry()
    FaustMetrics.create(orchestrator, "faust")
    SagaMetrics(orchestrator, WORKFLOWS, list, 1, int)
    orchestrator.register(ConsumerLag(faust.App("names-only"), []))
    ParticipantMetrics(participant, "service-a")
    names = set()
    for metric in [*orchestrator.collect(), *participant.collect()]:
        names |= {f"{metric.name}{suffix}" for suffix in SUFFIXES[metric.type]}
    return names


SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def test_grafana_dashboard_charts_only_metrics_the_workers_export() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/saga-streams.json").read_text())
    exported = exported_metric_names()
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            named = set(re.findall(r"\b(?:saga|faust)_\w+", target["expr"]))
            assert named, target["expr"]
            assert named <= exported, (panel["title"], named - exported)
    charted = {name for p in dashboard["panels"] for t in p["targets"] for name in
               re.findall(r"\bsaga_\w+", t["expr"])}  # fmt: skip
    for wanted in ("saga_consumer_lag", "saga_stuck", "saga_duration_seconds_bucket"):
        assert wanted in charted
