"""Readiness of a local broker: a real Kafka client round trip, not a TCP connect.

A KRaft broker binds its port early but only processes client requests once it has
caught up with the metadata log, and only lists itself in metadata once the controller
has unfenced it.  So "ready" means: a Kafka client (speaking the listener's protocol,
SASL_SSL included) got ApiVersions + Metadata through the bootstrap list and the answer
names the brokers we expect.  One node is ready when its own port lists its own id; a
cluster when the metadata lists every node.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

__all__ = ["broker_ids"]

_THREAD: Final = "local-kafka-probe"


class _NotFromProbes(logging.Filter):
    """A node that is still starting refuses connections or answers without brokers;
    aiokafka logs each such probe as an error, which only clutters the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.current_thread().name != _THREAD


for _name in ("aiokafka", "aiokafka.cluster", "aiokafka.conn"):
    logging.getLogger(_name).addFilter(_NotFromProbes())


async def _round_trip(bootstrap: str, timeout: float, security: Mapping[str, Any]) -> set[int]:
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="saga-streams-local-kafka-probe",
        request_timeout_ms=int(timeout * 1000),
        **security,
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return {int(broker.nodeId) for broker in client.cluster.brokers()}
    except (TimeoutError, KafkaError, OSError):
        return set()
    finally:
        await client.close()


def broker_ids(
    bootstrap: str,
    timeout: float = 3.0,
    security: Callable[[], Mapping[str, Any]] | None = None,
) -> set[int]:
    """The ids of the brokers the cluster's metadata lists (empty: not serving yet).

    ``security`` makes the client's security keyword arguments (``security_protocol``,
    ``sasl_*``, ``ssl_context``); it is called on the probe's own thread.  The round trip
    runs on a private event loop in a helper thread, which keeps a start usable from sync
    code and from code that already runs an event loop (where ``asyncio.run`` is not
    allowed).
    """
    outcome: list[set[int]] = []

    def run() -> None:
        kwargs = security() if security is not None else {}
        outcome.append(asyncio.run(_round_trip(bootstrap, timeout, kwargs)))

    thread = threading.Thread(target=run, name=_THREAD, daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return outcome[0] if outcome else set()
