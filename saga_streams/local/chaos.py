"""``python -m saga_streams chaos`` (``make chaos``): faults under load, then every invariant.

Against a real broker and real worker processes of its own (nothing else is touched):

1. sends a bounded burst of transfers, concurrently, with random amounts (some larger
   than account A holds);
2. meanwhile kills random workers with SIGKILL (and starts them again), pauses one with
   SIGSTOP/SIGCONT, and kills and restarts the broker; workers that die of the broker's
   absence are started again, as a supervisor would;
3. restarts every worker, waits for quiescence (every saga terminal, every consumer
   caught up), and checks the invariants (README, "Invariants"), watching statuses all
   along to catch a saga moving backwards;
4. replays a sample of already-processed commands and replies onto their topics, half
   of them onto a partition other than their own (as kcat's default partitioner would
   place them), waits until they are consumed, and shows they changed nothing.

Every loop is bounded by count and by time. Prints the faults, the sagas by status and
the longest time a saga took to finish after the last fault before its end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from saga_streams.app import (
    REPLY_TOPIC,
    TRANSFER_REQUEST_TOPIC,
    consumed_topics,
)
from saga_streams.config import load_settings
from saga_streams.connection import KafkaAccess
from saga_streams.local.cluster import LocalCluster
from saga_streams.local.ending import Ending, wait_until_ended
from saga_streams.roles import ROLES
from saga_streams.saga.state import STATUSES, TERMINAL, epoch_seconds
from saga_streams.workflows import WORKFLOWS

__all__ = ["ChaosPlan", "ChaosResult", "main", "run_chaos"]

#: How far along each status is: a saga seen at one rank must never be seen at a lower one.
_RANK = {status: 2 if status in TERMINAL else rank for rank, status in enumerate(STATUSES)}


@dataclass(frozen=True)
class ChaosPlan:
    transfers: int = 300
    kills: int = 3  # SIGKILL of a random worker, then a new one
    pauses: int = 1  # SIGSTOP of a random worker for a few seconds, then SIGCONT
    broker_restarts: int = 1  # SIGKILL of the broker, then a new one on the same data
    replays: int = 60  # already-processed commands and replies produced again
    concurrency: int = 4
    #: Transfers per second, all senders together (0: as fast as they go). Paced, the
    #: faults spread over a longer burst and hit sagas at every stage.
    rate: float = 15.0
    seed: int = 1
    max_seconds: float = 900.0  # the whole run, however it goes
    #: Shorter timeouts than the defaults, so sagas whose messages died with a process
    #: move on sooner; long enough (3 + 6 + 12 s) to outlast a killed worker's ~10 s
    #: session, so most sagas survive a kill instead of all being rolled back.
    worker_env: tuple[tuple[str, str], ...] = (("STEP_TIMEOUT", "3"), ("RETRY_MAX_DELAY", "12"))


@dataclass
class ChaosResult:
    accepted: list[str] = field(default_factory=list)
    rejected: int = 0  # POSTs that got no 202 (the orchestrator or the broker was down)
    faults: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # why steps failed, by kind
    violations: list[str] = field(default_factory=list)
    replayed: int = 0
    replayed_astray: int = 0  # of which produced onto a partition not their own
    longest_after_fault_s: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        kinds = Counter(what.split(" ")[0] for _, what in self.faults)
        lines = [
            f"chaos: {len(self.accepted)} transfers accepted, {self.rejected} POSTs refused "
            f"while a process was down, {self.seconds:.0f}s",
            f"faults ({len(self.faults)}): "
            + ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())),
            *[f"  {t:6.1f}s  {what}" for t, what in self.faults],
            "sagas: " + ", ".join(f"{s} {n}" for s, n in sorted(self.statuses.items())),
            "step errors: "
            + (", ".join(f"{e} {n}" for e, n in self.errors.most_common()) or "none"),
            self._replays(),
            f"longest finish after its last fault: {self.longest_after_fault_s:.1f}s",
        ]
        lines += [f"❌ {v}" for v in self.violations] or ["✅ every invariant holds"]
        return "\n".join(lines)

    def _replays(self) -> str:
        if not self.replayed:
            return "replayed nothing"
        what = (
            f"replayed {self.replayed} processed commands and replies "
            f"({self.replayed_astray} onto another partition)"
        )
        return f"{what}: nothing changed" if self.ok else what


class _Run:
    def __init__(self, root: Path, plan: ChaosPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.cluster = LocalCluster(root, dict(plan.worker_env))
        #: How the run's own clients (replays, lag checks) reach the cluster's broker.
        self.access = load_settings(self.cluster.worker_env()).kafka
        self.result = ChaosResult()
        self.began = time.monotonic()
        self.deadline = self.began + plan.max_seconds
        self.lock = threading.Lock()
        self.load_done = threading.Event()
        self.stop_watching = threading.Event()
        self.seen: dict[str, str] = {}  # saga id -> latest status observed
        self.kill_order: list[str] = []
        self.next_send = 0.0

    # -- bookkeeping ------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.began

    def fault(self, what: str) -> None:
        with self.lock:
            self.result.faults.append((self.now(), what))
        print(f"[chaos {self.now():6.1f}s] {what}", flush=True)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    # -- load -------------------------------------------------------------------------------
    def amount(self, rng: random.Random) -> float:
        # Mostly small (cents included), so A does not run dry at once; now and then more
        # than A ever holds, so INSUFFICIENT_FUNDS happens.
        return 1500.0 if rng.random() < 0.05 else rng.randint(1, 50) / 100

    def pace(self) -> None:
        """Wait for this sender's turn, so that all together keep to ``plan.rate``."""
        if self.plan.rate <= 0:
            return
        with self.lock:
            slot = max(self.next_send, time.monotonic())
            self.next_send = slot + 1.0 / self.plan.rate
        time.sleep(max(0.0, slot - time.monotonic()))

    def load(self) -> None:
        """Keep sending until the planned number of transfers were accepted (202)."""

        def sender(worker: int) -> None:
            rng = random.Random(self.plan.seed * 1000 + worker)
            while self.time_left() > 0:
                with self.lock:
                    if len(self.result.accepted) >= self.plan.transfers:
                        return
                self.pace()
                # Both workflows side by side: a third of the transfers pay a fee.
                workflow = "transfer-with-fee" if rng.random() < 0.33 else "transfer"
                try:
                    status, body = self.cluster.transfer(
                        self.amount(rng), timeout=5.0, workflow=workflow
                    )
                except OSError:
                    status, body = 0, None
                with self.lock:
                    if status == 202 and len(self.result.accepted) < self.plan.transfers:
                        self.result.accepted.append(body["saga_id"])
                    elif status != 202:
                        self.result.rejected += 1
                if status != 202:
                    time.sleep(0.2)

        with ThreadPoolExecutor(self.plan.concurrency) as pool:
            list(pool.map(sender, range(self.plan.concurrency)))
        self.load_done.set()

    # -- watching statuses (invariant 6) ----------------------------------------------------
    def watch(self) -> None:
        while not self.stop_watching.wait(1.0):
            try:
                sagas = self.cluster.all_sagas()
            except (OSError, KeyError, ValueError):
                continue  # the orchestrator is down or restarting
            self.observe(sagas)

    def observe(self, sagas: list[dict[str, Any]]) -> None:
        with self.lock:
            for saga in sagas:
                before, now = self.seen.get(saga["saga_id"]), saga["status"]
                if before is not None and (
                    _RANK[now] < _RANK[before] or (before in TERMINAL and now != before)
                ):
                    self.result.violations.append(
                        f"monotonic state: saga {saga['saga_id']} went {before} -> {now}"
                    )
                self.seen[saga["saga_id"]] = now

    # -- faults -----------------------------------------------------------------------------
    def supervise(self) -> None:
        """Start again any worker that died on its own (say, while the broker was away)."""
        for role, worker in list(self.cluster.workers.items()):
            if not worker.is_running():
                self.fault(f"crash {role} exited with {worker.returncode()}; started again")
                self.cluster.start_worker(role)

    def kill(self) -> None:
        # Every role in turn, in a shuffled order, so a few kills hit each of them.
        if not self.kill_order:
            self.kill_order = self.rng.sample(list(ROLES), len(ROLES))
        role = self.kill_order.pop()
        self.fault(f"SIGKILL {role}")
        self.cluster.workers[role].kill()
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.cluster.start_worker(role)

    def pause(self) -> None:
        role = self.rng.choice(list(ROLES))
        seconds = self.rng.uniform(3.0, 6.0)
        self.fault(f"SIGSTOP {role} for {seconds:.1f}s")
        worker = self.cluster.workers[role]
        worker.pause()
        time.sleep(seconds)
        worker.resume()

    def restart_broker(self) -> None:
        self.fault("SIGKILL broker; started again on the same data")
        self.cluster.kafka.kill()
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.cluster.kafka.start()

    def inject_faults(self) -> None:
        faults: list[Callable[[], None]] = (
            [self.kill] * self.plan.kills
            + [self.pause] * self.plan.pauses
            + [self.restart_broker] * self.plan.broker_restarts
        )
        self.rng.shuffle(faults)
        for index, fault in enumerate(faults, start=1):
            # Spread the faults over the burst: the i-th once i/(n+1) of it was accepted.
            due = self.plan.transfers * index // (len(faults) + 1)
            while self.time_left() > 0 and not self.load_done.is_set():
                with self.lock:
                    if len(self.result.accepted) >= due:
                        break
                self.supervise()
                time.sleep(0.2)
            fault()
            self.supervise()

    # -- quiescence, replay, checks ---------------------------------------------------------
    def wait_all_ready(self) -> None:
        for _ in range(3):
            self.supervise()
            try:
                for worker in self.cluster.workers.values():
                    worker.wait_ready(timeout=max(5.0, min(120.0, self.time_left())))
                return
            except RuntimeError:
                continue

    def quiesce(self, timeout: float) -> list[dict[str, Any]]:
        """Wait until no saga is in flight, every accepted one is known to the
        orchestrator, and every consumer group has caught up; a violation if not."""
        ending = wait_until_ended(
            self.poll_sagas,
            self.result.accepted,
            every_listed=True,
            timeout=min(timeout, max(1.0, self.time_left())),
            interval=1.0,
            settled=lambda: asyncio.run(_groups_caught_up(self.access)),
        )
        if not ending.ended:
            self.not_quiet(ending, timeout)
        return ending.sagas

    def poll_sagas(self) -> list[dict[str, Any]]:
        """One poll while waiting: workers that died are started again, and every status
        read is checked for going backwards (invariant 6)."""
        self.supervise()
        sagas = self.cluster.all_sagas()
        self.observe(sagas)
        return sagas

    def not_quiet(self, ending: Ending, timeout: float) -> None:
        if ending.unknown:
            on_topic = asyncio.run(_requests_on_topic(self.access, set(ending.unknown)))
            self.result.violations.append(
                f"{len(ending.unknown)} accepted sagas unknown to the orchestrator; "
                f"{len(on_topic)} of them are on the request topic"
            )
        self.result.violations.append(
            f"termination: after {timeout:.0f}s, {len(ending.in_flight)} sagas in flight "
            f"({ending.in_flight[:3]}), {len(ending.unknown)} accepted sagas unknown "
            f"({ending.unknown[:3]})"
        )

    def check(self, sagas: list[dict[str, Any]]) -> dict[str, int]:
        report = self.cluster.audit(stuck_after_s=float("inf"))
        self.result.violations.extend(report.violations)
        if report.in_flight:
            self.result.violations.append(f"{report.in_flight} sagas still in flight")
        return report.balances

    def longest_after_fault(self, sagas: list[dict[str, Any]]) -> float:
        """For each saga alive at a fault: from the last fault before its end to its end."""
        wall_start = time.time() - self.now()
        fault_times = [wall_start + t for t, _ in self.result.faults]
        longest = 0.0
        for saga in sagas:
            created, ended = epoch_seconds(saga["created_at"]), epoch_seconds(saga["updated_at"])
            during = [t for t in fault_times if created <= t <= ended]
            if during:
                longest = max(longest, ended - max(during))
        return longest

    def run(self) -> ChaosResult:
        plan = self.plan
        self.cluster.start()
        watcher = threading.Thread(target=self.watch, daemon=True)
        watcher.start()
        loader = threading.Thread(target=self.load, daemon=True)
        loader.start()
        try:
            self.inject_faults()
            loader.join(timeout=max(1.0, self.time_left()))
            if loader.is_alive():
                self.result.violations.append("the load did not finish in time")
            self.fault("restart every worker (SIGTERM)")
            for role in list(self.cluster.workers):
                self.cluster.workers[role].stop()
                self.cluster.start_worker(role)
            self.wait_all_ready()
            sagas = self.quiesce(timeout=240)
            balances = self.check(sagas)
            statuses = {s["saga_id"]: s["status"] for s in sagas}
            self.result.longest_after_fault_s = self.longest_after_fault(sagas)

            self.result.replayed, self.result.replayed_astray = asyncio.run(
                _replay(self.access, plan.replays, self.rng)
            )
            after = self.quiesce(timeout=120)
            if self.check(after) != balances:
                self.result.violations.append("at most once: replayed commands moved money")
            if {s["saga_id"]: s["status"] for s in after} != statuses:
                self.result.violations.append("replayed replies changed a saga's status")
            self.result.statuses = Counter(s["status"] for s in after)
            self.result.errors = Counter(
                step["error"].split(":")[0]
                for saga in after
                for step in saga["steps"]
                if step["error"]
            )
        finally:
            self.stop_watching.set()
            self.result.seconds = self.now()
            self.cluster.close()
        return self.result


