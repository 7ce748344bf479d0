"""What a chaos run found, and what it cost: its result, its checkpoints, its report.

A long run (``make soak``) stops at a few numbers of accepted transfers (10,000, 50,000,
100,000) to measure each process's resident memory (``VmRSS``), each worker's tables on
disk (its RocksDB folder) and the broker's changelog topics on disk: with a saga retention
these level off instead of growing with every transfer, and the report shows whether
they did. :func:`render_markdown` writes the report (``RELIABILITY.md``);
:meth:`ChaosResult.render` is the short form printed at the end of every run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CHECKS",
    "ChaosResult",
    "Checkpoint",
    "changelog_bytes",
    "disk_bytes",
    "render_markdown",
    "rss_kib",
]

#: The checks a run reports on, in the order of the report.
CHECKS = {
    "lost": "No accepted saga lost (listed, or expired as GET /retention counts)",
    "monotonic": "A saga's status never goes back (every status read, all along)",
    "termination": "Every saga terminal once the run is quiet, every consumer caught up",
    "money": "Conservation, outcome consistency, no negative balance, partitioning (audit)",
    "replays": "Replayed commands and replies move no money and change no status",
    "load": "The planned load and faults within the time allowed",
}
#: Storage levels off if, between the last two checkpoints, it grows by at most this
#: share of the transfers' growth: x1.5 from 50,000 to 100,000 transfers, x1.17 from
#: 75,000 to 100,000. (Storage that grows with every transfer grows as they do.)
GROWTH_SHARE = 0.5


def growth_limit(transfers_ratio: float) -> float:
    """The most a figure may grow while the transfers grow ``transfers_ratio``-fold and
    still be said to level off."""
    return 1 + GROWTH_SHARE * (transfers_ratio - 1)


def rss_kib(pid: int | None) -> int | None:
    """A process's resident memory (``VmRSS`` in /proc), KiB; None if not running."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path``, as ``du`` counts them (files that vanish
    while counted, as compactions delete them, count as nothing)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def changelog_bytes(log_dirs: Iterable[Path]) -> int:
    """Bytes on disk of every ``*-changelog`` topic partition in a broker's log dirs."""
    total = 0
    for log_dir in log_dirs:
        if log_dir.is_dir():
            total += sum(
                disk_bytes(part)
                for part in log_dir.iterdir()
                if "-changelog-" in part.name and part.is_dir()
            )
    return total


@dataclass(frozen=True)
class Checkpoint:
    label: str
    accepted: int
    seconds: float  # since the run began
    rss_kib: Mapping[str, int | None]  # process -> resident memory
    table_bytes: Mapping[str, int]  # worker -> its data folder (RocksDB tables)
    changelog_bytes: int  # every *-changelog topic on the broker's disk
    kafka_bytes: int  # every topic on the broker's disk
    listed: int | None = None  # sagas GET /sagas counts
    expired: int | None = None  # sagas GET /retention counts as expired
    #: process -> the most resident memory sampled since the checkpoint before (every
    #: poll): unlike ``rss_kib``, not lowered by a restart just before the checkpoint.
    peak_rss_kib: Mapping[str, int] = field(default_factory=dict)
    #: The changelog topics on disk sampled at every poll since the checkpoint before:
    #: (the most, the mean). Compaction makes them a saw-tooth, so one reading at the
    #: checkpoint says more about where the cleaner was than about the trend.
    changelog_stretch: tuple[int, int] | None = None


@dataclass
class ChaosResult:
    accepted: list[str] = field(default_factory=list)
    #: POSTs that got no 202, by answer ("503", "429", "no answer").
    refused: Counter[str] = field(default_factory=Counter)
    #: Saga ids of POSTs answered 503 (their request may still have reached Kafka), and
    #: of 202s beyond the planned transfers: sagas that may exist, untracked.
    maybe: list[str] = field(default_factory=list)
    workflows: Counter[str] = field(default_factory=Counter)  # accepted, by workflow
    faults: list[tuple[float, str]] = field(default_factory=list)  # (time, what)
    #: Every accepted saga by the last status read ("unseen": never read).
    statuses: Counter[str] = field(default_factory=Counter)
    expired: dict[str, int] | None = None  # GET /retention at the end
    listed_at_end: int = 0
    gone: Counter[str] = field(default_factory=Counter)  # accepted, no longer listed
    errors: Counter[str] = field(default_factory=Counter)  # why steps failed, by kind
    checks: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in CHECKS})
    replayed: int = 0
    replayed_astray: int = 0  # of which produced onto a partition not their own
    longest_after_fault_s: float = 0.0
    longest_saga: str | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    polls: int = 0
    details: int = 0
    load_seconds: float = 0.0
    seconds: float = 0.0

    def fail(self, check: str, *violations: str) -> None:
        self.checks[check].extend(violations)

    @property
    def violations(self) -> list[str]:
        return [v for found in self.checks.values() for v in found]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def injected(self) -> list[tuple[float, str]]:
        """The faults the run caused (a worker's own exit, started again, is not one)."""
        return [(t, what) for t, what in self.faults if not what.startswith(_CONSEQUENCES)]

    def fault_kinds(self) -> Counter[str]:
        return Counter(_kind(what) for _, what in self.faults)

    def render(self) -> str:
        """The short form, printed at the end of every run."""
        kinds = self.fault_kinds()
        lines = [
            f"chaos: {len(self.accepted)} transfers accepted, POSTs refused: "
            f"{_counts(self.refused)}, {self.seconds:.0f}s",
            f"faults ({len(self.injected)} injected): "
            + ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())),
            *(
                [f"  {t:6.1f}s  {what}" for t, what in self.faults]
                if len(self.faults) <= 40
                else []
            ),
            f"sagas (last status read): {_counts(self.statuses)}",
            f"still listed at the end: {self.listed_at_end}; expired: "
            + ("no GET /retention" if self.expired is None else _counts(Counter(self.expired))),
            f"step errors (sagas still listed): {_counts(self.errors)}",
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
        return f"{what}: nothing changed" if not self.checks["replays"] else what


