"""``python -m saga_streams chaos`` (``make chaos``, ``make soak``): faults under load,
then every invariant.

Against a real broker and real worker processes of its own (nothing else is touched):

1. sends transfers concurrently, both workflows, between many accounts if asked, with
   random amounts (some larger than an account holds);
2. meanwhile kills random workers with SIGKILL (and starts them again), pauses some with
   SIGSTOP/SIGCONT, kills and restarts the broker, and produces recent commands and
   replies a second time; workers that die of the broker's absence are started again,
   as a supervisor would;
3. follows every saga's status all along without listing them all (``soak_tracker``):
   a status never goes back, and with a short ``SAGA_RETENTION`` a saga may expire, but
   is never lost;
4. at a few numbers of accepted transfers, measures each process's memory, the tables
   on disk and the changelog topics on the broker's disk (``soak_report``);
5. restarts every worker, waits for quiescence (every saga terminal, every consumer
   caught up), accounts for every accepted saga and checks the invariants (README,
   "Invariants");
6. replays a sample of already-processed commands and replies (the oldest and the
   newest), half of them onto a partition other than their own, waits until they are
   consumed, and shows they changed nothing.

Every loop is bounded by count and by time. Prints the result; ``--report`` also writes
it as Markdown (``make soak`` writes RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saga_streams.config import load_settings
from saga_streams.http_client import http_json
from saga_streams.local.chaos_kafka import groups_caught_up, lagging, replay, requests_on_topic
from saga_streams.local.cluster import LocalCluster
from saga_streams.local.ending import Ending, wait_until_ended
from saga_streams.local.soak_report import (
    ChaosResult,
    Checkpoint,
    changelog_bytes,
    disk_bytes,
    render_markdown,
    rss_kib,
)
from saga_streams.local.soak_tracker import Reconciliation, SagaTracker, expired_counts
from saga_streams.roles import ROLES
from saga_streams.saga.dsl import FROM_ACCOUNT, TO_ACCOUNT
from saga_streams.workflows import TRANSFER, TRANSFER_WITH_FEE, WORKFLOWS

__all__ = ["ChaosPlan", "ChaosResult", "main", "run_chaos"]

#: The name tests/test_kafka_input.py knows the lag check by.
_groups_caught_up = groups_caught_up

#: Commands and replies one replay during the load produces again.
BURST = 20


#: How a POST that got no HTTP answer is counted.
_ANSWERS = {-1: "connection refused", 0: "no answer"}


def _refused(exc: OSError) -> bool:
    """Whether a request failed before it was sent (nothing listening on the port)."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError)