async def _groups_caught_up(access: KafkaAccess) -> bool:
    """True when every role's consumer group has committed up to the end of its topics."""
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **access.client_kwargs())
    consumer = AIOKafkaConsumer(group_id=None, **access.client_kwargs())
    try:
        await admin.start()
        await consumer.start()
        await consumer.topics()  # fetch the cluster's metadata: partitions of every topic
        for role, topics in consumed_topics(WORKFLOWS).items():
            committed = await admin.list_consumer_group_offsets(ROLES[role].app_id)
            tps = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in consumer.partitions_for_topic(topic) or ()
            ]
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                done = committed[tp].offset if tp in committed else 0
                if done < ends[tp]:
                    return False
        return True
    except Exception:  # the broker or a coordinator is not there yet: not caught up
        return False
    finally:
        await consumer.stop()
        await admin.close()


async def _requests_on_topic(access: KafkaAccess, saga_ids: set[str]) -> set[str]:
    """Which of these saga ids have their request on the request topic (diagnostics)."""
    consumer = AIOKafkaConsumer(
        TRANSFER_REQUEST_TOPIC,
        group_id=None,
        auto_offset_reset="earliest",
        **access.client_kwargs(),
    )
    await consumer.start()
    found: set[str] = set()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                return found
            for messages in batch.values():
                found |= {m.key.decode() for m in messages if m.key} & saga_ids
    finally:
        await consumer.stop()


