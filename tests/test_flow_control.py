"""Resuming the flow after a rebalance empties the agents' queues once, not twice.

Faust's recovery resumes the flow a second time after it has sought the stream
partitions to their committed offsets; the messages fetched in between were in the
queues, and Faust's own flow control threw them away (flow_control.py). The end-to-end
case, a takeover whose first transfer requests never ran, is test_scale_out.py.
"""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, ThrowableQueue

from saga_streams.app import create_app
from saga_streams.config import load_settings
from saga_streams.flow_control import ResumeOnce
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
    longer empties the queues on a second resume, and flow_control.py can go."""

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
