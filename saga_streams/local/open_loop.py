"""The bench's open-loop mode (``python -m saga_streams bench --offered-rate R``).

A closed-loop load (``bench.py``) sends a transfer only when one of its own has ended, so
it can never offer more than the system completes: it measures capacity, and hides what
happens beyond it. Clients on the Internet do not wait for each other: here ``POST
/transfer`` goes out at a fixed rate whatever the answers and the sagas do (bounded by a
count and a time), each request on its own task, on schedule (a late send is not
skipped, so a slow server cannot lower the offered load).

Counted: the answers (202, 429, anything else) and the Retry-After of each 429; for every
accepted saga, the time from its 202 to its end, read off the orchestrator's changelog as
it happens (the saga's own ``updated_at``, same machine, same clock), and the sagas that
ended COMPLETED within the sending window, per second. The accepted sagas are waited for
after the window (bounded); those still running then are counted, not guessed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from saga_streams.config import load_settings
from saga_streams.local.bench import _bench_cluster, _parties, _percentile, _pids, cpu_seconds
from saga_streams.local.cluster import LocalCluster
from saga_streams.saga.state import TERMINAL

__all__ = ["NO_CAP", "OpenLoopResult", "run_open_loop"]

#: MAX_IN_FLIGHT for a run "without the cap": the most the setting allows.
NO_CAP = 1_000_000
#: The changelog of the orchestrator's saga table: every write of every saga.
CHANGELOG = "saga-orchestrator-sagas-changelog"


@dataclass
class OpenLoopResult:
    machine: str
    offered_rate: float  # POSTs per second asked for
    seconds: float  # the sending window
    max_in_flight: int  # the orchestrator's MAX_IN_FLIGHT (NO_CAP: none)
    accounts: int
    sent: int = 0
    sent_per_s: float = 0.0  # the rate reached
    accepted: int = 0  # 202
    refused: int = 0  # 429
    other_answers: dict[str, int] = field(default_factory=dict)  # status (or error) -> count
    retry_after_s: dict[str, float] = field(default_factory=dict)  # p50, max of the 429s
    completed_in_window: int = 0
    completed_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # 202 -> end, accepted ones
    statuses: dict[str, int] = field(default_factory=dict)  # of the accepted sagas
    not_ended: int = 0  # accepted and still running when the wait ended
    #: process -> CPU seconds per second of the run (sending window and wait): a busy
    #: core is 1.0; the machine's whole is its core count.
    cpu_busy: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        lat = self.latency_ms
        cap = "no cap" if self.max_in_flight >= NO_CAP else f"MAX_IN_FLIGHT {self.max_in_flight}"
        retry = self.retry_after_s
        return "\n".join(
            [
                f"open loop ({self.offered_rate:g}/s offered for {self.seconds:g}s, {cap}, "
                f"{self.accounts or 1} account(s) per service, {self.machine})",
                f"  sent {self.sent} ({self.sent_per_s:.1f}/s): {self.accepted} accepted (202), "
                f"{self.refused} refused (429), other: {self.other_answers or 'none'}",
                f"  Retry-After: p50 {retry.get('p50', 0):g} s, max {retry.get('max', 0):g} s",
                f"  sagas completed: {self.completed_per_s:.1f}/s "
                f"({self.completed_in_window} in the window); {self.not_ended} not ended",
                f"  accepted, 202 to end: p50 {lat.get('p50', 0):.0f} ms, "
                f"p95 {lat.get('p95', 0):.0f} ms, p99 {lat.get('p99', 0):.0f} ms, "
                f"max {lat.get('max', 0):.0f} ms",
                "  CPU busy (cores): "
                + ", ".join(f"{p} {busy:.2f}" for p, busy in self.cpu_busy.items()),
            ]
        )


class _OpenLoad:
    """POSTs at ``rate`` for ``seconds`` (at most ``count``), and the sagas' ends."""

    def __init__(self, cluster: LocalCluster, rate: float, seconds: float, count: int) -> None:
        self.url = cluster.url("orchestrator", "/transfer")
        self.headers = cluster.authorization()
        self.rate = rate
        self.seconds = seconds
        self.count = count
        self.sent = 0
        self.answers: Counter[str] = Counter()
        self.retry_after: list[float] = []
        self.accepted_at: dict[str, float] = {}  # saga id -> epoch s of its 202
        #: saga id -> (terminal status, epoch s it ended), whether or not its 202 has
        #: arrived yet (the end can be read before the answer).
        self.ended: dict[str, tuple[str, float]] = {}
        self.sending_done = False
        access = load_settings(cluster.worker_env()).kafka
        self.changelog = AIOKafkaConsumer(
            CHANGELOG, group_id=None, auto_offset_reset="latest", **access.client_kwargs()
        )

    async def run(self, accounts: int, drain_s: float) -> tuple[float, float]:
        """Send, then wait (at most ``drain_s``) for the accepted sagas to end; return the
        sending window (epoch seconds)."""
        await self.changelog.start()
        await self.changelog.seek_to_end()
        began = time.time()
        try:
            watcher = asyncio.create_task(self.watch(drain_s))
            connector = aiohttp.TCPConnector(limit=0)  # open loop: no client-side queue
            async with aiohttp.ClientSession(connector=connector) as session:
                await self.send_all(session, accounts)
            self.sending_done = True
            await watcher
        finally:
            await self.changelog.stop()
        return began, began + self.seconds

    async def send_all(self, session: aiohttp.ClientSession, accounts: int) -> None:
        start = time.monotonic()
        posts: set[asyncio.Task[None]] = set()
        for n in range(self.count):
            due = start + n / self.rate
            if due - start >= self.seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            payer, payee = _parties(accounts)
            body = {"amount": 0.01, "from_account": payer, "to_account": payee}
            task = asyncio.create_task(self.post(session, body))
            posts.add(task)
            task.add_done_callback(posts.discard)
            self.sent += 1
            if n % max(1, round(self.rate)) == 0:
                self.show_progress()
        await asyncio.gather(*posts)
        print(file=sys.stderr)

    async def post(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        try:
            async with session.post(self.url, json=body, headers=self.headers) as response:
                answer = await response.json(content_type=None)
                retry_after = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.answers[type(exc).__name__] += 1
            return
        self.answers[str(response.status)] += 1
        if response.status == 202:
            self.accepted_at[answer["saga_id"]] = time.time()
        elif response.status == 429 and retry_after.isdigit():
            self.retry_after.append(float(retry_after))

    def show_progress(self) -> None:
        accepted, refused = self.answers["202"], self.answers["429"]
        line = f"\r  sent {self.sent}: {accepted} accepted, {refused} refused, "
        print(f"{line}{len(self.ended)} ended ", end="", file=sys.stderr)

    async def watch(self, drain_s: float) -> None:
        """Read the changelog until sending is done and every accepted saga has ended, or
        ``drain_s`` after the window."""
        deadline = time.monotonic() + self.seconds + drain_s
        while time.monotonic() < deadline:
            if self.sending_done and self.accepted_at.keys() <= self.ended.keys():
                return
            batch = await self.changelog.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    saga = json.loads(message.value or b"null")
                    if saga and saga["status"] in TERMINAL:
                        self.ended[saga["saga_id"]] = (saga["status"], saga["updated_at"] / 1000)


async def _offer(
    cluster: LocalCluster, rate: float, seconds: float, count: int, accounts: int, drain_s: float
) -> tuple[_OpenLoad, float, float]:
    """The load and its sending window. Made here: its Kafka client belongs to the
    running event loop."""
    load = _OpenLoad(cluster, rate, seconds, count)
    began, ended = await load.run(accounts, drain_s)
    return load, began, ended


def _figures(result: OpenLoopResult, load: _OpenLoad, began: float, ended: float) -> None:
    result.sent = load.sent
    result.sent_per_s = load.sent / result.seconds
    result.accepted = load.answers.pop("202", 0)
    result.refused = load.answers.pop("429", 0)
    result.other_answers = dict(load.answers)
    if load.retry_after:
        result.retry_after_s = {
            "p50": _percentile(load.retry_after, 0.5),
            "max": max(load.retry_after),
        }
    mine = {i: load.ended[i] for i in load.accepted_at if i in load.ended}
    result.not_ended = len(load.accepted_at) - len(mine)
    result.statuses = dict(Counter(status for status, _ in mine.values()))
    in_window = [i for i, (s, at) in mine.items() if s == "COMPLETED" and began <= at <= ended]
    result.completed_in_window = len(in_window)
    result.completed_per_s = len(in_window) / result.seconds
    latencies = [(at - load.accepted_at[i]) * 1000 for i, (_, at) in mine.items()]
    result.latency_ms = {
        "p50": _percentile(latencies, 0.50),
        "p95": _percentile(latencies, 0.95),
        "p99": _percentile(latencies, 0.99),
        "max": max(latencies, default=0.0),
    }


def run_open_loop(
    root: Path,
    rate: float,
    seconds: float,
    max_in_flight: int,
    accounts: int = 0,
    count: int | None = None,
) -> OpenLoopResult:
    """One open-loop run on a cluster of its own whose orchestrator has ``max_in_flight``
    (``NO_CAP``: none); at most ``count`` POSTs (default: ``rate`` x ``seconds``)."""
    result = OpenLoopResult(
        machine=f"{os.cpu_count()} cores, {sys.platform}",
        offered_rate=rate,
        seconds=seconds,
        max_in_flight=max_in_flight,
        accounts=accounts,
    )
    cluster = _bench_cluster(root, accounts, {"MAX_IN_FLIGHT": str(max_in_flight)})
    try:
        cluster.start()
        pids = _pids(cluster)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        clock = time.monotonic()
        # A backlog left by a run without the cap drains at the capacity: give it time.
        drain_s = max(60.0, 4 * seconds)
        load, began, ended = asyncio.run(
            _offer(cluster, rate, seconds, count or round(rate * seconds), accounts, drain_s)
        )
        took = time.monotonic() - clock
        result.cpu_busy = {
            name: (cpu_seconds(pid) - cpu_before[name]) / took for name, pid in pids.items()
        }
    finally:
        cluster.close()
    _figures(result, load, began, ended)
    return result
