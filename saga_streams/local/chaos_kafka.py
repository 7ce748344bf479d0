"""What a chaos run asks of Kafka itself: whether every consumer caught up, which
requests are on the request topic, and commands and replies produced a second time."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from saga_streams.app import REPLY_TOPIC, TRANSFER_REQUEST_TOPIC, consumed_topics
from saga_streams.connection import KafkaAccess
from saga_streams.roles import ROLES
from saga_streams.workflows import WORKFLOWS

__all__ = ["groups_caught_up", "lagging", "replay", "requests_on_topic"]

#: Messages one replay reads per partition at most, at each end of it.
_WINDOW = 200


async def groups_caught_up(access: KafkaAccess) -> bool:
    """True when every role's consumer group has committed up to the end of its topics."""
    return await lagging(access) == []


async def lagging(access: KafkaAccess) -> list[str] | None:
    """Each partition a role's consumer group has not committed to the end of,
    ``service-a: service-a-deduct[2] 20/30``; None if the broker cannot tell yet."""
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **access.client_kwargs())
    consumer = AIOKafkaConsumer(group_id=None, **access.client_kwargs())
    behind: list[str] = []
    try:
        await admin.start()
        await consumer.start()
        for role, topics in consumed_topics(WORKFLOWS).items():
            committed = await admin.list_consumer_group_offsets(ROLES[role].app_id)
            tps = await _partitions(admin, topics)
            if len(tps) < len(topics):
                return None  # no metadata yet: a topic without partitions is no answer
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                done = committed[tp].offset if tp in committed else 0
                if done < ends[tp]:
                    behind.append(f"{role}: {tp.topic}[{tp.partition}] {done}/{ends[tp]}")
        return behind
    except Exception:  # the broker or a coordinator is not there yet: no answer
        return None
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of these topics, from the cluster's metadata. (A consumer's
    ``partitions_for_topic`` knows only the topics it subscribed to: none here.)"""
    described = await admin.describe_topics(list(topics))
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def requests_on_topic(access: KafkaAccess, saga_ids: set[str]) -> set[str]:
    """Which of these saga ids have their request on the request topic (diagnostics)."""
    consumer = AIOKafkaConsumer(
        TRANSFER_REQUEST_TOPIC,
        group_id=None,
        auto_offset_reset="earliest",
        **access.client_kwargs(),
    )
    await consumer.start()
    found: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                return found
            for messages in batch.values():
                found |= {m.key.decode() for m in messages if m.key} & saga_ids
        return found
    finally:
        await consumer.stop()


#: (topic, partition, offset, key, value) of a message read.
Message = tuple[str, int, int, bytes | None, bytes]


async def _read_range(
    consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]], seconds: float
) -> list[Message]:
    """The messages at offsets [start, stop) of each partition, within ``seconds``."""
    seen: list[Message] = []
    open_ranges = {tp: r for tp, r in ranges.items() if r[0] < r[1]}
    if not open_ranges:
        return seen
    consumer.assign(list(open_ranges))
    for tp, (start, _) in open_ranges.items():
        consumer.seek(tp, start)
    deadline = time.monotonic() + seconds
    while open_ranges and time.monotonic() < deadline:
        batch = await consumer.getmany(*open_ranges, timeout_ms=1000, max_records=5000)
        for tp, messages in batch.items():
            stop = ranges[tp][1]
            seen += [
                (m.topic, m.partition, m.offset, m.key, m.value)
                for m in messages
                if m.offset < stop and m.value is not None
            ]
        for tp in list(open_ranges):
            if await consumer.position(tp) >= open_ranges[tp][1]:
                consumer.pause(tp)
                del open_ranges[tp]
    return seen


async def replay(
    access: KafkaAccess, count: int, rng: random.Random, *, oldest: bool = True
) -> tuple[int, int]:
    """Produce again a random sample of messages already on the command and reply topics,
    every other one onto a partition other than the one its key belongs to (the agents
    forward those to it); return how many, and how many astray. The sample is drawn from
    the newest messages of each partition and, with ``oldest``, from its first ones too:
    after a long run, commands older than any ledger window the participants keep."""
    consumer = AIOKafkaConsumer(group_id=None, **access.client_kwargs())
    producer = AIOKafkaProducer(acks="all", **access.client_kwargs())
    await consumer.start()
    await producer.start()
    try:
        tps = [
            TopicPartition(topic, partition)
            for topic in [*WORKFLOWS.topics, REPLY_TOPIC]
            for partition in sorted(await producer.partitions_for(topic))
        ]
        window = min(_WINDOW, count)
        begins, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        ranges = {tp: (max(begins[tp], ends[tp] - window), ends[tp]) for tp in tps}
        read = await _read_range(consumer, ranges, 20)
        if oldest:
            firsts = {tp: (begins[tp], min(ends[tp], begins[tp] + window)) for tp in tps}
            read += await _read_range(consumer, firsts, 20)
        # Short partitions' first and newest messages are the same ones: each once.
        seen = sorted({m[:3]: m for m in read}.values(), key=lambda m: m[:3])
        sample = rng.sample(seen, min(count, len(seen)))
        return len(sample), await _produce(producer, sample, rng)
    finally:
        await producer.stop()
        await consumer.stop()


async def _produce(producer: AIOKafkaProducer, sample: list[Message], rng: random.Random) -> int:
    astray = 0
    for number, (topic, partition, _, key, value) in enumerate(sample):
        elsewhere = None
        others = sorted(await producer.partitions_for(topic) - {partition})
        if number % 2 and others:
            elsewhere = rng.choice(others)
            astray += 1
        await producer.send_and_wait(topic, value, key=key, partition=elsewhere)
    return astray
