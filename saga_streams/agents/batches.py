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

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import faust
from faust import streams
from faust.types import EventT
from mode.utils.futures import notify

__all__ = ["BATCH_MAX", "BATCH_WAIT", "acting_for", "in_batches"]

#: At most this many events in one batch.
BATCH_MAX = 500
#: How long a batch waits to fill up (seconds): what an event can wait for company. Under
#: load batches fill before it elapses; when idle, it is latency added per hop.
BATCH_WAIT = 0.005


def in_batches(
    stream: faust.StreamT[bytes], batch_max: int = BATCH_MAX
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    """The stream's events in batches: the events that arrive within ``BATCH_WAIT`` of a
    batch's first one, at most ``batch_max``. Each batch's events are acknowledged once
    the agent has finished with it and asks for the next.

    Faust's own ``Stream.take_events`` does the same with one difference: it waits for a
    full batch at most ``within`` at a time, also when nothing comes, so an idle agent
    woke every 5 ms, 200 times a second, for nothing (the largest share of an idle
    worker's CPU in a profile). Here the wait for a batch's first event has no timeout,
    and the window opens when it arrives. The rest is Faust's own mechanism, with its
    stream's processor hook and passive drainer."""
    concrete = cast(faust.Stream[bytes], stream)
    batches = _batches(concrete, batch_max)
    # As Faust registers its own buffering generators: Stream.on_stop closes leftovers.
    concrete._active_agens.add(batches)
    return batches


async def _batches(
    stream: faust.Stream[bytes], batch_max: int
) -> AsyncGenerator[Sequence[EventT[bytes]], None]:
    events: list[EventT[bytes]] = []
    started = asyncio.Event()  # the batch has its first event
    full = asyncio.Event()
    consumed = asyncio.Event()
    # Set while the agent handles a batch: an event arriving meanwhile waits for it,
    # so no batch is acknowledged with an event the agent never saw.
    handling: asyncio.Future[None] | None = None

    async def add(value: Any) -> Any:
        nonlocal handling
        if handling is not None:
            try:
                await handling
            finally:
                handling = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("an event in a batch without a current event")
        events.append(event)
        started.set()
        if len(events) >= batch_max:
            full.set()
            consumed.clear()
            # At most batch_max: the next event waits until this batch is handled.
            await stream.wait(consumed)  # type: ignore[arg-type]  # mode's Event type
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged here, once handled
    stream.add_processor(add)
    stream._enable_passive(cast("faust.ChannelT[Any]", aiter(stream.channel)))
    try:
        while not stream.should_stop:
            if await stream.wait_for_stopped(started):  # type: ignore[arg-type]
                break
            if not full.is_set():
                await stream.wait_for_stopped(full, timeout=BATCH_WAIT)  # type: ignore[arg-type]
            if not events:
                continue
            handling = asyncio.get_running_loop().create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                notify(handling)
                started.clear()
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add)


@contextmanager
def acting_for(event: EventT[bytes]) -> Iterator[None]:
    """Handle ``event`` as Faust's stream loop would: its tables read and write the
    partition of the current event, which in a batch is whichever came last."""
    token = streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        streams._current_event.reset(token)
