"""GET /sagas is answered from the orchestrator's in-memory index: killed with SIGKILL and
started again, the orchestrator rebuilds it from the recovered saga table and lists the
same sagas, in the same order, with the same counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from saga_streams.http_client import http_json
from saga_streams.messages import TransferRequested, encode
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

#: Requests the rules refuse (no such workflow, no amount): each becomes a FAILED saga
#: without a step, which fills the table quickly.
REFUSED = 240
#: Transfers that run, at the seed's failure rates: COMPLETED, FAILED and ROLLED_BACK.
RUN = 12
#: The listings compared before and after the restart; small pages, so that the cursor
#: is followed many times.
LISTINGS = [
    "/sagas?limit=17",
    "/sagas?limit=9&status=FAILED",
    "/sagas?limit=5&status=COMPLETED",
    "/sagas?limit=11&older_than=0",
    "/sagas?limit=3&status=ROLLED_BACK",
]


def refused_requests(count: int) -> list[str]:
    """``key<TAB>value`` lines for ``kcat -P -K '\\t'``."""
    lines = []
    for n in range(count):
        bad = {"workflow": "no-such-workflow"} if n % 2 else {"amount_cents": 0}
        fields: dict[str, Any] = {"workflow": "transfer", "amount_cents": 100, **bad}
        request = TransferRequested(
            f"refused{n:04d}", requested_at=int(time.time() * 1000), **fields
        )
        lines.append(f"{request.saga_id}\t{encode(request).decode()}")
    return lines


def get(stack: Stack, path: str) -> tuple[int, Any]:
    return http_json("GET", stack.url("orchestrator", path), headers=stack.authorization())


def every_page(stack: Stack, first: str) -> list[tuple[list[tuple[str, str]], int]]:
    """Each page of a listing, following ``next``: its (saga id, status) list and count."""
    pages = []
    path: str | None = first
    while path is not None:
        status, body = get(stack, path)
        assert status == 200, (path, body)
        pages.append(([(s["saga_id"], s["status"]) for s in body["sagas"]], body["count"]))
        path = body["next"]
        assert len(pages) < 200, f"{first}: the cursor does not end"
    return pages


def wait_for_count(stack: Stack, expected: int, timeout: float) -> int:
    """GET /sagas's count once it reaches ``expected`` (or the last one seen)."""
    count = -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and count != expected:
        status, body = get(stack, "/sagas?limit=1")
        count = body["count"] if status == 200 else -1
        time.sleep(0.5)
    return count


def test_listing_pages_are_the_same_after_the_orchestrator_is_killed_and_restarted(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    stack.start()
    stack.kcat_produce("transfer-requests", refused_requests(REFUSED), "-K", "\t")
    ran = []
    for n in range(RUN):
        status, body = stack.transfer(n + 1)
        assert status == 202, body
        ran.append(body["saga_id"])
    stack.wait_terminal(ran, timeout=60)
    assert wait_for_count(stack, REFUSED + RUN, timeout=30) == REFUSED + RUN

    before = {path: every_page(stack, path) for path in LISTINGS}
    # Several statuses and many pages each: the comparison below means something.
    assert len(before["/sagas?limit=17"]) == -(-(REFUSED + RUN) // 17)
    assert before["/sagas?limit=9&status=FAILED"][0][1] >= REFUSED
    assert before["/sagas?limit=5&status=COMPLETED"][0][1] > 0

    stack.restart("orchestrator", kill=True)
    # Ready means recovered; the first listing may still meet a rebalance (503).
    assert wait_for_count(stack, REFUSED + RUN, timeout=60) == REFUSED + RUN
    after = {path: every_page(stack, path) for path in LISTINGS}
    for path in LISTINGS:
        assert after[path] == before[path], path
