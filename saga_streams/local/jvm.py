"""How a Kafka JVM is launched: its command line, its guard, and reading what it printed.

Every Java process of the local broker (the broker itself, ``StorageTool format``, and
``keytool`` for the TLS material) is started the way Kafka's ``kafka-run-class.sh``
would, without the shell scripts: ``java <heap> <GC flags> -Dlog4j.configuration=...
-cp '<jars>/*' <main class> <args>``.  The helpers here are shared by a node and by the
TLS maker, and turn a JVM's wordy output (stack traces, config dumps) into one line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from saga_streams.local.errors import LocalKafkaError
from saga_streams.local.jars import kafka_config_dir

__all__ = [
    "file_size",
    "heap_bytes",
    "java_command",
    "pdeathsig_prefix",
    "read_from",
    "run_tool",
    "summary",
]

# Indented lines are stack frames ("\tat x.y(Z.java:1)", "\t... 3 more") or the broker's
# config dump ("\tlog.dirs = ..."): they say little in a one-line error; the log records
# and exception lines around them say what went wrong.
_CONTINUATION: Final = re.compile(r"^\s")

_HEAP_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def heap_bytes(size: str) -> int:
    """Parse a JVM heap size such as ``512m`` or ``1g``."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip())
    if match is None:
        raise ValueError(f"invalid JVM heap size {size!r} (expected e.g. '512m' or '1g')")
    return int(match.group(1)) * _HEAP_UNITS[match.group(2).lower()]


def java_command(
    java: str, jars: Path, main_class: str, *args: str, heap: str, logs_dir: Path
) -> list[str]:
    """``java`` running ``main_class`` on the Kafka classpath, logging into ``logs_dir``."""
    log4j = kafka_config_dir() / "log4j.properties"
    if not log4j.is_file():
        raise LocalKafkaError(f"{log4j} not found (set SAGA_KAFKA_DIR to kafka/)")
    heap_min = "256m" if heap_bytes(heap) >= heap_bytes("256m") else heap
    return [
        java,
        f"-Xms{heap_min}",
        f"-Xmx{heap}",
        # The GC settings of Kafka's kafka-run-class.sh.
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration={log4j.as_uri()}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{jars}/*",  # Java expands the wildcard itself (to *.jar only)
        main_class,
        *args,
    ]


def run_tool(cmd: Sequence[str], what: str, timeout: float, cwd: Path | None = None) -> str:
    """Run a short-lived JVM tool to its end; its output, or :class:`LocalKafkaError`
    naming ``what`` failed with the gist of the output."""
    try:
        result = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LocalKafkaError(f"{what} took more than {timeout:.0f}s") from exc
    if result.returncode != 0:
        tail = " | ".join(summary(result.stdout, 6)) or "(no output)"
        raise LocalKafkaError(f"{what} failed (exit {result.returncode}): {tail}")
    return result.stdout


def pdeathsig_prefix() -> list[str]:
    """Command prefix that makes the kernel SIGTERM the broker when its parent dies.

    On Linux, util-linux ``setpriv --pdeathsig`` sets PR_SET_PDEATHSIG and then execs
    java (same pid), so even a SIGKILLed test run or CLI (e.g. a CI timeout) leaves no
    orphan java holding the port.  Done with a wrapper rather than ``preexec_fn``, which
    is unsafe in threaded programs.  Caveat of PR_SET_PDEATHSIG: it fires when the
    *thread* that started the broker exits, so start brokers from a long-lived thread (the
    main thread, as pytest and the CLI do) or pass ``die_with_parent=False``.  Without
    ``setpriv`` the broker simply has no such guard.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "SIGTERM", "--"] if setpriv else []


def read_from(path: Path, offset: int) -> str:
    """Text of ``path`` from ``offset`` (from the start if the file got shorter)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = offset if offset <= size else 0
            handle.seek(max(start, size - 256 * 1024))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def summary(text: str, max_lines: int) -> list[str]:
    """The last ``max_lines`` meaningful lines of a JVM's output (no stack frames)."""
    lines = [line.rstrip() for line in text.splitlines()]
    return [line for line in lines if line.strip() and not _CONTINUATION.match(line)][-max_lines:]
