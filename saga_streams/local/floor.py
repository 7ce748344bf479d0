"""``python -m saga_streams floor-bench``: the framework's floor under a saga's CPU.

A saga is five events through Faust agents (at the orchestrator its request and two
replies, at each service a command), and at every one of them the agent does the same
three things around its own logic: it takes the event in a batch (``agents/batches.py``),
writes a table key and waits for the changelog (``tables/durable.py``), then sends a
message. The floor worker does exactly that and nothing else: each event's value is
written under its key and sent on to ``floor-out``, by the same app settings, batching and
durable table as the roles (``create_app``). What one such event costs, in the worker and
in the broker, is what a saga costs five times over before any saga logic runs.

The driver starts a broker and one floor worker of its own, keeps ``--in-flight`` events
in flight (a new one as each comes out, as the saga bench keeps sagas in flight), and
prints events per second and CPU milliseconds per event of the worker, the broker and
itself; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from saga_streams.agents.batches import acting_for, in_batches
from saga_streams.agents.wiring import KafkaOutlet
from saga_streams.app import SagaApp, create_app, declare_topic, ensure_topics
from saga_streams.config import Settings
from saga_streams.launch import lazy_app
from saga_streams.local.bench import cpu_seconds
from saga_streams.local.kafka import LocalKafka
from saga_streams.local.ports import free_ports
from saga_streams.local.workers import WorkerProcess
from saga_streams.roles import Role
from saga_streams.tables.durable import durable_table
from saga_streams.web.health import register_health_view
from saga_streams.workflows import WORKFLOWS

__all__ = ["FLOOR", "FloorResult", "create_floor_app", "main", "run_floor"]

FLOOR = Role("floor", "saga-floor", 8009, "saga_streams.local.floor")
IN_TOPIC = "floor-in"
OUT_TOPIC = "floor-out"
#: Of every topic, the changelog included (the roles' default).
PARTITIONS = 4
#: About the size of a saga's stored state in the middle of its run.
VALUE_BYTES = 600


def create_floor_app(settings: Settings) -> SagaApp:
    """The floor worker: per event, a durable table write and a message sent on."""
    app = create_app(FLOOR, settings, WORKFLOWS)
    source = declare_topic(app, IN_TOPIC, partitions=settings.partitions)
    table = durable_table(app, "floor", settings.partitions, help="Key to its last value")
    send = KafkaOutlet(app)

    async def hop(stream: faust.StreamT[bytes]) -> None:
        async for events in in_batches(stream):
            for event in events:
                with acting_for(event):
                    table[event.key.decode()] = event.value.decode()  # type: ignore[union-attr]
            await table.written()
            for event in events:
                await send(OUT_TOPIC, event.key, event.value)

    app.agent(source, name="floor-hop")(hop)
    register_health_view(app, FLOOR)
    return app


__getattr__ = lazy_app(create_floor_app)


@dataclass
class FloorResult:
    events: int
    in_flight: int
    seconds: float
    events_per_s: float
    #: CPU milliseconds per event: the floor worker, the broker, the load generator.
    cpu_ms_per_event: dict[str, float]
    #: Records in the table's changelog after the run, warm-up included: one per event.
    changelog_records: int


async def _drive(bootstrap: str, events: int, in_flight: int, tag: str) -> float:
    """Send ``events`` through the worker, ``in_flight`` at a time; return the seconds
    from the first send to the last one out."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    consumer = AIOKafkaConsumer(
        OUT_TOPIC, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    payload = b"x" * VALUE_BYTES
    sent = done = 0

    async def send_one() -> None:
        nonlocal sent
        sent += 1
        await producer.send(IN_TOPIC, key=f"{tag}-{sent}".encode(), value=payload)

    try:
        began = time.monotonic()
        for _ in range(min(in_flight, events)):
            await send_one()
        while done < events:
            batch = await consumer.getmany(timeout_ms=30_000)
            if not batch:
                raise RuntimeError(f"floor worker silent for 30 s: {done} of {events} out")
            for message in (m for ms in batch.values() for m in ms):
                if not (message.key or b"").startswith(tag.encode()):
                    continue  # an earlier run's
                done += 1
                if sent < events:
                    await send_one()
        return time.monotonic() - began
    finally:
        await consumer.stop()
        await producer.stop()


async def _changelog_records(bootstrap: str) -> int:
    """How many records the floor table's changelog holds (its end offsets summed)."""
    topic = f"{FLOOR.app_id}-floor-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def run_floor(root: Path, events: int, in_flight: int, warmup: int = 500) -> FloorResult:
    kafka_port, controller_port, web_port = free_ports(3)
    kafka = LocalKafka(root / "kafka", ports=[kafka_port], controller_ports=[controller_port])
    kafka.start()
    worker = WorkerProcess(
        FLOOR.name,
        web_port,
        {**kafka.client_env(), "DATA_DIR": str(root / "data"), "TOPIC_PARTITIONS": str(PARTITIONS)},
        log_path=root / "floor.log",
        command=[
            *(sys.executable, "-m", "faust", "-A", FLOOR.module, "worker"),
            *("--web-port", str(web_port), "--loglevel", "warn"),
        ],
    )
    try:
        asyncio.run(ensure_topics(kafka.bootstrap, [IN_TOPIC, OUT_TOPIC], partitions=PARTITIONS))
        worker.start()
        worker.wait_ready()
        asyncio.run(_drive(kafka.bootstrap, warmup, in_flight, "warmup"))
        pids = {"floor worker": worker.proc.pid if worker.proc else None, "kafka": kafka.pid}
        pids["load generator"] = os.getpid()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        seconds = asyncio.run(_drive(kafka.bootstrap, events, in_flight, uuid.uuid4().hex[:8]))
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        changelog_records = asyncio.run(_changelog_records(kafka.bootstrap))
    finally:
        worker.stop()
        kafka.stop()
    cpu = {name: seconds_used * 1000 / events for name, seconds_used in used.items()}
    return FloorResult(events, in_flight, seconds, events / seconds, cpu, changelog_records)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m saga_streams floor-bench")
    parser.add_argument("--events", type=int, default=20_000, help="events to send through")
    parser.add_argument("--in-flight", type=int, default=64, help="events in flight at once")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.events < 1 or args.in_flight < 1:
        print("saga_streams: --events and --in-flight must be at least 1", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="saga-floor-"))
    try:
        result = run_floor(root, args.events, args.in_flight)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cpu = ", ".join(f"{name} {ms:.2f} ms" for name, ms in result.cpu_ms_per_event.items())
    print(
        f"floor ({result.events} events, {result.in_flight} in flight): "
        f"{result.events_per_s:,.0f} events/s; CPU per event: {cpu}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0
