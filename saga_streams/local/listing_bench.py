"""``python -m saga_streams listing-bench``: what ``GET /sagas`` costs with many sagas held.

On a broker and workers of its own, in one run:

1. **the fill**: ``--sagas`` requests produced straight onto ``transfer-requests`` with
   aiokafka, each in the partition the orchestrator handles it in. Most are requests the
   rules refuse (no such workflow, no amount), which become FAILED sagas without a step,
   cheaply; ``--valid`` of them, spread among the rest, are real transfers of one cent
   that run at the seed's failure rates (COMPLETED, FAILED, ROLLED_BACK). It waits until
   ``GET /sagas`` counts them all and none is still in flight.
2. **the listings**, over real HTTP, ``--repetitions`` times each, one at a time: the
   first page, a page of one status, a page deep in (by cursor, half-way down), and the
   dashboard's counts (one ``?status=S&limit=1`` per status); then every page followed
   once, as a client reading the whole list does.
3. **in process**, for comparison: the same first page as the listing found it before the
   index (every stored saga filtered and sorted) against the index's page, on ``--sagas``
   stored sagas made up in memory, and the memory the index takes for them.

It prints the median and p99 of each and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from saga_streams.app import TRANSFER_REQUEST_TOPIC
from saga_streams.config import load_settings
from saga_streams.local.cluster import LocalCluster
from saga_streams.messages import TransferRequested, encode
from saga_streams.partitions import partition_for
from saga_streams.saga.state import STATUSES, TERMINAL, Saga, StepState
from saga_streams.tables.saga_index import SagaIndex

__all__ = ["ListingResult", "main", "run_listing_bench"]

PAGE = 50
#: Requests sent before the producer waits for their acknowledgements.
_CHUNK = 5_000


@dataclass
class ListingResult:
    machine: str
    sagas: int
    valid: int
    repetitions: int
    fill_s: float = 0.0  # from the first request produced to every saga ended
    statuses: dict[str, int] = field(default_factory=dict)
    #: query -> {"path", "median_ms", "p99_ms", "max_ms"}
    http: dict[str, dict[str, Any]] = field(default_factory=dict)
    every_page_s: float = 0.0  # following every page of PAGE sagas once
    pages: int = 0
    #: in process: {"scan_ms", "index_ms"} medians of one first page; the index's memory
    in_process: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"listing bench ({self.sagas:,} sagas, {self.valid:,} of them run, "
            f"{self.repetitions} repetitions, {self.machine})",
            f"  fill: {self.fill_s:.0f} s; statuses: {self.statuses}",
        ]
        for name, figures in self.http.items():
            lines.append(
                f"  {name:<12} median {figures['median_ms']:7.2f} ms   p99 "
                f"{figures['p99_ms']:7.2f} ms   max {figures['max_ms']:7.2f} ms   "
                f"{figures['path']}"
            )
        if self.pages:
            lines.append(
                f"  every page:  {self.every_page_s:.1f} s for {self.pages:,} pages of {PAGE}"
            )
        p = self.in_process
        lines.append(
            f"  in process, first page: scan {p.get('scan_ms', 0):.1f} ms, index "
            f"{p.get('index_ms', 0):.3f} ms; index memory {p.get('index_mb', 0):.1f} MB, "
            f"rebuilt in {p.get('rebuild_ms', 0):.0f} ms"
        )
        return "\n".join(lines)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _figures(path: str, samples: list[float]) -> dict[str, Any]:
    return {
        "path": path,
        "median_ms": statistics.median(samples),
        "p99_ms": _percentile(samples, 0.99),
        "max_ms": max(samples),
    }


# -- the fill ---------------------------------------------------------------------------
def _request(number: int, valid: bool, now: int) -> TransferRequested:
    saga_id = f"lb{number:08d}"
    if valid:
        return TransferRequested(saga_id, "transfer", 1, now)
    if number % 2:
        return TransferRequested(saga_id, "no-such-workflow", 1, now)
    return TransferRequested(saga_id, "transfer", 0, now)  # no amount: refused too


async def _produce(cluster: LocalCluster, sagas: int, valid: int) -> None:
    """Every request, in the partition of its saga (no stray to forward)."""
    settings = load_settings(cluster.worker_env())
    producer = AIOKafkaProducer(acks="all", linger_ms=20, **settings.kafka.client_kwargs())
    await producer.start()
    every = sagas // valid if valid else 0  # one valid request in every `every`
    try:
        pending: list[Awaitable[Any]] = []
        for number in range(sagas):
            request = _request(number, every > 0 and number % every == 0, int(time.time() * 1000))
            pending.append(
                await producer.send(
                    TRANSFER_REQUEST_TOPIC,
                    encode(request),
                    key=request.saga_id.encode(),
                    partition=partition_for(request.saga_id, settings.partitions),
                )
            )
            if len(pending) >= _CHUNK:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _counts(session: aiohttp.ClientSession, base: str) -> dict[str, int]:
    """How many sagas are in each status, as the dashboard asks."""
    counts = {}
    for status in STATUSES:
        async with session.get(f"{base}/sagas?status={status}&limit=1") as response:
            body = await response.json() if response.status == 200 else {"count": -1}
        counts[status] = body["count"]
    return counts


async def _wait_filled(base: str, sagas: int, timeout: float) -> dict[str, int]:
    """The counts once every saga is held and ended; raises after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            counts = await _counts(session, base)
            ended = sum(n for status, n in counts.items() if status in TERMINAL)
            print(f"\r  filling: {ended:,} of {sagas:,} ended ", end="", file=sys.stderr)
            if ended == sagas and sum(counts.values()) == sagas:
                print(file=sys.stderr)
                return counts
            await asyncio.sleep(2.0)
    raise TimeoutError(f"after {timeout:g}s the orchestrator counts {counts}, not {sagas}")


