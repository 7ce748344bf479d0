"""After a rebalance nothing fetched is lost (rebalance.py): the agents' queues are
emptied once, not twice, and a partition nobody has committed is sought to its first
offset. The end-to-end cases, takeovers whose transfer requests never ran, are in
test_scale_out.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.types import TP
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from saga_streams.app import create_app
from saga_streams.config import load_settings
from saga_streams.rebalance import ResumeOnce, rewind_never_committed
from saga_streams.roles import ORCHESTRATOR
from saga_streams.workflows import WORKFLOWS


def rebalance(flow: FlowControlEvent, queue: ThrowableQueue[str], fetched_meanwhile: str) -> None:
    """What a rebalance does to the flow, as Faust's recovery does it: suspend, resume
    once the changelogs are read, a message fetched from the new assignment, resume again
    once the stream partitions are sought and resumed."""
    queue.put_nowait("fetched before the rebalance")
    flow.suspend()
    flow.resume()
    queue.put_nowait(fetched_meanwhile)
    flow.resume()


def queued(queue: ThrowableQueue[str]) -> list[str]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_a_second_resume_keeps_what_was_fetched_after_the_first(runner: asyncio.Runner) -> None:
    async def scenario() -> list[str]:
        flow = ResumeOnce()
        queue: ThrowableQueue[str] = ThrowableQueue(flow_control=flow, clear_on_resume=True)
        rebalance(flow, queue, "transfer request 43")
        return queued(queue)

    assert runner.run(scenario()) == ["transfer request 43"]


def test_faust_s_own_flow_control_loses_it(runner: asyncio.Runner) -> None:
    """The behaviour ResumeOnce works around: if this fails, the installed Faust no
    longer empties the queues on a second resume, and ResumeOnce can go."""

    async def scenario() -> list[str]:
        flow = FlowControlEvent()
        queue: ThrowableQueue[str] = ThrowableQueue(flow_control=flow, clear_on_resume=True)
        rebalance(flow, queue, "transfer request 43")
        return queued(queue)

    assert runner.run(scenario()) == []


def test_a_suspended_flow_still_drops_what_was_fetched_before(runner: asyncio.Runner) -> None:
    async def scenario() -> list[str]:
        flow = ResumeOnce()
        queue: ThrowableQueue[str] = ThrowableQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()
        queue.put_nowait("fetched before the rebalance")
        flow.suspend()
        assert not flow.is_active()
        flow.resume()
        return queued(queue)

    assert runner.run(scenario()) == []


def test_every_role_s_agent_queues_are_managed_by_it(runner: asyncio.Runner) -> None:
    async def scenario() -> tuple[FlowControlEvent, list[str]]:
        app = create_app(ORCHESTRATOR, load_settings({}), WORKFLOWS)
        # How Faust builds each stream's and each table's buffer.
        queue: ThrowableQueue[str] = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
        rebalance(app.flow_control, queue, "transfer request 43")
        return app.flow_control, queued(queue)

    flow, kept = runner.run(scenario())
    assert isinstance(flow, ResumeOnce)
    assert kept == ["transfer request 43"]


class Consumer:
    """The calls ``rewind_never_committed`` makes, recorded."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.sought: dict[TP, int] = {}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return self.committed

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return {tp: 7 for tp in partitions}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.update(partitions)


def test_a_partition_never_committed_is_sought_to_its_first_offset(
    runner: asyncio.Runner,
) -> None:
    never, zero, committed = TP("transfer-requests", 0), TP("transfer-requests", 1), TP("x", 2)
    changelog = TP("saga-orchestrator-sagas-changelog", 0)
    consumer = Consumer({never: None, zero: 0, committed: 12, changelog: None})
    rewind_never_committed(cast(Any, consumer), lambda: {changelog.topic})
    answer = runner.run(consumer.seek_to_committed())
    # Faust's own answer is passed on; the partitions without a commit are rewound, the
    # changelog (positioned by Faust's recovery) and the committed one are left alone.
    assert answer == {never: None, zero: 0, committed: 12, changelog: None}
    assert consumer.sought == {never: 7, zero: 7}
