from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Stack
from tests.test_agents import Outbox


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[object]:
    """Build stacks (each with its own broker); all are stopped when the test ends."""
    stacks: list[Stack] = []

    def make(name: str = "stack", **env: str) -> Stack:
        stack = Stack(tmp_path / name, env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """An event loop of its own for each in-memory test (the apps and views run on it)."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def outbox() -> Outbox:
    """What the agents and views under test sent, instead of Kafka."""
    return Outbox()