# -- the listings -----------------------------------------------------------------------
async def _timed(session: aiohttp.ClientSession, url: str) -> tuple[float, Any]:
    began = time.perf_counter()
    async with session.get(url) as response:
        body = await response.json()
        elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {url}: {response.status} {body}")
    return elapsed, body


async def _cursor_half_way(session: aiohttp.ClientSession, base: str, sagas: int) -> str:
    """The ``next`` link half-way down the list, found a thousand sagas at a time."""
    path = "/sagas?limit=1000"
    for _ in range(max(1, sagas // 2000)):
        _, body = await _timed(session, base + path)
        path = body["next"] or path
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    return f"/sagas?cursor={query.get('cursor', '')}&limit={PAGE}"


async def _every_page(session: aiohttp.ClientSession, base: str) -> tuple[float, int]:
    began = time.perf_counter()
    path: str | None = f"/sagas?limit={PAGE}"
    pages = 0
    while path is not None:
        _, body = await _timed(session, base + path)
        path = body["next"]
        pages += 1
    return time.perf_counter() - began, pages


async def _listings(
    base: str, sagas: int, repetitions: int, every_page: bool, result: ListingResult
) -> None:
    async with aiohttp.ClientSession() as session:
        queries = {
            "first page": f"/sagas?limit={PAGE}",
            "COMPLETED": f"/sagas?status=COMPLETED&limit={PAGE}",
            "deep cursor": await _cursor_half_way(session, base, sagas),
            "stuck": f"/sagas?status=STARTED&older_than=60&limit={PAGE}",
        }
        for name, path in queries.items():
            samples = [(await _timed(session, base + path))[0] for _ in range(repetitions)]
            result.http[name] = _figures(path, samples)
        rounds = []
        for _ in range(repetitions):
            began = time.perf_counter()
            await _counts(session, base)
            rounds.append((time.perf_counter() - began) * 1000)
        result.http["counts"] = _figures(f"{len(STATUSES)} x /sagas?status=S&limit=1", rounds)
        if every_page:
            result.every_page_s, result.pages = await _every_page(session, base)


# -- in process -------------------------------------------------------------------------
def _stored(sagas: int) -> list[dict[str, Any]]:
    """Sagas as the table stores them, most FAILED, created a few per millisecond."""
    return [
        Saga(
            saga_id=f"lb{n:08d}",
            workflow="transfer",
            amount_cents=1,
            from_account="A",
            to_account="B",
            status="COMPLETED" if n % 33 == 0 else "FAILED",
            steps=(StepState(), StepState()),
            created_at=1_700_000_000_000 + n // 3,
            updated_at=1_700_000_000_000 + n // 3,
        ).to_dict()
        for n in range(sagas)
    ]


def _scan_page(stored: list[dict[str, Any]], limit: int) -> list[str]:
    """The first page as the listing found it before the index: filter every stored
    saga, then the ``limit`` newest (the table's read and decoding not counted)."""
    matching = [(data["created_at"], data["saga_id"], data) for data in stored]
    page = heapq.nlargest(limit, matching, key=lambda m: (m[0], m[1]))
    return [saga_id for _, saga_id, _ in page]


def _median_ms(run: Callable[[], object], repetitions: int) -> float:
    samples = []
    for _ in range(repetitions):
        began = time.perf_counter()
        run()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def in_process(sagas: int, repetitions: int) -> dict[str, float]:
    stored = _stored(sagas)
    tracemalloc.start()
    index = SagaIndex()
    index.rebuild(stored)
    index_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    began = time.perf_counter()
    SagaIndex().rebuild(stored)
    rebuild_ms = (time.perf_counter() - began) * 1000
    scan = _median_ms(lambda: _scan_page(stored, PAGE), max(3, repetitions // 20))
    indexed = _median_ms(lambda: index.page(None, None, PAGE, None), repetitions)
    assert _scan_page(stored, PAGE) == index.page(None, None, PAGE, None)[0]
    return {"scan_ms": scan, "index_ms": indexed, "index_mb": index_mb, "rebuild_ms": rebuild_ms}


# -- the run ----------------------------------------------------------------------------
def run_listing_bench(
    root: Path, sagas: int, valid: int, repetitions: int, every_page: bool = True
) -> ListingResult:
    result = ListingResult(f"{os.cpu_count()} cores, {sys.platform}", sagas, valid, repetitions)
    cluster = LocalCluster(root, worker_args=("--loglevel", "warn"))
    try:
        cluster.start()
        base = cluster.url("orchestrator")
        began = time.monotonic()
        asyncio.run(_produce(cluster, sagas, valid))
        print(f"  produced {sagas:,} requests in {time.monotonic() - began:.0f} s", file=sys.stderr)
        result.statuses = asyncio.run(_wait_filled(base, sagas, timeout=max(300.0, sagas / 50)))
        result.fill_s = time.monotonic() - began
        asyncio.run(_listings(base, sagas, repetitions, every_page, result))
    finally:
        cluster.close()
    result.statuses = {status: n for status, n in result.statuses.items() if n}
    result.in_process = in_process(sagas, repetitions)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m saga_streams listing-bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sagas", type=int, default=100_000, help="sagas in the table")
    parser.add_argument("--valid", type=int, default=3_000, help="of them, transfers that run")
    parser.add_argument("--repetitions", type=int, default=200, help="of each query")
    parser.add_argument(
        "--every-page",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also follow every page once (--no-every-page: not, for a slow listing)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/listing.json"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sagas < 1 or not 0 <= args.valid <= args.sagas or args.repetitions < 1:
        parser.error("--sagas >= 1, 0 <= --valid <= --sagas, --repetitions >= 1")
    root = Path(tempfile.mkdtemp(prefix="saga-listing-bench-"))
    try:
        result = run_listing_bench(root, args.sagas, args.valid, args.repetitions, args.every_page)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(result.render())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
