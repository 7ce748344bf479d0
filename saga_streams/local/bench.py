"""``python -m saga_streams bench``: completed sagas per second, latency, CPU, and the ceiling.

On a broker and workers of its own (failure injection off), in one run:

1. **the ceiling**: a raw aiokafka ping-pong over four topics, the fewest messages one
   two-step saga needs (command, reply, command, reply), with the same number of messages
   in flight as the saga run keeps, measured for the same time;
2. **the sagas**: transfers sent for ``--seconds``, through HTTP (``POST /transfer``) or
   straight onto the request topic (``--mode topic``, to leave HTTP's cost out), either
   as fast as ``--concurrency`` senders go or paced at ``--rate``; then every saga is
   waited for.

It reports completions (not starts) per second within the sending window, latency from
request to terminal status (p50, p95, p99, max, from the sagas' own server-side
timestamps), CPU seconds per saga of each process, and the saga rate as a share of the
ceiling; and writes it all as JSON.

``--offered-rate R`` runs it **open loop** instead (``open_loop.py``): ``POST /transfer``
at a fixed R per second whatever the sagas do, answers counted (202, 429), latency of the
accepted sagas from their 202 to their end. ``--backpressure DIR`` runs the set of
BENCHMARKS.md, "Backpressure": the closed-loop capacity, then open loop at twice it, with
and without MAX_IN_FLIGHT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from saga_streams.app import TRANSFER_REQUEST_TOPIC, ensure_topics
from saga_streams.config import DEFAULT_MAX_IN_FLIGHT, load_settings
from saga_streams.local.cluster import LocalCluster
from saga_streams.local.ending import wait_until_ended
from saga_streams.messages import TransferRequested, encode
from saga_streams.saga.state import TERMINAL, epoch_seconds

__all__ = ["BenchResult", "cpu_seconds", "main", "run_bench"]

_TICKS = os.sysconf("SC_CLK_TCK")
_HOPS = 4
#: How long the sagas in flight when the sending window closes may take to finish.
_DRAIN_S = 60.0


@dataclass
class BenchResult:
    machine: str
    mode: str
    seconds: float
    concurrency: int
    rate_target: float
    accounts: int = 0  # per service; 0: the seed's A and B only
    sent: int = 0
    completed_in_window: int = 0
    completed_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_s_per_saga: dict[str, float] = field(default_factory=dict)
    ceiling_round_trips_per_s: float = 0.0
    ratio_to_ceiling: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        lat = self.latency_ms
        cpu = ", ".join(f"{p} {s * 1000:.1f} ms" for p, s in self.cpu_s_per_saga.items())
        return "\n".join(
            [
                f"bench ({self.mode}, {self.seconds:g}s, concurrency {self.concurrency}"
                + (f", rate {self.rate_target:g}/s" if self.rate_target else "")
                + f", {self.accounts or 1} account(s) per service"
                + f", {self.machine})",
                f"  sagas completed: {self.completed_per_s:.1f}/s "
                f"({self.completed_in_window} in the window, {self.sent} sent)",
                f"  latency: p50 {lat.get('p50', 0):.0f} ms, p95 {lat.get('p95', 0):.0f} ms, "
                f"p99 {lat.get('p99', 0):.0f} ms, max {lat.get('max', 0):.0f} ms",
                f"  CPU per saga: {cpu}",
                f"  ceiling (raw {_HOPS}-hop aiokafka ping-pong): "
                f"{self.ceiling_round_trips_per_s:.1f} round trips/s",
                f"  sagas / ceiling: {self.ratio_to_ceiling:.0%}",
            ]
        )


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user and system) ``pid`` has used so far; 0 for none or a gone one."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _ceiling(bootstrap: str, seconds: float, in_flight: int) -> float:
    """Round trips per second through four topics, ``in_flight`` messages at a time."""
    run = uuid.uuid4().hex[:8]
    topics = [f"bench-{run}-hop{n}" for n in range(_HOPS)]
    await ensure_topics(bootstrap, topics, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    consumers = [
        AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        for topic in topics
    ]
    for consumer in consumers:
        await consumer.start()
    done = 0
    stop = time.monotonic() + seconds

    async def relay(source: AIOKafkaConsumer, target: str | None) -> None:
        nonlocal done
        while time.monotonic() < stop:
            batch = await source.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    if target is None:  # back at the start: one round trip done
                        done += 1
                        if time.monotonic() < stop:
                            await producer.send(topics[0], message.value)
                    else:
                        await producer.send(target, message.value)

    try:
        for _ in range(in_flight):
            await producer.send(topics[0], b"ping")
        began = time.monotonic()
        await asyncio.gather(
            *(relay(consumers[n], topics[n + 1] if n + 1 < _HOPS else None) for n in range(_HOPS))
        )
        return done / (time.monotonic() - began)
    finally:
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()


def _parties(accounts: int) -> tuple[str, str]:
    """A random payer of service A and payee of service B (the seed's A and B if none)."""
    if not accounts:
        return "A", "B"
    return f"A-{random.randint(1, accounts)}", f"B-{random.randint(1, accounts)}"


class _SagaLoad:
    """Transfers sent for ``seconds``, at most ``concurrency`` sagas in flight (and at
    ``rate`` if given), by HTTP (``POST /transfer``) or straight onto the request topic.

    A saga's slot is freed when the orchestrator's changelog shows it terminal: reading
    the changelog follows completions as they happen, without polling the HTTP API.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        seconds: float,
        concurrency: int,
        rate: float,
        accounts: int,
    ) -> None:
        self.url = cluster.url("orchestrator", "/transfer")
        self.seconds = seconds
        self.concurrency = concurrency
        self.rate = rate
        self.accounts = accounts
        self.sent = 0
        #: Sagas sent and not yet seen terminal in the changelog.
        self.in_flight: set[str] = set()
        self.slots = asyncio.Semaphore(concurrency)
        self.next_slot = time.monotonic()
        self.stop = time.monotonic() + seconds
        access = load_settings(cluster.worker_env()).kafka
        self.producer = AIOKafkaProducer(acks="all", **access.client_kwargs())
        self.changelog = AIOKafkaConsumer(
            "saga-orchestrator-sagas-changelog",
            group_id=None,
            auto_offset_reset="latest",
            **access.client_kwargs(),
        )

    async def run(self, mode: str) -> tuple[int, float, float]:
        """Send, then wait for those in flight to finish; return (sent, window start,
        window end) in epoch seconds."""
        await self.producer.start()
        await self.changelog.start()
        await self.changelog.seek_to_end()
        began = time.time()
        try:
            watchers = [self.watch_completions(), self.show_progress()]
            if mode == "http":
                async with aiohttp.ClientSession() as session:
                    senders = [self.send_over_http(session) for _ in range(self.concurrency)]
                    await asyncio.gather(*watchers, *senders)
            else:
                senders = [self.send_onto_topic() for _ in range(self.concurrency)]
                await asyncio.gather(*watchers, *senders)
        finally:
            await self.changelog.stop()
            await self.producer.stop()
        return self.sent, began, began + self.seconds

    async def turn(self) -> bool:
        """Wait for a free slot (and, paced, for the next send time); False once the
        sending window has closed."""
        try:
            await asyncio.wait_for(
                self.slots.acquire(), timeout=max(0.0, self.stop - time.monotonic())
            )
        except TimeoutError:
            return False
        if self.rate > 0:
            slot = max(self.next_slot, time.monotonic())
            self.next_slot = slot + 1.0 / self.rate
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
        if time.monotonic() >= self.stop:
            self.slots.release()
            return False
        return True

    async def send_over_http(self, session: aiohttp.ClientSession) -> None:
        while await self.turn():
            payer, payee = _parties(self.accounts)
            body = {"amount": 0.01, "from_account": payer, "to_account": payee}
            async with session.post(self.url, json=body) as response:
                body = await response.json()
            if response.status == 202:
                self.in_flight.add(body["saga_id"])
                self.sent += 1
            else:
                self.slots.release()  # refused: no saga holds this slot

    async def send_onto_topic(self) -> None:
        while await self.turn():
            saga_id = uuid.uuid4().hex[:16]
            self.in_flight.add(saga_id)
            request = TransferRequested(
                saga_id, "transfer", 1, int(time.time() * 1000), *_parties(self.accounts)
            )
            await self.producer.send_and_wait(
                TRANSFER_REQUEST_TOPIC, encode(request), key=saga_id.encode()
            )
            self.sent += 1

    async def watch_completions(self) -> None:
        # Past the window too, until the sagas still in flight have finished (bounded):
        # their CPU belongs to the run, and the HTTP listing is not polled meanwhile.
        drained_by = self.stop + _DRAIN_S
        while time.monotonic() < self.stop or (self.in_flight and time.monotonic() < drained_by):
            batch = await self.changelog.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    self.saw(json.loads(message.value or b"null"))

    def saw(self, saga: dict[str, Any] | None) -> None:
        """A saga as the changelog shows it: one of ours ending frees its slot."""
        if saga and saga["status"] in TERMINAL and saga["saga_id"] in self.in_flight:
            self.in_flight.discard(saga["saga_id"])
            self.slots.release()

    async def show_progress(self) -> None:
        while time.monotonic() < self.stop:
            await asyncio.sleep(1.0)
            left = max(0.0, self.stop - time.monotonic())
            print(f"\r  sending: {self.sent} sent, {left:4.0f}s left ", end="", file=sys.stderr)
        print(file=sys.stderr)


async def _send_sagas(
    cluster: LocalCluster, mode: str, seconds: float, concurrency: int, rate: float, accounts: int
) -> tuple[int, float, float]:
    """Send transfers for ``seconds`` and wait for those in flight; return (sent, window
    start, window end) in epoch seconds. The load is made here: its Kafka clients
    belong to the running event loop."""
    return await _SagaLoad(cluster, seconds, concurrency, rate, accounts).run(mode)


def _bench_cluster(root: Path, accounts: int, env: dict[str, str] | None = None) -> LocalCluster:
    """A cluster of the bench's own, failure injection off; ``env``: more settings."""
    return LocalCluster(
        root,
        {
            "SERVICE_A_FAILURE_RATE": "0",
            "SERVICE_B_FAILURE_RATE": "0",
            "SERVICE_C_FAILURE_RATE": "0",
            # Millions in A, so a long run never ends in INSUFFICIENT_FUNDS.
            "OPENING_BALANCE_A": "100000000",
            "SERVICE_A_ACCOUNTS": f"A-{{1..{accounts}}}=1000000" if accounts else "",
            "SERVICE_B_ACCOUNTS": f"B-{{1..{accounts}}}=0" if accounts else "",
            **(env or {}),
        },
        # The seed's log lines cost a formatted record per step; the bench runs quieter.
        worker_args=("--loglevel", "warn"),
    )


def _pids(cluster: LocalCluster) -> dict[str, int | None]:
    """The processes whose CPU the bench counts: each worker, the broker, and this one
    (the load generator shares the machine too)."""
    pids = {role: w.proc.pid if w.proc else None for role, w in cluster.workers.items()}
    pids["kafka"] = cluster.kafka.pid
    pids["load generator"] = os.getpid()
    return pids


@dataclass
class _Measured:
    sagas: list[dict[str, Any]]
    began: float  # the sending window, in epoch seconds
    ended: float
    cpu_used: dict[str, float]  # process -> CPU seconds during the window and the drain


def _measure(cluster: LocalCluster, result: BenchResult) -> _Measured:
    """The ceiling, then the sagas (filling ``result``'s ceiling and ``sent``)."""
    cluster.start()
    print("  measuring the ceiling...", file=sys.stderr)
    result.ceiling_round_trips_per_s = asyncio.run(
        _ceiling(cluster.kafka.bootstrap, min(result.seconds, 20.0), result.concurrency)
    )
    pids = _pids(cluster)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result.sent, began, ended = asyncio.run(
        _send_sagas(
            cluster,
            result.mode,
            result.seconds,
            result.concurrency,
            result.rate_target,
            result.accounts,
        )
    )
    # Before the sagas are listed: reading every saga through the API is not the load
    # being measured.
    cpu_used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    sagas = _wait_for_the_rest(cluster, timeout=max(60.0, result.seconds * 3))
    return _Measured(sagas, began, ended, cpu_used)


def _wait_for_the_rest(cluster: LocalCluster, timeout: float) -> list[dict[str, Any]]:
    """Every saga, once all have ended; those still in flight after ``timeout`` are
    reported and left out of the figures (only COMPLETED ones count)."""
    ending = wait_until_ended(cluster.all_sagas, every_listed=True, timeout=timeout, interval=1.0)
    if not ending.ended:
        print(f"  warning: not every saga ended: {ending.pending()}", file=sys.stderr)
    return ending.sagas


def _figures(result: BenchResult, measured: _Measured) -> None:
    """Completions in the window, latencies, CPU per saga, statuses, share of the ceiling."""
    sagas, began, ended = measured.sagas, measured.began, measured.ended
    completed = [s for s in sagas if s["status"] == "COMPLETED"]
    in_window = [s for s in completed if began <= epoch_seconds(s["updated_at"]) <= ended]
    latencies = [
        (epoch_seconds(s["updated_at"]) - epoch_seconds(s["created_at"])) * 1000 for s in completed
    ]
    result.completed_in_window = len(in_window)
    result.completed_per_s = len(in_window) / (ended - began)
    result.latency_ms = {
        "p50": _percentile(latencies, 0.50),
        "p95": _percentile(latencies, 0.95),
        "p99": _percentile(latencies, 0.99),
        "max": max(latencies, default=0.0),
    }
    result.cpu_s_per_saga = {
        name: used / max(1, len(completed)) for name, used in measured.cpu_used.items()
    }
    result.statuses = {
        status: sum(1 for s in sagas if s["status"] == status) for status in sorted(TERMINAL)
    }
    if result.ceiling_round_trips_per_s:
        result.ratio_to_ceiling = result.completed_per_s / result.ceiling_round_trips_per_s


def run_bench(
    root: Path, mode: str, seconds: float, concurrency: int, rate: float, accounts: int = 0
) -> BenchResult:
    result = BenchResult(
        machine=f"{os.cpu_count()} cores, {sys.platform}",
        mode=mode,
        seconds=seconds,
        concurrency=concurrency,
        rate_target=rate,
        accounts=accounts,
    )
    cluster = _bench_cluster(root, accounts)
    try:
        measured = _measure(cluster, result)
    finally:
        cluster.close()
    _figures(result, measured)
    return result


def table_row(result: BenchResult, label: str) -> str:
    """One line of the BENCHMARKS.md table."""
    lat = result.latency_ms
    return (
        f"| {label} | {result.completed_per_s:,.1f} | {lat['p50']:.0f} ms | {lat['p95']:.0f} ms "
        f"| {lat['p99']:.0f} ms | {lat['max']:.0f} ms | {result.ceiling_round_trips_per_s:,.0f} "
        f"| {result.ratio_to_ceiling:.1%} |"
    )


def run_suite(out: Path, seconds: float, concurrency: int, accounts: int) -> str:
    """The runs BENCHMARKS.md reports: as fast as possible onto the topic and through
    HTTP, then onto the topic at half the rate reached; JSON files and a markdown table
    go to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    runs: list[tuple[str, str, float]] = [("topic", "topic", 0.0), ("http", "http", 0.0)]
    for name, mode, rate in runs:
        with tempfile.TemporaryDirectory(prefix="saga-bench-") as root:
            result = run_bench(Path(root), mode, seconds, concurrency, rate, accounts)
        print(result.render(), file=sys.stderr)
        (out / f"{name}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        rows.append(table_row(result, f"{mode}, {seconds:g} s, {concurrency} in flight"))
        if name == "topic":
            half = round(result.completed_per_s / 2, 1)
            runs.append(("half-rate", "topic", half))
        if rate:
            rows[-1] = table_row(result, f"topic at {rate:g}/s (half), {seconds:g} s")
    header = (
        "| run | sagas/s | p50 | p95 | p99 | max | ceiling (round trips/s) | share |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    table = "\n".join([header, *rows]) + "\n"
    (out / "summary.md").write_text(table)
    return table


def _open_row(result: Any, label: str) -> str:
    """One line of the backpressure table for an open-loop run (an ``OpenLoopResult``)."""
    lat = result.latency_ms
    return (
        f"| {label} | {result.offered_rate:g} | {result.accepted:,} | {result.refused:,} "
        f"| {result.completed_per_s:,.1f} | {lat['p50']:.0f} ms | {lat['p99']:.0f} ms "
        f"| {lat['max']:.0f} ms | {result.not_ended} |"
    )


def run_backpressure(
    out: Path, seconds: float, concurrency: int, accounts: int, max_in_flight: int
) -> str:
    """BENCHMARKS.md, "Backpressure": the capacity in closed loop through HTTP, then open
    loop at twice that rate with ``max_in_flight`` and without a cap; JSON files and a
    markdown table go to ``out``."""
    # Imported here: open_loop.py builds on this module.
    from saga_streams.local.open_loop import NO_CAP, run_open_loop

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="saga-bench-") as root:
        closed = run_bench(Path(root), "http", seconds, concurrency, 0.0, accounts)
    print(closed.render(), file=sys.stderr)
    (out / "closed-loop.json").write_text(json.dumps(asdict(closed), indent=2) + "\n")
    lat = closed.latency_ms
    rows = [
        f"| closed loop, {concurrency} in flight | - | {closed.sent:,} | 0 "
        f"| {closed.completed_per_s:,.1f} | {lat['p50']:.0f} ms | {lat['p99']:.0f} ms "
        f"| {lat['max']:.0f} ms | 0 |"
    ]
    offered = round(2 * closed.completed_per_s)
    for name, cap in (("open-loop-capped", max_in_flight), ("open-loop-uncapped", NO_CAP)):
        with tempfile.TemporaryDirectory(prefix="saga-bench-") as root:
            result = run_open_loop(Path(root), offered, seconds, cap, accounts)
        print(result.render(), file=sys.stderr)
        (out / f"{name}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        label = "no cap" if cap >= NO_CAP else f"MAX_IN_FLIGHT {cap}"
        rows.append(_open_row(result, f"open loop at 2x capacity, {label}"))
    header = (
        "| run | offered/s | accepted (202) | refused (429) | completed/s | p50 | p99 | max "
        "| not ended |\n|---|---|---|---|---|---|---|---|---|"
    )
    table = "\n".join([header, *rows]) + "\n"
    (out / "backpressure.md").write_text(table)
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m saga_streams bench", description=__doc__)
    parser.add_argument("--mode", choices=("http", "topic"), default="http")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="senders, and messages in flight for the ceiling",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="transfers per second (0: as fast as the senders go)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=100,
        help="accounts per service, each transfer between a random pair (0: A to B only)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-result.json"))
    parser.add_argument(
        "--suite",
        type=Path,
        metavar="DIR",
        help="run the BENCHMARKS.md set (topic, http, topic at half rate) into DIR",
    )
    open_loop = parser.add_argument_group("open loop (backpressure)")
    open_loop.add_argument(
        "--offered-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="open loop: POST /transfer at R per second whatever the sagas do",
    )
    open_loop.add_argument(
        "--count", type=int, help="open loop: at most this many POSTs (default: R x seconds)"
    )
    open_loop.add_argument(
        "--max-in-flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help=f"the orchestrator's MAX_IN_FLIGHT (default {DEFAULT_MAX_IN_FLIGHT}; 0: no cap)",
    )
    open_loop.add_argument(
        "--backpressure",
        type=Path,
        metavar="DIR",
        help="run the backpressure set (closed-loop capacity, then open loop at twice it, "
        "with and without the cap) into DIR",
    )
    return parser


def _open_loop(args: argparse.Namespace) -> int:
    from saga_streams.local.open_loop import NO_CAP, run_open_loop

    cap = args.max_in_flight or NO_CAP
    with tempfile.TemporaryDirectory(prefix="saga-bench-") as root:
        result = run_open_loop(
            Path(root), args.offered_rate, args.seconds, cap, args.accounts, args.count
        )
    print(result.render())
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.rate < 0 or args.accounts < 0:
        parser.error("--seconds > 0, --concurrency >= 1, --rate >= 0, --accounts >= 0")
    if args.offered_rate < 0 or args.max_in_flight < 0 or (args.count or 1) < 1:
        parser.error("--offered-rate >= 0, --max-in-flight >= 0, --count >= 1")
    if args.suite is not None:
        print(run_suite(args.suite, args.seconds, args.concurrency, args.accounts))
        return 0
    if args.backpressure is not None:
        cap = args.max_in_flight
        print(
            run_backpressure(args.backpressure, args.seconds, args.concurrency, args.accounts, cap)
        )
        return 0
    if args.offered_rate > 0:
        return _open_loop(args)
    root = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    try:
        result = run_bench(
            root, args.mode, args.seconds, args.concurrency, args.rate, args.accounts
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(result.render())
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(f"  written to {args.out}")
    return 0
