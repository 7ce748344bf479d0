"""Flow control that resumes once: no message is thrown away after a rebalance.

Faust stops the flow of messages into its agents' queues when a rebalance starts, and
resumes it when the worker's tables are recovered. Resuming empties the queues: what was
fetched before the rebalance belongs to partitions that may have moved, and the consumer
goes back to the committed offsets anyway.

Faust's recovery calls ``resume()`` more than once per rebalance, though: once when the
changelogs are read (or found up to date), and again after it has resumed the stream
partitions and sought them to their committed offsets. Between the two, the consumer
fetches and delivers the new assignment's first messages into the queues, and the second
``resume()`` empties them. Those messages are gone: the consumer's position and read
offset are already past them, nothing acknowledges them, so the committed offset stops
there too, and the worker never sees them again until its next rebalance or restart.

Seen in the scale-out test: after a worker of the orchestrator was killed, the survivor
took over its partitions, and the transfer requests queued in that window never ran,
although each had been answered 202. A lost reply, command or timeout heals itself (the
orchestrator's timeouts send a step again); a lost request does not, since nothing else
knows of the saga. Upstream: faust-streaming issue 596.

Here ``resume()`` empties the queues only when the flow was actually suspended: the first
resume after a rebalance still drops what was fetched before it; a later one, while the
flow already runs, leaves the messages fetched since then to be processed.
"""

from __future__ import annotations

from mode.utils.queues import FlowControlEvent

__all__ = ["ResumeOnce"]


class ResumeOnce(FlowControlEvent):
    """Faust's flow control, but resuming a running flow changes nothing."""

    def resume(self) -> None:
        if self.is_active():
            # Already resumed: the queues hold messages of the current assignment.
            return
        super().resume()
