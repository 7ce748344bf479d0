"""Following every saga of a long chaos run without listing them all every second.

A run of 100,000 transfers cannot read every saga once a second, and with a short
``SAGA_RETENTION`` the orchestrator removes terminal sagas while the run goes on. So the
tracker reads, each poll, only what can still change or is new:

* the sagas in flight (``GET /sagas?status=STARTED`` and ``COMPENSATING``, every page);
* the newest pages of ``GET /sagas``, back to a little before the previous poll;
* the detail (``GET /sagas/{id}``) of each saga that left the in-flight listings without
  being seen in its terminal status, a bounded number per poll.

Each status read is checked against the one read before for that saga (invariant 6: a
saga never goes back, a terminal one never changes); a saga's first terminal status gives
its time from the last fault while it ran to its end.

At the end, :meth:`SagaTracker.reconcile` reads the listing page by page (never all of
it at once) and accounts for every accepted saga: listed, or gone, and then expired.
A saga gone after it was seen terminal is expired; one never seen terminal is expired
only as far as the orchestrator's counts of expired sagas (``GET /retention``) explain
it; anything beyond that was lost.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from saga_streams.partitions import partition_for
from saga_streams.saga.state import STATUSES, TERMINAL, epoch_seconds

__all__ = [
    "Get",
    "Reconciliation",
    "Retention",
    "SagaTracker",
    "expired_counts",
    "read_retention",
    "saga_pages",
]

Saga = dict[str, Any]
#: One GET to the orchestrator: path -> (HTTP status, decoded body); OSError if down.
Get = Callable[[str], tuple[int, Any]]

#: How far along each status is: a saga seen at one rank must never be seen at a lower one.
_RANK = {status: 2 if status in TERMINAL else rank for rank, status in enumerate(STATUSES)}
_IN_FLIGHT = tuple(s for s in STATUSES if s not in TERMINAL)
#: The largest page ``GET /sagas`` serves.
PAGE = 1000
#: Bounds of one poll: pages of in-flight sagas per status, newest pages, details.
MAX_IN_FLIGHT_PAGES = 50
MAX_NEWEST_PAGES = 5
MAX_DETAILS = 300
#: The newest pages reach this far before the previous poll began (clocks, slow polls).
OVERLAP_S = 2.0


def saga_pages(get: Get, path: str, max_pages: int) -> Iterator[list[Saga]]:
    """The pages of a ``GET /sagas`` listing, following ``next`` links, at most
    ``max_pages``; OSError if a page cannot be read."""
    next_path: str | None = path
    for _ in range(max_pages):
        if next_path is None:
            return
        status, body = get(next_path)
        if status != 200:
            raise OSError(f"GET {next_path}: HTTP {status}")
        yield list(body["sagas"])
        next_path = body["next"]
    if next_path is not None:
        raise OSError(f"GET {path}: more than {max_pages} pages")


@dataclass(frozen=True)
class Retention:
    """What ``GET /retention`` says about the sagas removed so far."""

    expired: dict[str, int]  # terminal status -> sagas expired in it
    #: partition -> (updated_at epoch ms, saga id) of the last saga settled in it: every
    #: saga of that partition that ended at or before it was settled, then removed.
    through: dict[int, tuple[int, str]] = field(default_factory=dict)
    partitions: int = 1

    def settled(self, saga_id: str, ended_ms: int) -> bool:
        """Whether a saga that ended at ``ended_ms`` is in its partition's totals."""
        through = self.through.get(partition_for(saga_id, self.partitions))
        return through is not None and (ended_ms, saga_id) <= through


def read_retention(get: Get) -> Retention | None:
    """``GET /retention``; None where the orchestrator has no such endpoint (then
    nothing expires, and a saga gone is a saga lost)."""
    status, body = get("/retention")
    if status == 404:
        return None
    if status != 200:
        raise OSError(f"GET /retention: HTTP {status}")
    through = {
        int(item["partition"]): (
            round(epoch_seconds(item["through"]["updated_at"]) * 1000),
            str(item["through"]["saga_id"]),
        )
        for item in body.get("partitions", ())
        if item.get("through")
    }
    return Retention(
        expired={str(s): int(n) for s, n in body["expired"].items() if s in TERMINAL},
        through=through,
        partitions=int(body.get("partition_count", 1)),
    )


