"""Tests of saga_streams.local.kafka against real Kafka nodes (no mocks, no skips).

They need ``java`` and ``keytool`` on PATH and either the cached jars or ``mvn`` with
access to Maven Central (the first run fetches ~46 MB into
``${SAGA_KAFKA_CACHE:-~/.cache/saga_streams}``).  A node takes a few seconds to start on
a 2-core machine, three nodes about 8; a three-node cluster stops in about 6 (the last
quorum leader waits 5 s for a successor before it exits).
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed

from saga_streams.local.cluster import LocalCluster
from saga_streams.local.kafka import (
    KafkaNode,
    LocalKafka,
    LocalKafkaError,
    free_port,
    free_ports,
    main,
    ready_message,
)

TOPIC = "local-kafka-smoke"


async def _create_topic(
    client: dict[str, Any], topic: str = TOPIC, partitions: int = 1, replicas: int = 1
) -> None:
    # The broker does not auto-create topics (see KafkaNode.server_properties): declare it.
    admin = AIOKafkaAdminClient(request_timeout_ms=20_000, **client)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, replicas)])
        errors = [error for error in response.topic_errors if error[1] not in (0, 36)]
        assert not errors, errors  # 36: TOPIC_ALREADY_EXISTS
    finally:
        await admin.close()


async def _describe(client: dict[str, Any], topic: str = TOPIC) -> dict[str, Any]:
    """``{"brokers": [node ids], "partitions": [{leader, replicas, isr}]}`` once the
    metadata shows the topic with a leader (a new topic reaches each broker's metadata
    a moment after it is created)."""
    admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **client)
    await admin.start()
    try:
        deadline = time.monotonic() + 20
        described: Any = None
        for _ in range(100):  # every 0.2 s for 20 s
            cluster = await admin.describe_cluster()
            (described,) = await admin.describe_topics([topic])
            partitions = described["partitions"]
            if partitions and all(partition["leader"] >= 0 for partition in partitions):
                return {
                    "brokers": sorted(broker["node_id"] for broker in cluster["brokers"]),
                    "partitions": partitions,
                }
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        raise AssertionError(f"no leader for {topic}: {described}")
    finally:
        await admin.close()


async def _min_insync_replicas(client: dict[str, Any], topic: str = TOPIC) -> str:
    """The topic's ``min.insync.replicas`` as the brokers apply it."""
    admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **client)
    await admin.start()
    try:
        wanted = ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})
        deadline = time.monotonic() + 20
        resource: Any = None
        for _ in range(100):  # every 0.2 s for 20 s
            # Asked of any broker: one whose metadata lacks the new topic yet answers
            # without entries.
            (response,) = await admin.describe_configs([wanted])
            (resource,) = response.to_object()["resources"]
            if resource["config_entries"]:
                (entry,) = resource["config_entries"]
                return str(entry["config_value"])
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        raise AssertionError(f"no configuration for {topic}: {resource}")
    finally:
        await admin.close()


async def _produce(client: dict[str, Any], value: bytes, topic: str = TOPIC) -> None:
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=30_000, **client)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"key"), 40)
    finally:
        await producer.stop()