#: Faults that follow from others: a worker that exited on its own is started again.
_CONSEQUENCES = ("crash", "restart every worker")


def _kind(what: str) -> str:
    """``SIGKILL service-a`` -> ``SIGKILL worker``; ``SIGSTOP x for 3s`` -> ``SIGSTOP``."""
    words = what.split(" ")
    if words[0] == "SIGKILL":
        return "SIGKILL broker" if words[1].startswith("broker") else "SIGKILL worker"
    return "restart every worker" if what.startswith("restart every worker") else words[0]


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counter.items())) or "none"


def _mib(value: int | None, scale: int = 1024 * 1024) -> str:
    return "-" if value is None else f"{value / scale:,.1f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _rss(point: Checkpoint, process: str) -> str:
    now = _mib(point.rss_kib.get(process), 1024)
    peak = point.peak_rss_kib.get(process)
    return now if peak is None else f"{now} ({_mib(peak, 1024)})"


def _checkpoint_tables(points: Sequence[Checkpoint]) -> list[str]:
    """Memory and storage at each checkpoint, as two Markdown tables."""
    processes = sorted({name for p in points for name in p.rss_kib})
    workers = sorted({name for p in points for name in p.table_bytes})
    lines = [
        "RSS (MiB) at each checkpoint, and in brackets the peak sampled since the one before:",
        "",
        "| checkpoint | accepted | at | sagas listed | expired | "
        + " | ".join(f"RSS {name}" for name in processes)
        + " |",
        "|---" * (5 + len(processes)) + "|",
    ]
    for p in points:
        lines.append(
            f"| {p.label} | {p.accepted:,} | {_duration(p.seconds)} | "
            f"{'-' if p.listed is None else f'{p.listed:,}'} | "
            f"{'-' if p.expired is None else f'{p.expired:,}'} | "
            + " | ".join(_rss(p, name) for name in processes)
            + " |"
        )
    lines += [
        "",
        "Storage (MiB) at each checkpoint; for the changelogs, in brackets the most and the "
        "mean sampled at every poll since the one before (compaction makes them a "
        "saw-tooth; levelling off is judged on the most):",
        "",
        "| checkpoint | "
        + " | ".join(f"tables {name} (MiB)" for name in workers)
        + " | changelog topics (MiB) | all topics (MiB) |",
        "|---" * (3 + len(workers)) + "|",
    ]
    for p in points:
        lines.append(
            f"| {p.label} | "
            + " | ".join(_mib(p.table_bytes.get(name)) for name in workers)
            + f" | {_changelog_cell(p)} | {_mib(p.kafka_bytes)} |"
        )
    return lines


def _changelogs(point: Checkpoint) -> int:
    """The changelogs' bytes at ``point``: the most sampled since the checkpoint before,
    where sampled (the disk they need), else the reading at the checkpoint."""
    return point.changelog_bytes if point.changelog_stretch is None else point.changelog_stretch[0]


def _changelog_cell(point: Checkpoint) -> str:
    now = _mib(point.changelog_bytes)
    if point.changelog_stretch is None:
        return now
    peak, mean = point.changelog_stretch
    return f"{now} ({_mib(peak)}, {_mib(mean)})"


def _memory(point: Checkpoint) -> int:
    """Every process's resident memory at ``point``: the peaks where sampled, since a
    worker restarted just before a checkpoint reads low there."""
    sampled: Mapping[str, int | None] = point.peak_rss_kib or point.rss_kib
    return sum(kib or 0 for kib in sampled.values())


