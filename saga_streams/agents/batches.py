"""Events in batches: one wait for Kafka per batch instead of one per event.

An agent that must not act before its table write is in the changelog (see
tables/durable.py) pays a round trip to the broker per event if it handles them one at a
time; with one agent per worker, that round trip caps the worker's rate. In batches, the
agent handles every event of a batch in order, against the table as the earlier events
of the batch left it, waits once for all their writes, and only then sends what they
decided. Faust acknowledges a batch's events after the agent has finished with it, so a
crash at any point still means redelivery of events whose effects are durable or absent.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import faust
from faust import streams
from faust.types import EventT

__all__ = ["BATCH_MAX", "BATCH_WAIT", "acting_for", "in_batches"]

#: At most this many events in one batch.
BATCH_MAX = 500
#: How long a batch waits to fill up (seconds): what an event can wait for company. Under
#: load batches fill before it elapses; when idle, it is latency added per hop.
BATCH_WAIT = 0.005


async def in_batches(
    stream: faust.StreamT[bytes], batch_max: int = BATCH_MAX
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    # take_events is on the concrete Stream, not on the StreamT interface.
    batches = cast(faust.Stream[bytes], stream).take_events(batch_max, within=BATCH_WAIT)
    async for events in batches:
        yield events


@contextmanager
def acting_for(event: EventT[bytes]) -> Iterator[None]:
    """Handle ``event`` as Faust's stream loop would: its tables read and write the
    partition of the current event, which in a batch is whichever came last."""
    token = streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        streams._current_event.reset(token)
