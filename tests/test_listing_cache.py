"""Ended sagas rendered once for the listing (web/listing.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from saga_streams.saga.state import Saga
from saga_streams.web.listing import RenderedSagas

T0 = 1_800_000_000_000


def saga(saga_id: str, status: Any) -> Saga:
    return Saga(saga_id, "transfer", 1_00, "A", "B", status, (), T0, T0)


class Table:
    """The saga table as the listing reads it, counting reads and renders."""

    def __init__(self, *sagas: Saga) -> None:
        self.sagas = {s.saga_id: s for s in sagas}
        self.reads: Counter[str] = Counter()
        self.renders: Counter[str] = Counter()

    def read(self, saga_id: str) -> Saga | None:
        self.reads[saga_id] += 1
        return self.sagas.get(saga_id)

    def render(self, s: Saga) -> dict[str, Any]:
        self.renders[s.saga_id] += 1
        return {"saga_id": s.saga_id, "status": s.status}


def test_an_ended_saga_is_read_and_rendered_once_however_often_it_is_listed() -> None:
    table = Table(saga("done", "COMPLETED"), saga("undone", "ROLLED_BACK"))
    rendered = RenderedSagas()

    pages = [rendered.page(["done", "undone"], table.read, table.render) for _ in range(3)]

    assert (
        pages[0]
        == pages[2]
        == [
            {"saga_id": "done", "status": "COMPLETED"},
            {"saga_id": "undone", "status": "ROLLED_BACK"},
        ]
    )
    assert table.reads == table.renders == {"done": 1, "undone": 1}


def test_a_saga_still_moving_is_read_at_every_listing_and_shows_its_latest_state() -> None:
    table = Table(saga("moving", "STARTED"))
    rendered = RenderedSagas()

    first = rendered.page(["moving"], table.read, table.render)
    table.sagas["moving"] = saga("moving", "COMPENSATING")
    second = rendered.page(["moving"], table.read, table.render)
    table.sagas["moving"] = saga("moving", "ROLLED_BACK")
    third = rendered.page(["moving"], table.read, table.render)

    assert [p[0]["status"] for p in (first, second, third)] == [
        "STARTED",
        "COMPENSATING",
        "ROLLED_BACK",
    ]
    assert table.reads["moving"] == 3
    assert len(rendered) == 1  # kept once it ended


def test_a_listed_saga_gone_from_the_table_is_left_out() -> None:
    table = Table(saga("kept", "COMPLETED"))

    page = RenderedSagas().page(["gone", "kept"], table.read, table.render)

    assert page == [{"saga_id": "kept", "status": "COMPLETED"}]


def test_the_least_recently_listed_saga_leaves_the_cache_first() -> None:
    table = Table(*(saga(f"s{n}", "COMPLETED") for n in range(3)))
    rendered = RenderedSagas(kept=2)

    rendered.page(["s0", "s1"], table.read, table.render)
    rendered.page(["s0"], table.read, table.render)  # s1 is now the oldest listed
    rendered.page(["s2"], table.read, table.render)  # s1 out
    rendered.page(["s0", "s1"], table.read, table.render)  # s0 still in, s1 read again

    assert len(rendered) == 2
    assert table.renders == {"s0": 1, "s1": 2, "s2": 1}