def growth(points: Sequence[Checkpoint]) -> dict[str, float]:
    """Bytes and memory at the last load checkpoint over the one before (1.0: flat; 2.0:
    doubled, as with no retention when the transfers double)."""
    load = [p for p in points if p.label != "end"]
    if len(load) < 2:
        return {}
    before, last = load[-2], load[-1]

    def ratio(a: float, b: float) -> float:
        return b / a if a > 0 else float("inf")

    rss_before, rss_last = _memory(before), _memory(last)
    return {
        "tables": ratio(sum(before.table_bytes.values()), sum(last.table_bytes.values())),
        "changelogs": ratio(_changelogs(before), _changelogs(last)),
        "memory": ratio(rss_before, rss_last),
    }


def _growth_lines(points: Sequence[Checkpoint]) -> list[str]:
    ratios = growth(points)
    if not ratios:
        return ["Too few checkpoints to tell whether storage levels off."]
    load = [p for p in points if p.label != "end"]
    transfers = load[-1].accepted / max(1, load[-2].accepted)
    limit = growth_limit(transfers)
    lines = [
        f"From {load[-2].accepted:,} to {load[-1].accepted:,} accepted transfers "
        f"(x{transfers:.2f}; levelling off means growing at most x{limit:.2f}):",
        "",
    ]
    for what, ratio in ratios.items():
        verdict = "levels off" if ratio <= limit else "⚠️ still grows"
        lines.append(f"- {what}: x{ratio:.2f}, {verdict}")
    if ratios["changelogs"] > limit:
        lines += [
            "",
            "A changelog's removed sagas and ledger entries free space only once Kafka "
            "compacts the topic. The workers roll a changelog segment every 10 minutes or "
            "16 MiB, and the cleaner compacts closed segments once a quarter of a log is "
            "dirty; the tombstones themselves stay for delete.retention.ms after that "
            "(TOMBSTONE_RETENTION, a day by default), so within a run shorter than that a "
            "changelog still grows by a tombstone for each removal.",
        ]
    return lines


def _summary(result: ChaosResult) -> list[str]:
    throughput = len(result.accepted) / result.load_seconds if result.load_seconds else 0.0
    longest = f"{result.longest_after_fault_s:.1f} s" + (
        f" (saga `{result.longest_saga}`)" if result.longest_saga else ""
    )
    return [
        "| | |",
        "|---|---|",
        f"| transfers accepted (202) | {len(result.accepted):,} ({_counts(result.workflows)}) |",
        f"| POSTs refused | {_counts(result.refused)} |",
        f"| faults injected | {len(result.injected):,} |",
        f"| run time | {_duration(result.seconds)} (load {_duration(result.load_seconds)}, "
        f"{throughput:,.0f} accepted/s) |",
        f"| longest time to terminal after a fault | {longest} |",
        "| sagas expired during the run | "
        + ("no GET /retention" if result.expired is None else _counts(Counter(result.expired)))
        + " |",
        f"| sagas still listed at the end | {result.listed_at_end:,} |",
        f"| accepted sagas by last status read | {_counts(result.statuses)} |",
        f"| replayed commands and replies | {result.replayed:,} "
        f"({result.replayed_astray:,} onto another partition) |",
        f"| status polls, saga details read | {result.polls:,}, {result.details:,} |",
    ]


def render_markdown(
    result: ChaosResult, settings: Sequence[tuple[str, str]], command: str, when: str
) -> str:
    """The report of a run, in Markdown: ``RELIABILITY.md`` for ``make soak``."""
    verdict = (
        "✅ every invariant holds" if result.ok else f"❌ {len(result.violations)} violation(s)"
    )
    lines = [
        f"# Reliability: {len(result.accepted):,} transfers under {len(result.injected):,} faults",
        "",
        f"Written by `{command}` on {when}. Result: **{verdict}**.",
        "",
        *_summary(result),
        "",
        "## Faults",
        "",
        "| kind | count |",
        "|---|---|",
        *[f"| {kind} | {n:,} |" for kind, n in sorted(result.fault_kinds().items())],
        "",
        "## Invariants",
        "",
        "| check | result |",
        "|---|---|",
        *[
            f"| {text} | "
            + ("✅" if not result.checks[key] else "❌ " + "; ".join(result.checks[key][:5]))
            + " |"
            for key, text in CHECKS.items()
        ],
        "",
        "## Memory and storage",
        "",
        *_checkpoint_tables(result.checkpoints),
        "",
        *_growth_lines(result.checkpoints),
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {name} | `{value}` |" for name, value in settings],
        "",
        "## Fault log",
        "",
        "<details><summary>Every fault, seconds after the start</summary>",
        "",
        *[f"- {t:7.1f} s: {what}" for t, what in result.faults],
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
