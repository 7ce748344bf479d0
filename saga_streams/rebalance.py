"""What a rebalance must not lose: two gaps in Faust's recovery, closed for every role.

After a rebalance Faust relies on two things to process every message exactly where the
last owner left off: it empties the agents' queues of what was fetched before, and it
seeks every stream partition back to its committed offset, so that whatever it dropped
on the way is fetched again. Both fall short, and in each case the messages are lost to
the worker until its next rebalance or restart: never processed, never acknowledged.
A lost reply, command or timeout heals itself (the orchestrator's timeouts send a step
again); a lost transfer request does not, since nothing else knows of its saga. Both
were seen in the scale-out test, where a worker of the orchestrator is killed and the
other takes over its partitions: transfer requests answered 202 never ran.

1. **The queues are emptied twice** (faust-streaming issue 596). Faust's recovery calls
   ``flow_control.resume()`` once when the changelogs are read or found up to date, and
   again after it has resumed and sought the stream partitions; the consumer fetches the
   new assignment's first messages in between, and the second ``resume()`` emptied the
   queues they were in. ``ResumeOnce`` empties them only when the flow was suspended.
2. **A partition nobody has committed is not sought back.** Messages fetched while the
   flow is stopped are dropped, and ``seek_to_committed`` is what fetches them again; but
   it seeks only partitions with a committed offset. A worker killed before its first
   commit (every 2.8 s) leaves its partitions with none, and the messages the new owner
   dropped were gone. ``rewind_never_committed`` seeks such a partition to its first
   offset, where a consumer without a committed offset starts anyway
   (``auto.offset.reset=earliest``): its messages are handled again, which every agent
   does idempotently, instead of never.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from mode.utils.queues import FlowControlEvent

__all__ = ["ResumeOnce", "rewind_never_committed"]


class ResumeOnce(FlowControlEvent):
    """Faust's flow control, but resuming a running flow changes nothing."""

    def resume(self) -> None:
        if self.is_active():
            # Already resumed: the queues hold messages of the current assignment.
            return
        super().resume()


def rewind_never_committed(consumer: Consumer, changelogs: Callable[[], set[str]]) -> None:
    """Make ``consumer.seek_to_committed`` also seek every stream partition without a
    committed offset to its first offset (changelog partitions are Faust's recovery's own,
    positioned by it: left alone)."""
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_first() -> Mapping[Any, int]:
        committed: Mapping[Any, int] = await seek_to_committed()
        never = [
            TP(tp.topic, tp.partition)
            for tp, offset in committed.items()
            if not offset and tp.topic not in changelogs()
        ]
        if never:
            first = await consumer.earliest_offsets(*never)
            await consumer.seek_wait(first)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_first  # type: ignore[method-assign]
