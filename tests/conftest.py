from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Stack


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