@dataclass(frozen=True)
class ChaosPlan:
    transfers: int = 300
    kills: int = 3  # SIGKILL of a random worker, then a new one
    pauses: int = 1  # SIGSTOP of a random worker for a few seconds, then SIGCONT
    broker_restarts: int = 1  # SIGKILL of the broker, then a new one on the same data
    replay_bursts: int = 0  # during the load: BURST recent commands and replies again
    replays: int = 60  # at the end: already-processed commands and replies again
    concurrency: int = 4
    #: Transfers per second, all senders together (0: as fast as they go). Paced, the
    #: faults spread over a longer burst and hit sagas at every stage.
    rate: float = 15.0
    seed: int = 1
    max_seconds: float = 900.0  # the whole run, however it goes
    #: Accounts opened for each of services A and B besides their default one (A-001,
    #: B-001, ..., $1,000 each); transfers go between random ones. 0: A to B only.
    accounts: int = 0
    #: SAGA_RETENTION for the workers (None: the default, a week, so none expires).
    saga_retention_s: float | None = None
    #: LEDGER_GRACE for the workers: how far beyond the retry policy the faults may
    #: stretch a saga between two commands about one action (kills, pauses, the
    #: broker's restarts) before its participants may forget the action.
    ledger_grace_s: float = 120.0
    #: TOMBSTONE_RETENTION for the workers (None: the default, a day): how long the
    #: changelogs keep a removed key's tombstone once compacted.
    tombstone_retention_s: float | None = None
    #: Before the final restart, the run goes on without load (workers supervised)
    #: until this many seconds from its start: time for a short retention to pass, so
    #: that sagas expire on a quiet system too. 0: no wait.
    quiet_until_s: float = 0.0
    #: Numbers of accepted transfers at which memory and storage are measured
    #: (empty: at a tenth, half and all of the transfers).
    checkpoints: tuple[int, ...] = ()
    poll_interval_s: float = 1.0
    #: Shorter timeouts than the defaults, so sagas whose messages died with a process
    #: move on sooner; long enough (3 + 6 + 12 s) to outlast a killed worker's ~10 s
    #: session, so most sagas survive a kill instead of all being rolled back.
    worker_env: tuple[tuple[str, str], ...] = (("STEP_TIMEOUT", "3"), ("RETRY_MAX_DELAY", "12"))

    def env(self) -> dict[str, str]:
        """The workers' environment: ``worker_env``, the accounts, the retention."""
        env = dict(self.worker_env)
        if self.accounts:
            last = f"{self.accounts:03d}"
            first = "1".rjust(len(last), "0")
            env["SERVICE_A_ACCOUNTS"] = f"A-{{{first}..{last}}}=1000"
            env["SERVICE_B_ACCOUNTS"] = f"B-{{{first}..{last}}}=1000"
        if self.saga_retention_s is not None:
            env["SAGA_RETENTION"] = f"{self.saga_retention_s:g}"
        env["LEDGER_GRACE"] = f"{self.ledger_grace_s:g}"
        if self.tombstone_retention_s is not None:
            env["TOMBSTONE_RETENTION"] = f"{self.tombstone_retention_s:g}"
        return env

    def checkpoint_counts(self) -> list[int]:
        counts = self.checkpoints or (self.transfers // 10, self.transfers // 2, self.transfers)
        return sorted({n for n in counts if 0 < n <= self.transfers})

    def account(self, service: str, rng: random.Random) -> str:
        width = len(f"{self.accounts:03d}")
        return f"{service}-{rng.randint(1, self.accounts):0{width}d}"


class _Run:
    def __init__(self, root: Path, plan: ChaosPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.cluster = LocalCluster(root, plan.env())
        self.settings = load_settings(self.cluster.worker_env())
        #: How the run's own clients (replays, lag checks) reach the cluster's broker.
        self.access = self.settings.kafka
        self.result = ChaosResult()
        self.tracker = SagaTracker()
        self.began = time.monotonic()
        self.deadline = self.began + plan.max_seconds
        self.lock = threading.Lock()
        self.load_done = threading.Event()
        self.stop_watching = threading.Event()
        self.kill_order: list[str] = []
        self.next_send = 0.0
        self.unknown_outcomes = 0  # POSTs with no answer: their saga may exist or not
        self.due_checkpoints = plan.checkpoint_counts()
        #: process -> the most resident memory sampled since the last checkpoint (KiB).
        self.peak_rss: dict[str, int] = {}
        #: The changelogs' bytes at each poll since the last checkpoint.
        self.changelog_samples: list[int] = []
        #: The senders stop at this many accepted transfers until the next fault is in.
        self.allowed = plan.transfers

    # -- bookkeeping ------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.began

    def fault(self, what: str) -> None:
        with self.lock:
            self.result.faults.append((self.now(), what))
        self.tracker.fault_at(time.time())
        print(f"[chaos {self.now():6.1f}s] {what}", flush=True)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def get(self, path: str) -> tuple[int, Any]:
        """One GET to the orchestrator (OSError while it is down)."""
        url = self.cluster.url("orchestrator", path)
        return http_json("GET", url, timeout=10.0, headers=self.cluster.authorization())

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.result.accepted)

    # -- load -------------------------------------------------------------------------------
    def amount(self, rng: random.Random) -> float:
        # Mostly small (cents included), so no account runs dry at once; now and then
        # more than an account ever holds, so INSUFFICIENT_FUNDS happens.
        return 1500.0 if rng.random() < 0.05 else rng.randint(1, 50) / 100

    def pace(self) -> None:
        """Wait for this sender's turn, so that all together keep to ``plan.rate``."""
        if self.plan.rate <= 0:
            return
        with self.lock:
            slot = max(self.next_send, time.monotonic())
            self.next_send = slot + 1.0 / self.plan.rate
        time.sleep(max(0.0, slot - time.monotonic()))

    def request(self, rng: random.Random) -> dict[str, Any]:
        # Both workflows side by side: a third of the transfers pay a fee.
        workflow = TRANSFER_WITH_FEE if rng.random() < 0.33 else TRANSFER
        body: dict[str, Any] = {"amount": self.amount(rng), "workflow": workflow.name}
        if self.plan.accounts:
            body[FROM_ACCOUNT] = self.plan.account("A", rng)
            body[TO_ACCOUNT] = self.plan.account("B", rng)
        return body

    def send(self, rng: random.Random) -> int:
        """One POST /transfer; its HTTP status (202: accepted; 0, -1: no answer)."""
        body = self.request(rng)
        url = self.cluster.url("orchestrator", "/transfer")
        try:
            # Longer than the view's own wait for Kafka (10 s): an answer, mostly.
            status, answer = http_json(
                "POST", url, body, timeout=15.0, headers=self.cluster.authorization()
            )
        except OSError as exc:
            # Refused: the request never left; anything else (a timeout, a reset) may
            # have reached the orchestrator, and its saga may run.
            status, answer = (-1 if _refused(exc) else 0), None
        with self.lock:
            result = self.result
            if status == 202 and len(result.accepted) < self.plan.transfers:
                result.accepted.append(answer["saga_id"])
                result.workflows[body["workflow"]] += 1
            elif status == 202:
                # Accepted beyond the plan (senders in flight when the last one was): its
                # saga runs and may expire, so it is accounted for like a saga that may
                # exist, not tracked like the planned ones.
                result.maybe.append(answer["saga_id"])
            else:
                result.refused[_ANSWERS.get(status, str(status))] += 1
                self.unknown_outcomes += status == 0
                if isinstance(answer, dict) and "saga_id" in answer:
                    result.maybe.append(answer["saga_id"])
        return status

    def wait_for_faults(self) -> None:
        """Hold the senders at the next fault's share of the transfers until the one
        before it was injected: faults take seconds each (a pause, a broker restart),
        and an unpaced load would otherwise end long before the last of them."""
        while self.allowed <= self.accepted_count() < self.plan.transfers and self.time_left() > 0:
            time.sleep(0.05)

    def load(self) -> None:
        """Keep sending until the planned number of transfers were accepted (202)."""

        def sender(worker: int) -> None:
            rng = random.Random(self.plan.seed * 1000 + worker)
            while self.time_left() > 0 and self.accepted_count() < self.plan.transfers:
                self.pace()
                self.wait_for_faults()
                status = self.send(rng)
                if status != 202:
                    # 429: the orchestrator holds MAX_IN_FLIGHT sagas; give them time.
                    time.sleep(0.5 if status == 429 else 0.2)

        began = time.monotonic()
        with ThreadPoolExecutor(self.plan.concurrency) as pool:
            list(pool.map(sender, range(self.plan.concurrency)))
        self.result.load_seconds = time.monotonic() - began
        self.load_done.set()

    # -- watching statuses (invariant 6) and checkpoints ------------------------------------
    def watch(self) -> None:
        since = time.time()
        while not self.stop_watching.wait(self.plan.poll_interval_s):
            began = time.time()
            try:
                self.tracker.poll(self.get, since)
                since = began
            except (OSError, KeyError, ValueError):
                pass  # the orchestrator is down or restarting: the next poll reads more
            self.sample_rss()
            self.sample_changelogs()
            self.checkpoint_if_due()

    def sample_rss(self) -> None:
        """Each process's resident memory now, into the peaks since the last checkpoint."""
        for name, kib in self.rss_now().items():
            if kib is not None:
                self.peak_rss[name] = max(kib, self.peak_rss.get(name, 0))

    def sample_changelogs(self) -> None:
        """The changelog topics' bytes on the broker's disk now (only while checkpoints
        are still due: a walk of the broker's log folders per poll)."""
        if self.due_checkpoints:
            self.changelog_samples.append(changelog_bytes(self.log_dirs()))

    def log_dirs(self) -> list[Path]:
        return [node.kraft_dir for node in self.cluster.kafka.nodes]

    def rss_now(self) -> dict[str, int | None]:
        cluster = self.cluster
        rss = {name: rss_kib(w.proc.pid if w.proc else None) for name, w in cluster.workers.items()}
        rss["broker"] = rss_kib(cluster.kafka.pid)
        return rss

    def checkpoint_if_due(self) -> None:
        accepted = self.accepted_count()
        while self.due_checkpoints and accepted >= self.due_checkpoints[0]:
            count = self.due_checkpoints.pop(0)
            self.result.checkpoints.append(self.measure(f"{count:,}", accepted))

    def measure(self, label: str, accepted: int) -> Checkpoint:
        """Memory and storage now: each process's VmRSS, each worker's data folder, the
        broker's changelog topics; and how many sagas are listed and expired."""
        cluster = self.cluster
        rss = self.rss_now()
        self.sample_rss()
        peak, self.peak_rss = self.peak_rss, {}
        tables = {
            name: disk_bytes(cluster.root / "data" / f"{cluster.role_of[name]}-{port}")
            for name, port in cluster.ports.items()
        }
        log_dirs = self.log_dirs()
        changelogs = changelog_bytes(log_dirs)
        samples, self.changelog_samples = [*self.changelog_samples, changelogs], []
        stretch = (max(samples), round(sum(samples) / len(samples)))
        listed = expired = None
        try:
            status, body = self.get("/sagas?limit=1")
            listed = body["count"] if status == 200 else None
            counts = expired_counts(self.get)
            expired = None if counts is None else sum(counts.values())
        except (OSError, KeyError, ValueError):
            pass  # the orchestrator is restarting: the storage figures stand alone
        return Checkpoint(
            label=label,
            accepted=accepted,
            seconds=self.now(),
            rss_kib=rss,
            table_bytes=tables,
            changelog_bytes=changelogs,
            kafka_bytes=sum(disk_bytes(d) for d in log_dirs),
            listed=listed,
            expired=expired,
            peak_rss_kib=peak,
            changelog_stretch=stretch,
        )

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

    def replay_burst(self) -> None:
        self.fault(f"replay {BURST} recent commands and replies")
        try:
            asyncio.run(replay(self.access, BURST, self.rng, oldest=False))
        except Exception as exc:  # the broker is away: a burst that did not happen
            self.fault(f"replay failed: {type(exc).__name__}")

    def inject_faults(self) -> None:
        faults: list[Callable[[], None]] = (
            [self.kill] * self.plan.kills
            + [self.pause] * self.plan.pauses
            + [self.restart_broker] * self.plan.broker_restarts
            + [self.replay_burst] * self.plan.replay_bursts
        )
        self.rng.shuffle(faults)
        for index, fault in enumerate(faults, start=1):
            # Spread the faults over the burst: the i-th once i/(n+1) of it was accepted.
            due = self.plan.transfers * index // (len(faults) + 1)
            self.allowed = self.plan.transfers * (index + 1) // (len(faults) + 1)
            while self.time_left() > 0 and not self.load_done.is_set():
                if self.accepted_count() >= due:
                    break
                self.supervise()
                time.sleep(0.2)
            if self.time_left() <= 0:
                return
            fault()
            self.supervise()
        self.allowed = self.plan.transfers

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

    def in_flight(self) -> list[dict[str, Any]]:
        """The sagas listed STARTED or COMPENSATING; workers that died are started again."""
        self.supervise()
        sagas: list[dict[str, Any]] = []
        for status in ("STARTED", "COMPENSATING"):
            code, body = self.get(f"/sagas?status={status}&limit=1000")
            if code != 200:
                raise OSError(f"GET /sagas?status={status}: HTTP {code}")
            sagas += body["sagas"]
        self.tracker.observe(sagas)
        return sagas

    def quiesce(self, timeout: float) -> None:
        """Wait until no saga is in flight and every consumer group has caught up (so
        every accepted request was read); a violation if not."""
        ending = wait_until_ended(
            self.in_flight,
            every_listed=True,
            timeout=min(timeout, max(1.0, self.time_left())),
            interval=1.0,
            settled=lambda: asyncio.run(groups_caught_up(self.access)),
        )
        if not ending.ended:
            self.not_quiet(ending, timeout)

    def not_quiet(self, ending: Ending, timeout: float) -> None:
        behind = asyncio.run(lagging(self.access))
        self.result.fail(
            "termination",
            f"after {timeout:.0f}s, {len(ending.in_flight)} sagas in flight "
            f"({ending.in_flight[:3]}); consumers behind: "
            + ("unknown" if behind is None else f"{len(behind)} partitions {behind[:4]}"),
        )

    def reconcile(self) -> Reconciliation:
        """Account for every accepted saga (listed, or expired), route what is wrong."""
        with self.lock:
            accepted, maybe = list(self.result.accepted), list(self.result.maybe)
        found = self.tracker.reconcile(self.get, accepted, maybe, self.unknown_outcomes)
        for violation in found.violations:
            check = "termination" if violation.startswith("termination") else "lost"
            self.result.fail(check, violation)
        if found.gone.get("unseen") or found.gone.get("STARTED"):
            self.diagnose_unseen(accepted, found)
        self.result.expired = found.expired
        self.result.listed_at_end = len(found.listed)
        self.result.gone = found.gone
        return found

    def diagnose_unseen(self, accepted: list[str], found: Reconciliation) -> None:
        """Of the accepted sagas gone unseen, how many have their request on the topic."""
        if found.violations:
            gone = {s for s in accepted if s not in found.listed and s not in self.tracker.status}
            on_topic = asyncio.run(requests_on_topic(self.access, gone))
            self.result.fail(
                "lost",
                f"{len(gone)} accepted sagas never read; {len(on_topic)} on the request topic",
            )

    def audit(self) -> dict[str, int]:
        report = self.cluster.audit(stuck_after_s=float("inf"))
        self.result.fail("money", *report.violations)
        if report.in_flight:
            self.result.fail("termination", f"{report.in_flight} sagas still in flight")
        return report.balances

    def replay_and_compare(self, before: Reconciliation, balances: dict[str, int]) -> None:
        """Replay old and new commands and replies; nothing may change."""
        self.result.replayed, self.result.replayed_astray = asyncio.run(
            replay(self.access, self.plan.replays, self.rng)
        )
        self.quiesce(timeout=120)
        after = self.reconcile()
        if self.audit() != balances:
            self.result.fail("replays", "at most once: replayed commands moved money")
        changed = [
            saga_id
            for saga_id, status in after.listed.items()
            if before.listed.get(saga_id, status) != status
        ]
        appeared = [s for s in after.listed if s not in before.listed]
        if changed or appeared:
            self.result.fail(
                "replays",
                f"replays changed {len(changed)} sagas' status ({changed[:3]}) and "
                f"made {len(appeared)} sagas ({appeared[:3]})",
            )

    def stay_quiet(self) -> None:
        """No load until ``plan.quiet_until_s`` into the run; workers that die are
        started again."""
        while self.now() < self.plan.quiet_until_s and self.time_left() > 0:
            self.supervise()
            time.sleep(0.5)

    def finish(self) -> None:
        self.fault("restart every worker (SIGTERM)")
        for role in list(self.cluster.workers):
            self.cluster.workers[role].stop()
            self.cluster.start_worker(role)
        self.wait_all_ready()
        self.quiesce(timeout=240)
        self.stop_watching.set()
        before = self.reconcile()
        balances = self.audit()
        self.replay_and_compare(before, balances)
        self.result.checkpoints.append(self.measure("end", self.accepted_count()))

    def run(self) -> ChaosResult:
        self.cluster.start()
        watcher = threading.Thread(target=self.watch, daemon=True)
        watcher.start()
        loader = threading.Thread(target=self.load, daemon=True)
        loader.start()
        try:
            self.inject_faults()
            loader.join(timeout=max(1.0, self.time_left()))
            if loader.is_alive() or self.accepted_count() < self.plan.transfers:
                self.result.fail("load", "the load did not finish in time")
            self.checkpoint_if_due()
            self.stay_quiet()
            self.finish()
        finally:
            self.stop_watching.set()
            self.collect()
            self.cluster.close()
        return self.result

    def collect(self) -> None:
        """What the tracker saw, into the result."""
        tracker, result = self.tracker, self.result
        with tracker.lock:
            result.statuses.update(tracker.status.get(s, "unseen") for s in result.accepted)
            result.errors = tracker.errors.copy()
            result.fail("monotonic", *tracker.violations)
            result.polls, result.details = tracker.polls, tracker.details
            result.longest_after_fault_s = tracker.longest_after_fault_s
            result.longest_saga = tracker.longest_saga
        result.seconds = self.now()

    def settings_rows(self) -> list[tuple[str, str]]:
        plan, settings = self.plan, self.settings
        policy = settings.retry_policy
        steps = max(len(workflow.steps) for workflow in WORKFLOWS.values())
        effective = max(settings.saga_retention_ms, policy.ledger_retention_ms(steps))
        return [
            ("transfers", f"{plan.transfers:,}"),
            (
                "faults planned",
                f"{plan.kills} SIGKILL of a worker, {plan.pauses} SIGSTOP, "
                f"{plan.broker_restarts} SIGKILL of the broker, {plan.replay_bursts} "
                f"replays of {BURST} recent messages",
            ),
            ("replays at the end", str(plan.replays)),
            *[(name, value) for name, value in sorted(plan.env().items())],
            ("effective saga retention", f"{effective / 1000:g} s"),
            ("MAX_IN_FLIGHT", str(settings.max_in_flight)),
            ("TOPIC_PARTITIONS", str(settings.partitions)),
            ("senders, rate", f"{plan.concurrency}, {plan.rate or 'unpaced'}"),
            ("checkpoints", ", ".join(f"{n:,}" for n in plan.checkpoint_counts())),
            ("seed, max seconds", f"{plan.seed}, {plan.max_seconds:g}"),
            ("quiet until", f"{plan.quiet_until_s:g} s into the run"),
            ("machine", f"{os.cpu_count()} cores, Python {platform.python_version()}"),
        ]


def run_chaos(
    root: Path, plan: ChaosPlan, report: Path | None = None, command: str = ""
) -> ChaosResult:
    """One run; with ``report``, its Markdown report is written there."""
    run = _Run(root, plan)
    result = run.run()
    if report is not None:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = render_markdown(result, run.settings_rows(), command or "chaos", when)
        report.write_text(text)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m saga_streams chaos", description=__doc__)
    defaults = ChaosPlan()
    for name in ("transfers", "kills", "pauses", "broker_restarts", "replay_bursts", "replays"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="transfers per second (0: no limit)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds)
    parser.add_argument(
        "--accounts", type=int, default=0, help="accounts of A and of B besides the defaults"
    )
    parser.add_argument("--saga-retention", type=float, default=None, help="SAGA_RETENTION, s")
    parser.add_argument(
        "--ledger-grace", type=float, default=defaults.ledger_grace_s, help="LEDGER_GRACE, s"
    )
    parser.add_argument(
        "--tombstone-retention", type=float, default=None, help="TOMBSTONE_RETENTION, s"
    )
    parser.add_argument(
        "--checkpoints", default="", help="accepted transfers to measure at: 10000,50000,100000"
    )
    parser.add_argument("--report", type=Path, default=None, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    counts = (args.kills, args.pauses, args.broker_restarts, args.replay_bursts, args.replays)
    if min(args.transfers, args.concurrency) < 1 or min(*counts, args.accounts) < 0:
        parser.error("--transfers and --concurrency must be at least 1; counts not negative")
    try:
        checkpoints = tuple(int(n) for n in args.checkpoints.split(",") if n.strip())
    except ValueError:
        parser.error("--checkpoints: whole numbers separated by commas")
    plan = ChaosPlan(
        transfers=args.transfers,
        kills=args.kills,
        pauses=args.pauses,
        broker_restarts=args.broker_restarts,
        replay_bursts=args.replay_bursts,
        replays=args.replays,
        concurrency=args.concurrency,
        rate=args.rate,
        seed=args.seed,
        max_seconds=args.max_seconds,
        accounts=args.accounts,
        saga_retention_s=args.saga_retention,
        ledger_grace_s=args.ledger_grace,
        tombstone_retention_s=args.tombstone_retention,
        checkpoints=checkpoints,
    )
    root = Path(tempfile.mkdtemp(prefix="saga-chaos-"))
    given = sys.argv[2:] if argv is None else argv
    command = "python -m saga_streams chaos " + shlex.join(given)
    try:
        result = run_chaos(root, plan, args.report, command.strip())
    finally:
        if args.keep:
            print(f"logs kept in {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(result.render())
    if args.report is not None:
        print(f"report written to {args.report}")
    return 0 if result.ok else 1