async def _replay(access: KafkaAccess, count: int, rng: random.Random) -> tuple[int, int]:
    """Produce again a random sample of messages already on the command and reply topics,
    every other one onto a partition other than the one its key belongs to (the agents
    forward those to it); return how many, and how many astray."""
    topics = [*WORKFLOWS.topics, REPLY_TOPIC]
    consumer = AIOKafkaConsumer(
        *topics, group_id=None, auto_offset_reset="earliest", **access.client_kwargs()
    )
    producer = AIOKafkaProducer(acks="all", **access.client_kwargs())
    await consumer.start()
    await producer.start()
    try:
        seen: list[tuple[str, int, bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if not batch:
                break
            for messages in batch.values():
                seen += [
                    (m.topic, m.partition, m.key, m.value) for m in messages if m.value is not None
                ]
        sample = rng.sample(seen, min(count, len(seen)))
        astray = 0
        for number, (topic, partition, key, value) in enumerate(sample):
            elsewhere = None
            others = sorted(await producer.partitions_for(topic) - {partition})
            if number % 2 and others:
                elsewhere = rng.choice(others)
                astray += 1
            await producer.send_and_wait(topic, value, key=key, partition=elsewhere)
        return len(sample), astray
    finally:
        await producer.stop()
        await consumer.stop()


def run_chaos(root: Path, plan: ChaosPlan) -> ChaosResult:
    return _Run(root, plan).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saga_streams chaos", description=__doc__)
    defaults = ChaosPlan()
    parser.add_argument("--transfers", type=int, default=defaults.transfers)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--pauses", type=int, default=defaults.pauses)
    parser.add_argument("--broker-restarts", type=int, default=defaults.broker_restarts)
    parser.add_argument("--replays", type=int, default=defaults.replays)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="transfers per second (0: no limit)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds)
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs)")
    args = parser.parse_args(argv)
    if min(args.transfers, args.concurrency) < 1 or min(args.kills, args.pauses) < 0:
        parser.error("--transfers and --concurrency must be at least 1; counts not negative")
    plan = ChaosPlan(
        transfers=args.transfers,
        kills=args.kills,
        pauses=args.pauses,
        broker_restarts=args.broker_restarts,
        replays=args.replays,
        concurrency=args.concurrency,
        rate=args.rate,
        seed=args.seed,
        max_seconds=args.max_seconds,
    )
    root = Path(tempfile.mkdtemp(prefix="saga-chaos-"))
    try:
        result = run_chaos(root, plan)
    finally:
        if args.keep:
            print(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(result.render())
    return 0 if result.ok else 1