async def _read_all(client: dict[str, Any], count: int, timeout: float = 30.0) -> list[bytes]:
    """The first ``count`` messages of the topic, from the earliest offset."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        group_id=None,  # no consumer group: plain read from the earliest offset
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            message = await asyncio.wait_for(consumer.getone(), timeout)
            values.append(message.value)
        return values
    finally:
        await consumer.stop()


def _java_processes_under(path: Path) -> list[str]:
    """Command lines of live java processes that mention ``path`` (our broker's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile
            continue
        if b"java" in cmdline and str(path).encode() in cmdline:
            found.append(f"{proc.name}: {cmdline.decode(errors='replace')[:200]}")
    return found


@pytest.mark.kafka
def test_message_survives_kill_and_restart(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
    client = kafka.client_kwargs()
    value = f"saga-{uuid.uuid4()}".encode()
    try:
        kafka.start()
        assert kafka.is_running()
        assert kafka.bootstrap == f"127.0.0.1:{port}"
        assert kafka.is_formatted()
        # One node keeps the layout it always had: no node-1/ folder.
        assert (tmp_path / "kafka" / "kraft" / "meta.properties").is_file()
        cluster_id = kafka.cluster_id()

        asyncio.run(_create_topic(client))
        asyncio.run(_produce(client, value))
        assert asyncio.run(_read_all(client, 1)) == [value]

        # A second broker on the same port is refused before anything starts.
        second = LocalKafka(tmp_path / "second", port=port, controller_port=free_port())
        with pytest.raises(LocalKafkaError, match=rf"^port {port} is already in use"):
            second.start()
        assert not second.is_running()

        # Crash: SIGKILL, no clean shutdown.
        kafka.kill()
        assert not kafka.is_running()
        assert kafka.wait() == -signal.SIGKILL

        # Same data directory: no new format, the message is still there.
        kafka.start()
        assert kafka.cluster_id() == cluster_id
        assert asyncio.run(_read_all(client, 1)) == [value]

        kafka.stop()
        assert not kafka.is_running()
        # The JVM exits 143 (128 + SIGTERM) after its shutdown hook ran.
        assert kafka.wait() in (0, 143)
    finally:
        kafka.kill()  # no-op unless an assertion failed while it ran
    assert _java_processes_under(tmp_path) == []


def _assert_three_nodes_of_one_cluster(kafka: LocalKafka, data_dir: Path, bootstrap: str) -> None:
    assert kafka.bootstrap == bootstrap
    assert kafka.client_env() == {
        "KAFKA_BROKER": f"kafka://{bootstrap}",
        "TOPIC_REPLICATION_FACTOR": "3",
    }
    assert [node.node_id for node in kafka.nodes] == [1, 2, 3]
    assert all(node.is_running() for node in kafka.nodes)
    assert len({node.pid for node in kafka.nodes}) == 3
    cluster_ids = {
        (data_dir / f"node-{n}" / "kraft" / "meta.properties")
        .read_text()
        .split("cluster.id=")[1]
        .split()[0]
        for n in (1, 2, 3)
    }
    assert cluster_ids == {kafka.cluster_id()}


def _replicated_topic(client: dict[str, Any]) -> dict[str, Any]:
    """The topic, made with three replicas: its one partition, on every node and in sync."""
    asyncio.run(_create_topic(client, replicas=3))
    described = asyncio.run(_describe(client))
    assert described["brokers"] == [1, 2, 3]
    partitions: list[dict[str, Any]] = described["partitions"]
    (partition,) = partitions
    assert sorted(partition["replicas"]) == [1, 2, 3]
    assert sorted(partition["isr"]) == [1, 2, 3]
    assert asyncio.run(_min_insync_replicas(client)) == "2"
    return partition


def _kill_the_leader_and_produce(
    kafka: LocalKafka, leader: int, value: bytes
) -> tuple[KafkaNode, float]:
    """Kill the partition's leader: a new one is elected, the ISR shrinks to two
    (min.insync.replicas=2), and a produce with acks=all still succeeds. Returns the
    node killed and how long that produce took."""
    victim = next(node for node in kafka.nodes if node.node_id == leader)
    victim.kill()
    assert not victim.is_running() and kafka.is_running()
    survivors = ",".join(node.bootstrap for node in kafka.nodes if node is not victim)
    began = time.monotonic()
    asyncio.run(_produce({"bootstrap_servers": survivors}, value))
    produce_seconds = time.monotonic() - began
    (partition,) = asyncio.run(_describe({"bootstrap_servers": survivors}))["partitions"]
    assert partition["leader"] != victim.node_id
    assert victim.node_id not in partition["isr"]
    return victim, produce_seconds


def _wait_in_sync(client: dict[str, Any], nodes: list[int], timeout: float = 30.0) -> None:
    """Until the partition's ISR is ``nodes`` (asked at most ``timeout`` s, every 0.5 s)."""
    deadline = time.monotonic() + timeout
    isr: list[int] = []
    for _ in range(int(timeout / 0.5) + 1):
        isr = sorted(asyncio.run(_describe(client))["partitions"][0]["isr"])
        if isr == nodes or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert isr == nodes, f"the restarted node did not rejoin the ISR: {isr}"


@pytest.mark.kafka
def test_three_nodes_replicate_and_serve_with_one_killed(tmp_path: Path) -> None:
    ports = free_ports(6)
    kafka = LocalKafka(tmp_path / "kafka", brokers=3, ports=ports[:3], controller_ports=ports[3:])
    client = kafka.client_kwargs()
    values = [f"saga-{uuid.uuid4()}".encode() for _ in range(2)]
    try:
        kafka.start()
        bootstrap = ",".join(f"127.0.0.1:{port}" for port in ports[:3])
        _assert_three_nodes_of_one_cluster(kafka, tmp_path / "kafka", bootstrap)
        partition = _replicated_topic(client)
        victim, produce_seconds = _kill_the_leader_and_produce(
            kafka, partition["leader"], values[0]
        )

        # The node comes back on its data and catches up: three in sync again.
        victim.start()
        assert victim.is_running()
        assert (victim.kraft_dir / f"{TOPIC}-0").is_dir()
        _wait_in_sync(client, [1, 2, 3])
        asyncio.run(_produce(client, values[1]))
        assert asyncio.run(_read_all(client, 2)) == values

        began_stop = time.monotonic()
        kafka.stop()
        stop_seconds = time.monotonic() - began_stop
        assert not kafka.is_running()
        # Clean exits, except that the last node may be left without a quorum while in
        # its controlled shutdown: that one (at most) is killed.
        codes = [node.wait() for node in kafka.nodes]
        assert all(code in (0, 143, -9) for code in codes), codes
        assert codes.count(-9) <= 1, codes
        print(
            f"\n3 nodes: cold start {kafka.last_start_seconds:.1f}s, acks=all produce with "
            f"one killed {produce_seconds:.1f}s, node restart "
            f"{victim.last_start_seconds:.1f}s, stop {stop_seconds:.1f}s"
        )
    finally:
        kafka.kill()
    assert _java_processes_under(tmp_path) == []


def _assert_secure_client_env(env: dict[str, str], port: int) -> tuple[str, Path]:
    """The settings a worker gets for a SASL_SSL broker; returns (password, CA file)."""
    password = env["KAFKA_SASL_PASSWORD"]
    ca_file = Path(env["KAFKA_SSL_CAFILE"])
    assert env == {
        "KAFKA_BROKER": f"kafka://127.0.0.1:{port}",
        "TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "saga",
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(ca_file),
    }
    assert len(password) >= 16
    assert ca_file.is_absolute()
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    return password, ca_file


def _assert_printed_kcat_lists_the_topic(
    kafka: LocalKafka, port: int, password: str, ca_file: Path
) -> None:
    """The kcat command the CLI prints has every flag SASL_SSL needs, and lists the topic."""
    kcat = next(
        line for line in ready_message(kafka, None).splitlines() if line.startswith("kcat ")
    )
    assert kcat == shlex.join(
        [
            "kcat",
            "-b",
            f"127.0.0.1:{port}",
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            "sasl.username=saga",
            "-X",
            f"sasl.password={password}",
            "-X",
            f"ssl.ca.location={ca_file}",
            "-L",
        ]
    )
    listed = subprocess.run(
        shlex.split(kcat), capture_output=True, text=True, timeout=30, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert f'topic "{TOPIC}" with 1 partitions' in listed.stdout


@pytest.mark.kafka
def test_secure_broker_needs_the_password_and_the_ca(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port, secure=True)
    value = f"saga-{uuid.uuid4()}".encode()
    try:
        kafka.start()
        env = kafka.client_env()
        password, ca_file = _assert_secure_client_env(env, port)

        # The right user, password and CA: produce and consume.
        client = kafka.client_kwargs()
        asyncio.run(_create_topic(client))
        asyncio.run(_produce(client, value))
        assert asyncio.run(_read_all(kafka.client_kwargs(), 1)) == [value]

        # A wrong password is refused by the broker's SCRAM check.
        wrong = {**kafka.client_kwargs(), "sasl_plain_password": password + "x"}
        del wrong["bootstrap_servers"]
        with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
            asyncio.run(create_conn("127.0.0.1", port, request_timeout_ms=10_000, **wrong))

        _assert_printed_kcat_lists_the_topic(kafka, port, password, ca_file)

        # A restart reuses the certificate and the password.
        kafka.stop()
        kafka.start()
        assert kafka.client_env() == env
        assert asyncio.run(_read_all(kafka.client_kwargs(), 1)) == [value]
        print(f"\nsecure broker: warm start {kafka.last_start_seconds:.1f}s")
    finally:
        kafka.kill()
    assert _java_processes_under(tmp_path) == []


def test_cluster_ports_and_configuration(tmp_path: Path) -> None:
    single = LocalKafka(tmp_path / "one")
    assert (single.ports, single.controller_ports) == ([9092], [9093])
    assert single.bootstrap == "127.0.0.1:9092"
    assert single.nodes[0].data_dir == tmp_path / "one"
    props = single.server_properties()
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"

    three = LocalKafka(tmp_path / "three", brokers=3)
    assert three.ports == [9092, 9093, 9094]
    assert three.controller_ports == [19092, 19093, 19094]
    assert three.bootstrap == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert three.client_env() == {
        "KAFKA_BROKER": "kafka://127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094",
        "TOPIC_REPLICATION_FACTOR": "3",
    }
    voters = "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"
    for node in three.nodes:
        assert node.data_dir == tmp_path / "three" / f"node-{node.node_id}"
        props = node.server_properties()
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == voters
        assert {key: props[key] for key in props if "replica" in key or "isr" in key} == {
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
        }
    assert not (tmp_path / "three").exists()  # describing a cluster touches no disk

    with pytest.raises(ValueError, match="overlap"):
        LocalKafka(tmp_path / "x", brokers=2, ports=[1000, 1001], controller_ports=[1001, 1002])
    with pytest.raises(ValueError, match="give 3 ports"):
        LocalKafka(tmp_path / "x", brokers=3, ports=[1000, 1001])
    assert main(["--brokers", "0"]) == 1


def test_local_cluster_gives_workers_the_cluster_settings(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, {"TOPIC_PARTITIONS": "2"}, brokers=3)
    env = cluster.worker_env({"X": "1"})
    assert env == {
        "KAFKA_BROKER": f"kafka://{cluster.kafka.bootstrap}",
        "TOPIC_REPLICATION_FACTOR": "3",
        "DATA_DIR": str(tmp_path / "data"),
        "TOPIC_PARTITIONS": "2",
        "X": "1",
    }
    assert len(cluster.kafka.nodes) == 3
    used = cluster.kafka.ports + cluster.kafka.controller_ports + list(cluster.ports.values())
    assert len(set(used)) == len(used)


@pytest.mark.parametrize("taken", ["port", "controller_port"])
def test_taken_port_is_a_clear_error(tmp_path: Path, taken: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = int(holder.getsockname()[1])
        other = free_port()
        port, controller_port = (busy, other) if taken == "port" else (other, busy)
        kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
        with pytest.raises(LocalKafkaError) as excinfo:
            kafka.start()
    assert str(excinfo.value) == f"port {busy} is already in use: is another Kafka running?"
    assert not kafka.is_running()
    assert not (tmp_path / "kafka").exists()  # refused before touching the disk


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
