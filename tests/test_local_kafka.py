"""Tests of saga_streams.local.kafka against a real Kafka broker (no mocks, no skips).

They need ``java`` on PATH and either the cached jars or ``mvn`` with access to Maven
Central (the first run fetches ~46 MB into ``${SAGA_KAFKA_CACHE:-~/.cache/saga_streams}``).
Each broker takes a few seconds to start on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from saga_streams.app import ensure_topics
from saga_streams.local.kafka import LocalKafka, LocalKafkaError, free_port, free_ports

TOPIC = "local-kafka-smoke"


async def _produce(bootstrap: str, value: bytes) -> None:
    # The broker does not auto-create topics (see LocalKafka.server_properties): declare it.
    await ensure_topics(bootstrap, [TOPIC], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=b"key")
    finally:
        await producer.stop()


async def _read_first(bootstrap: str, timeout: float = 30.0) -> bytes:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,  # no consumer group: plain read from the earliest offset
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout)
        value: bytes = message.value
        return value
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
    value = f"saga-{uuid.uuid4()}".encode()
    try:
        kafka.start()
        assert kafka.is_running()
        assert kafka.bootstrap == f"127.0.0.1:{port}"
        assert kafka.is_formatted()
        cluster_id = kafka.cluster_id()

        asyncio.run(_produce(kafka.bootstrap, value))
        assert asyncio.run(_read_first(kafka.bootstrap)) == value

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
        assert asyncio.run(_read_first(kafka.bootstrap)) == value

        kafka.stop()
        assert not kafka.is_running()
        # The JVM exits 143 (128 + SIGTERM) after its shutdown hook ran.
        assert kafka.wait() in (0, 143)
    finally:
        kafka.kill()  # no-op unless an assertion failed while it ran
    assert _java_processes_under(tmp_path) == []


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