def expired_counts(get: Get) -> dict[str, int] | None:
    """Expired sagas by status (``GET /retention``); None without the endpoint."""
    retention = read_retention(get)
    return None if retention is None else retention.expired


@dataclass
class Reconciliation:
    """Where every accepted saga is at the end of the run."""

    listed: dict[str, str] = field(default_factory=dict)  # listed saga id -> its status
    #: Accepted sagas no longer listed, by the last status seen ("unseen": never seen).
    gone: Counter[str] = field(default_factory=Counter)
    #: Sagas whose POST got no 202 (so their saga may or may not exist), not listed.
    gone_maybe: int = 0
    expired: dict[str, int] | None = None  # GET /retention, by status
    #: Accepted sagas gone after they were seen ending that their partition did not
    #: settle: removed without being counted.
    unsettled: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def gone_total(self) -> int:
        return sum(self.gone.values())

    @property
    def expired_total(self) -> int:
        return sum((self.expired or {}).values())


class SagaTracker:
    """The latest status read of every saga, and what the reads say about the run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, str] = {}  # saga id -> latest status read
        self.violations: list[str] = []
        self.fault_times: list[float] = []  # epoch seconds, ascending
        self.longest_after_fault_s = 0.0
        self.longest_saga: str | None = None
        self.in_flight: set[str] = set()  # listed in flight at the last poll
        self.to_fetch: dict[str, None] = {}  # left the in-flight listings unseen: ordered
        self.polls = 0
        self.details = 0  # GET /sagas/{id} made
        self.errors: Counter[str] = Counter()  # why steps of the sagas seen ending failed
        self.ended_ms: dict[str, int] = {}  # saga id -> updated_at of its terminal status

    # -- reads ------------------------------------------------------------------------
    def fault_at(self, epoch_s: float) -> None:
        with self.lock:
            bisect.insort(self.fault_times, epoch_s)

    def observe(self, sagas: Iterable[Saga]) -> None:
        with self.lock:
            for saga in sagas:
                self._observe(saga)

    def _observe(self, saga: Saga) -> None:
        saga_id, now = saga["saga_id"], saga["status"]
        before = self.status.get(saga_id)
        if before is not None and (
            _RANK[now] < _RANK[before] or (before in TERMINAL and now != before)
        ):
            self.violations.append(f"monotonic state: saga {saga_id} went {before} -> {now}")
        self.status[saga_id] = now
        if now in TERMINAL and before not in TERMINAL:
            ended = epoch_seconds(saga["updated_at"])
            self.ended_ms[saga_id] = round(ended * 1000)
            self._ended(saga_id, epoch_seconds(saga["created_at"]), ended)
            self.errors.update(
                step["error"].split(":")[0] for step in saga.get("steps", ()) if step.get("error")
            )

    def _ended(self, saga_id: str, created: float, ended: float) -> None:
        """From the last fault while the saga ran to its end, if one hit it."""
        last = bisect.bisect_right(self.fault_times, ended)
        if last and self.fault_times[last - 1] >= created:
            took = ended - self.fault_times[last - 1]
            if took > self.longest_after_fault_s:
                self.longest_after_fault_s, self.longest_saga = took, saga_id

    # -- one poll ---------------------------------------------------------------------
    def poll(self, get: Get, since_s: float) -> None:
        """Read what may have changed since ``since_s`` (epoch seconds) and check it;
        OSError if the orchestrator cannot be read (the next poll tries again)."""
        in_flight: list[Saga] = []
        for status in _IN_FLIGHT:
            path = f"/sagas?status={status}&limit={PAGE}"
            for page in saga_pages(get, path, MAX_IN_FLIGHT_PAGES):
                in_flight += page
        newest = self._newest(get, since_s - OVERLAP_S)
        self.observe([*in_flight, *newest])
        listed = {saga["saga_id"] for saga in in_flight}
        with self.lock:
            self.polls += 1
            for saga_id in self.in_flight - listed:
                if self.status.get(saga_id) not in TERMINAL:
                    self.to_fetch[saga_id] = None
            self.in_flight = listed
        self.fetch_details(get)

    def _newest(self, get: Get, back_to_s: float) -> list[Saga]:
        sagas: list[Saga] = []
        pages = saga_pages(get, f"/sagas?limit={PAGE}", MAX_NEWEST_PAGES + 1)
        for _, page in zip(range(MAX_NEWEST_PAGES), pages, strict=False):
            sagas += page
            if not page or epoch_seconds(page[-1]["created_at"]) < back_to_s:
                break
        return sagas

    def fetch_details(self, get: Get, limit: int = MAX_DETAILS) -> None:
        """Read the sagas that left the in-flight listings unseen, ``limit`` at most."""
        with self.lock:
            batch = list(self.to_fetch)[:limit]
        for saga_id in batch:
            status, body = get(f"/sagas/{quote(saga_id)}")
            if status == 200:
                self.observe([body])
            elif status != 404:  # 404: gone already; the reconciliation accounts for it
                raise OSError(f"GET /sagas/{saga_id}: HTTP {status}")
            with self.lock:
                self.details += 1
                self.to_fetch.pop(saga_id, None)

    # -- the end ------------------------------------------------------------------------
    def reconcile(
        self,
        get: Get,
        accepted: Iterable[str],
        maybe: Iterable[str] = (),
        unknown_outcomes: int = 0,
        max_pages: int = 1000,
    ) -> Reconciliation:
        """Account for every accepted saga once the run is quiet: read the listing page
        by page (each status checked), then the expired counts. ``maybe``: saga ids of
        POSTs answered 503; ``unknown_outcomes``: POSTs with no answer at all (either
        may have run, and expired)."""
        result = Reconciliation()
        for page in saga_pages(get, f"/sagas?limit={PAGE}", max_pages):
            self.observe(page)
            result.listed.update((saga["saga_id"], saga["status"]) for saga in page)
        gone = [saga_id for saga_id in accepted if saga_id not in result.listed]
        retention = read_retention(get)
        with self.lock:
            result.gone = Counter(self.status.get(saga_id, "unseen") for saga_id in gone)
            if retention is not None:
                result.unsettled = [
                    saga_id
                    for saga_id in gone
                    if saga_id in self.ended_ms
                    and not retention.settled(saga_id, self.ended_ms[saga_id])
                ]
        result.gone_maybe = sum(1 for saga_id in maybe if saga_id not in result.listed)
        result.expired = None if retention is None else retention.expired
        result.violations = _unexplained(result, unknown_outcomes)
        in_flight = [s for s, status in result.listed.items() if status not in TERMINAL]
        if in_flight:
            result.violations.append(
                f"termination: {len(in_flight)} sagas still in flight, e.g. {in_flight[:3]}"
            )
        return result


def _unexplained(result: Reconciliation, unknown_outcomes: int) -> list[str]:
    """Whether the expired counts explain every accepted saga no longer listed."""
    gone, expired = result.gone, result.expired
    if expired is None:
        if not gone:
            return []
        return [
            f"lost: {result.gone_total} accepted sagas are no longer listed and the "
            f"orchestrator counts no expired sagas (GET /retention): {dict(gone)}"
        ]
    violations = []
    if result.unsettled:
        violations.append(
            f"lost: {len(result.unsettled)} accepted sagas are gone though they ended after "
            f"their partition's last settled saga (GET /retention), e.g. {result.unsettled[:3]}"
        )
    violations += [
        f"lost: {gone[status]} accepted sagas last seen {status} are gone, but only "
        f"{expired.get(status, 0)} {status} sagas expired"
        for status in sorted(TERMINAL)
        if gone[status] > expired.get(status, 0)
    ]
    if result.gone_total > result.expired_total:
        violations.append(
            f"lost: {result.gone_total} accepted sagas are gone ({dict(gone)}), "
            f"{result.expired_total} sagas expired"
        )
    most = result.gone_total + result.gone_maybe + unknown_outcomes
    if result.expired_total > most:
        violations.append(
            f"retention: {result.expired_total} sagas expired, more than the "
            f"{most} sagas of this run that could have"
        )
    return violations
