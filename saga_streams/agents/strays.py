"""Messages consumed on a partition their key does not belong to, sent on to the right one.

A table row lives in the partition of the event that wrote it, and an agent reads the
partition of the event it handles. Our producers place a keyed message with murmur2
(``partitions.py``); kcat, confluent-kafka and every librdkafka producer default to a
CRC32-based partitioner, so the same key can land elsewhere. Handled there, a transfer
request would start a saga in a table shard that its replies and timeouts never reach,
and a command would find an empty shard and act on a phantom copy of its account.

So before an agent touches state for a message, it compares the message's partition with
the partition of its routing key (the saga id for the orchestrator, the account for a
participant, both read from the value). A stray is produced again, unchanged (key, value,
headers), onto the partition it belongs to, and the agent moves on; the batch waits for
Kafka to acknowledge every forward before it ends, so the stray's offset is committed
only once its copy is safe.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from faust.types import EventT

from saga_streams.app import Send
from saga_streams.partitions import partition_for

__all__ = ["StrayForwarder"]


class StrayForwarder:
    def __init__(self, send: Send, partitions: int, log: logging.Logger) -> None:
        self.partitions = partitions
        self._send = send
        self._log = log
        #: Forwards since the worker started, by topic.
        self.forwarded: Counter[str] = Counter()
        self._pending: list[tuple[str, int, int, Awaitable[Any]]] = []

    async def forward_if_stray(self, event: EventT[bytes], routing_key: str) -> bool:
        """Forward ``event`` if it is not on ``routing_key``'s partition; True if it was."""
        message = event.message
        home = partition_for(routing_key, self.partitions)
        if message.partition == home or message.value is None:
            return False
        # The very bytes that were consumed, key and headers too.
        future = await self._send(
            message.topic, message.key, message.value, partition=home, headers=message.headers
        )
        self._pending.append((message.topic, message.partition, home, future))
        return True

    async def flush(self) -> None:
        """Wait until Kafka has every forward of the batch; log them in one line."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        for _, _, _, future in pending:
            await future
        moves = Counter((topic, source, home) for topic, source, home, _ in pending)
        self.forwarded.update(topic for topic, _, _, _ in pending)
        self._log.warning(
            "↪️  Forwarded %d stray message(s) to the partition their key belongs to: %s",
            len(pending),
            ", ".join(f"{topic} {a}→{b} x{n}" for (topic, a, b), n in sorted(moves.items())),
        )
