"""What an agent needs from outside its table: a way to send, a way to wait for the
changelog, and the other workers of its role.

A role's app is built with a ``Wiring``. In a worker it is ``Wiring.of(app)``: Kafka
through Faust. The agent tests give fakes instead (a recording ``send``, a ``durable``
that has nothing to wait for, ``Alone`` as the peers, batches of one), so they build the
real app without patching any of its internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust

from saga_streams.agents.batches import BATCH_MAX
from saga_streams.app import Send
from saga_streams.tables.accounts import SWEEP_EVERY_S
from saga_streams.tables.durable import DurableTable
from saga_streams.web.routing import Peers

__all__ = ["KafkaOutlet", "Wiring", "WiringFor"]


class KafkaOutlet:
    """``Send`` through the app's producer. Keys and values go out as the raw bytes given:
    JSON values and plain-string keys, readable with kcat."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._topics: dict[str, faust.TopicT] = {}

    async def __call__(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Any = None,
    ) -> Awaitable[Any]:
        channel = self._topics.get(topic)
        if channel is None:
            channel = self._app.topic(topic, key_serializer="raw", value_serializer="raw")
            self._topics[topic] = channel
        acknowledged: Awaitable[Any] = await channel.send(
            key=key, value=value, partition=partition, headers=headers
        )
        return acknowledged


@dataclass(frozen=True)
class Wiring:
    send: Send
    #: Wait until every write of a table so far is in its changelog (``DurableTable``).
    durable: Callable[[DurableTable], Awaitable[None]]
    peers: Peers
    #: The most events an agent takes in one batch.
    batch_max: int = BATCH_MAX
    #: A participant sweeps a partition's ledger archive at most this often (seconds).
    sweep_every_s: float = SWEEP_EVERY_S

    @classmethod
    def of(cls, app: faust.App) -> Wiring:
        """The wiring of a real worker: Kafka through the app, Faust's assignment."""
        return cls(send=KafkaOutlet(app), durable=DurableTable.written, peers=Peers(app))


#: How a role's factory gets its wiring, once it has made its app.
WiringFor = Callable[[faust.App], Wiring]
