"""A real single-node Apache Kafka broker (KRaft) for development and tests.

No Docker and no release tarball: the broker's jars come from Maven Central through
Maven (``kafka/pom.xml`` lists ``org.apache.kafka:kafka_2.13`` plus the SLF4J binding the
tarball would add), are cached outside the git tree, and the broker runs as a plain
``java -cp '<jars>/*' kafka.Kafka server.properties`` child process.

- :func:`ensure_jars` fetches the jars once per Kafka version (``mvn`` is only needed then).
- :class:`LocalKafka` writes a single-node KRaft ``server.properties`` into a data
  directory, formats the storage the first time, starts the broker and returns only once a
  Kafka client has done a real metadata round trip with it.  It can be stopped cleanly
  (:meth:`LocalKafka.stop`), killed (:meth:`LocalKafka.kill`, for chaos tests) and started
  again on the same data directory, which keeps its topics and messages.
- :func:`main` is a foreground CLI: ``python -m saga_streams.local.kafka``.

Layout of a data directory::

    server.properties   written on every start (ports may change between runs)
    cluster.id          the KRaft cluster id, kept so that restarts reuse the data
    kraft/              log.dirs: topic partitions and the __cluster_metadata log
    logs/server.log     the broker's log at INFO (log4j, size-capped)
    logs/console.log    the JVM's stdout/stderr: WARN and above, JVM errors

Kafka 3.9 is used on purpose: it still accepts every old protocol version, which is the
safest choice for aiokafka 0.14 / faust-streaming 0.15 (Kafka 4.0 removed old versions,
KIP-896).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Final, Self

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "LocalKafkaError",
    "cache_root",
    "ensure_jars",
    "free_port",
    "free_ports",
    "jars_dir",
    "kafka_config_dir",
    "main",
    "new_cluster_id",
    "port_in_use",
]

#: The Kafka release whose jars are fetched (org.apache.kafka:kafka_2.13:<version>).
KAFKA_VERSION: Final = "3.9.1"

#: Where ``pom.xml`` and ``log4j.properties`` live: ``<repo>/kafka`` unless overridden.
_REPO_KAFKA_DIR: Final = Path(__file__).resolve().parents[2] / "kafka"

#: Written into the jars directory last: its presence (with the right content) means the
#: directory is complete.  Java's ``dir/*`` classpath only picks ``*.jar`` files.
_MARKER: Final = ".complete"

#: Generous: a cold resolution of the ~57 jars (~46 MB) takes seconds on a good link.
_MVN_TIMEOUT_S: Final = 900.0

#: StorageTool format is a short-lived JVM.
_FORMAT_TIMEOUT_S: Final = 120.0

_HOST: Final = "127.0.0.1"

# Indented lines are stack frames ("\tat x.y(Z.java:1)", "\t... 3 more") or the broker's
# config dump ("\tlog.dirs = ..."): they say little in a one-line error; the log records
# and exception lines around them say what went wrong.
_CONTINUATION: Final = re.compile(r"^\s")
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
# Maven's generic advice printed after every failure.
_MVN_BOILERPLATE: Final = re.compile(
    r"^\[ERROR\]\s*($|To see the full|Re-run Maven|For more information|\[Help \d+\])"
)


class LocalKafkaError(RuntimeError):
    """The local broker could not be provisioned, started or stopped."""


# --------------------------------------------------------------------------------------
# Jars from Maven Central
# --------------------------------------------------------------------------------------


def kafka_config_dir() -> Path:
    """Directory holding ``pom.xml`` and ``log4j.properties`` (env ``SAGA_KAFKA_DIR``)."""
    override = os.environ.get("SAGA_KAFKA_DIR")
    return Path(override).expanduser().resolve() if override else _REPO_KAFKA_DIR


def cache_root() -> Path:
    """``${SAGA_KAFKA_CACHE:-~/.cache/saga_streams}``: outside git, shared by checkouts."""
    override = os.environ.get("SAGA_KAFKA_CACHE")
    root = Path(override) if override else Path.home() / ".cache" / "saga_streams"
    return root.expanduser().resolve()


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    """The classpath directory for one Kafka version: ``<cache>/kafka-<version>/libs``."""
    return cache_root() / f"kafka-{version}" / "libs"


def _fingerprint(version: str, pom: Path) -> str:
    """Identifies what a jars directory was built from (version and pom content).

    Editing the pom (say, another logging binding) therefore refreshes the cache.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    return f"kafka {version} pom-sha256 {digest}\n"


def _is_complete(libs: Path, fingerprint: str) -> bool:
    try:
        return (libs / _MARKER).read_text() == fingerprint
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that concurrent processes run mvn only once."""
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _which(tool: str, purpose: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise LocalKafkaError(f"`{tool}` is not on PATH: it is needed {purpose}")
    return found


def _mvn_error_summary(output: str, max_lines: int = 4) -> str:
    """The informative tail of mvn's output, on one line."""
    lines = [_ANSI.sub("", line).strip() for line in output.splitlines()]
    useful = [line for line in lines if line and not _MVN_BOILERPLATE.match(line)]
    return " | ".join(useful[-max_lines:]) or "(no output)"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return a complete classpath directory for Kafka ``version``, fetching it if needed.

    A complete directory (marker file present and matching) is returned at once, without
    needing ``mvn``.  Otherwise ``mvn dependency:copy-dependencies`` fills a temporary
    directory next to the target, which is then renamed into place, so that an
    interrupted download never leaves a half-filled classpath behind.
    """
    pom = kafka_config_dir() / "pom.xml"
    if not pom.is_file():
        raise LocalKafkaError(f"{pom} not found (set SAGA_KAFKA_DIR to the kafka/ directory)")
    fingerprint = _fingerprint(version, pom)
    target = jars_dir(version)
    if _is_complete(target, fingerprint):
        return target

    mvn = _which("mvn", "once, to fetch the Kafka jars from Maven Central")
    _which("java", "to run Maven and the Kafka broker")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / ".lock"):
        if _is_complete(target, fingerprint):  # another process just finished it
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".libs-", dir=target.parent))
        try:
            cmd = [
                mvn,
                "-B",  # batch mode: no progress bars, no prompts
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
                # A -D user property overrides the pom's <kafka.version> property.
                f"-Dkafka.version={version}",
            ]
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=_MVN_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise LocalKafkaError(
                    f"mvn did not finish fetching Kafka {version} jars within {_MVN_TIMEOUT_S:.0f}s"
                ) from exc
            if result.returncode != 0:
                raise LocalKafkaError(
                    f"mvn failed (exit {result.returncode}) fetching Kafka {version} jars: "
                    f"{_mvn_error_summary(result.stdout)}"
                )
            if not (tmp / f"kafka_2.13-{version}.jar").is_file():
                raise LocalKafkaError(
                    f"mvn succeeded but kafka_2.13-{version}.jar is missing from {tmp}"
                )
            (tmp / _MARKER).write_text(fingerprint)
            if target.exists():  # stale or incomplete (no marker): replace it
                shutil.rmtree(target)
            os.rename(tmp, target)  # atomic on the same filesystem
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------


def free_ports(count: int, host: str = _HOST) -> list[int]:
    """``count`` distinct TCP ports that are free right now on ``host``.

    All sockets are held open until every port is chosen, so the ports differ from one
    another.  As with any such helper, another process may take a port before you do.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = _HOST) -> int:
    """A TCP port that is free right now on ``host`` (for tests)."""
    return free_ports(1, host)[0]


def port_in_use(port: int, host: str = _HOST) -> bool:
    """True if a listening socket already holds ``host:port``.

    SO_REUSEADDR is set, as the JVM does for server sockets: connections of a previous
    broker lingering in TIME_WAIT do not count, a listening socket (also one bound to the
    wildcard address) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _tcp_accepts(port: int, host: str = _HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Readiness: a real Kafka round trip
# --------------------------------------------------------------------------------------


async def _metadata_round_trip(bootstrap: str, timeout: float) -> bool:
    """True if the broker answers ApiVersions + Metadata and lists itself as a broker.

    A KRaft broker binds its port early but only processes client requests once it has
    caught up with the metadata log and is unfenced, so a TCP connect alone proves little.
    """
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="saga-streams-local-kafka-probe",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return len(client.cluster.brokers()) > 0
    except (TimeoutError, KafkaError, OSError):
        return False
    finally:
        await client.close()


def _client_probe(bootstrap: str, timeout: float = 3.0) -> bool:
    """Run :func:`_metadata_round_trip` on a private event loop in a helper thread.

    A thread keeps :meth:`LocalKafka.start` usable from sync code and from code that
    already runs an event loop (where ``asyncio.run`` is not allowed).
    """
    outcome: list[bool] = []

    def run() -> None:
        outcome.append(asyncio.run(_metadata_round_trip(bootstrap, timeout)))

    thread = threading.Thread(target=run, name="local-kafka-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return bool(outcome and outcome[0])


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def new_cluster_id() -> str:
    """A KRaft cluster id like ``kafka-storage.sh random-uuid`` prints.

    Kafka's ``Uuid``: 16 random bytes, URL-safe base64 without padding, never starting
    with ``-`` (it would read as a command-line flag).  Made here to spare a JVM start.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


_HEAP_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _heap_bytes(size: str) -> int:
    """Parse a JVM heap size such as ``512m`` or ``1g``."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip())
    if match is None:
        raise ValueError(f"invalid JVM heap size {size!r} (expected e.g. '512m' or '1g')")
    return int(match.group(1)) * _HEAP_UNITS[match.group(2).lower()]


def _read_from(path: Path, offset: int) -> str:
    """Text of ``path`` from ``offset`` (from the start if the file got shorter)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = offset if offset <= size else 0
            handle.seek(max(start, size - 256 * 1024))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _summary(text: str, max_lines: int) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    return [line for line in lines if line.strip() and not _CONTINUATION.match(line)][-max_lines:]


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    """Write a Java .properties file (values escaped for backslashes and newlines)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    body = "".join(f"{escape(key)}={escape(value)}\n" for key, value in props.items())
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# Written by saga_streams.local.kafka on every start.\n" + body)
    os.replace(tmp, path)


def _pdeathsig_prefix() -> list[str]:
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


# Brokers still running when the interpreter exits normally (or on an uncaught
# exception / Ctrl-C) are stopped; see _stop_leftovers at the bottom of the module.
_RUNNING: weakref.WeakSet[LocalKafka] = weakref.WeakSet()


# --------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------


class LocalKafka:
    """One single-node KRaft broker (combined broker + controller) on the loopback.

    >>> with LocalKafka(Path(".data/kafka")) as kafka:   # doctest: +SKIP
    ...     print(kafka.bootstrap)
    127.0.0.1:9092
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        log_path: Path | None = None,
        heap: str = "512m",
        *,
        version: str = KAFKA_VERSION,
        config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        """Describe a broker; nothing starts before :meth:`start`.

        ``log_path`` receives the JVM's stdout/stderr (WARN and above, JVM errors);
        default ``<data_dir>/logs/console.log``.  The INFO log is always
        ``<data_dir>/logs/server.log``.  ``config`` adds or overrides server.properties
        keys.  ``die_with_parent``: on Linux the broker gets SIGTERM if the starting
        thread dies (see _pdeathsig_prefix).
        """
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        _heap_bytes(heap)  # validate early
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.version = version
        self.logs_dir = self.data_dir / "logs"
        self.log_path = (
            Path(log_path).expanduser().resolve()
            if log_path is not None
            else self.logs_dir / "console.log"
        )
        self.server_log = self.logs_dir / "server.log"
        self.properties_path = self.data_dir / "server.properties"
        self.kraft_dir = self.data_dir / "kraft"
        self.cluster_id_path = self.data_dir / "cluster.id"
        #: Seconds from start() to ready for the last successful start.
        self.last_start_seconds: float | None = None
        self._config = dict(config or {})
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offsets = (0, 0)

    # -- properties ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` for clients: ``127.0.0.1:<port>``."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker JVM (also its process group id), if started."""
        return self._proc.pid if self._proc is not None else None

    def server_properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties`` on start."""
        props = {
            # Single-node KRaft: this node is both broker and controller, static quorum.
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{_HOST}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{_HOST}:{self.port},CONTROLLER://{_HOST}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.kraft_dir),
            # Every topic is declared with its partition count (the workers create them
            # at start). Auto-creation would let a consumer's first metadata request make
            # a one-partition topic that no longer lines up with the tables' changelogs.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # One broker: every replication factor / min ISR must be 1.
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # After a SIGKILL the restarted node's controller still holds the dead
            # broker's registration and answers DUPLICATE_BROKER_REGISTRATION until that
            # session expires; the broker retries with a doubling backoff (0.1 s, 0.2 s,
            # ...).  Measured: default 9 s session -> ready ~14.5 s after kill(); 4 s ->
            # ~8.5 s (a clean stop() + start() takes ~2-3 s either way).  The 0.5 s
            # heartbeat (8 per window, a loopback call) makes a false fence unlikely, and
            # one would only last until the next heartbeat.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
            # Kafka's defaults, spelled out.
            "log.retention.hours": "168",
            "log.retention.check.interval.ms": "300000",
        }
        props.update(self._config)
        return props

    def is_formatted(self) -> bool:
        """True once ``StorageTool format`` has written ``meta.properties``."""
        return (self.kraft_dir / "meta.properties").is_file()

    def cluster_id(self) -> str:
        """The cluster id kept in ``<data_dir>/cluster.id`` (created on first use)."""
        try:
            existing = self.cluster_id_path.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        cluster_id = new_cluster_id()
        self.cluster_id_path.write_text(cluster_id + "\n")
        return cluster_id

    # -- lifecycle ----------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the broker process is alive (ready or not)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90) -> None:
        """Start the broker and return once it serves clients.

        Raises :class:`LocalKafkaError` if a port is taken, ``java`` is missing, the jars
        cannot be fetched, formatting fails, or the broker exits or is not ready within
        ``timeout`` seconds (the broker is then killed; the error quotes its log).
        """
        if self.is_running():
            raise LocalKafkaError(f"Kafka on {self.bootstrap} is already running")
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise LocalKafkaError(f"port {port} is already in use: is another Kafka running?")
        java = _which("java", "to run the Kafka broker (Java 17 works)")
        jars = ensure_jars(self.version)

        began = time.monotonic()
        deadline = began + timeout
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _write_properties(self.properties_path, self.server_properties())
        self._log_offsets = (_file_size(self.log_path), _file_size(self.server_log))
        if not self.is_formatted():
            self._format(java, jars)

        # The broker's stdout/stderr go to the console log; the child keeps its own copy
        # of the descriptor, ours is closed right after the spawn.
        with self.log_path.open("ab") as console:
            prefix = _pdeathsig_prefix() if self._die_with_parent else []
            self._proc = subprocess.Popen(
                [
                    *prefix,
                    *self._java_command(java, jars, "kafka.Kafka", str(self.properties_path)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Own session, hence own process group: Ctrl-C in a terminal does not
                # reach the broker directly, and stop()/kill() signal the whole group.
                start_new_session=True,
            )
        _RUNNING.add(self)
        try:
            self._wait_ready(deadline, timeout)
        except BaseException:
            # Not ready (or interrupted, e.g. Ctrl-C): leave no half-started broker.
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30) -> None:
        """Stop cleanly (SIGTERM, Kafka's controlled shutdown); SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        _RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for chaos tests) and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
        proc.wait()
        _RUNNING.discard(self)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the broker process to end; its exit code (None if never started).

        Raises :class:`subprocess.TimeoutExpired` if it is still running after ``timeout``.
        """
        if self._proc is None:
            return None
        code = self._proc.wait(timeout)
        _RUNNING.discard(self)
        return code

    def log_tail(self, max_lines: int = 8) -> str:
        """Last meaningful lines the broker logged since the latest start, on one line."""
        console_offset, server_offset = self._log_offsets
        lines = _summary(_read_from(self.log_path, console_offset), max_lines)
        if not lines:  # nothing on the console (WARN+): fall back to the INFO log
            lines = _summary(_read_from(self.server_log, server_offset), max_lines)
        return " | ".join(lines) if lines else "(the broker logged nothing)"

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalKafka({self.bootstrap}, {self.data_dir}, {state}, pid={self.pid})"

    # -- internals ----------------------------------------------------------------------

    def _java_command(self, java: str, jars: Path, main_class: str, *args: str) -> list[str]:
        log4j = kafka_config_dir() / "log4j.properties"
        if not log4j.is_file():
            raise LocalKafkaError(f"{log4j} not found (set SAGA_KAFKA_DIR to kafka/)")
        heap_min = "256m" if _heap_bytes(self.heap) >= _heap_bytes("256m") else self.heap
        return [
            java,
            f"-Xms{heap_min}",
            f"-Xmx{self.heap}",
            # The GC settings of Kafka's kafka-run-class.sh.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{jars}/*",  # Java expands the wildcard itself (to *.jar only)
            main_class,
            *args,
        ]

    def _format(self, java: str, jars: Path) -> None:
        """``kafka-storage.sh format`` for a fresh data directory (static quorum)."""
        cmd = self._java_command(
            java,
            jars,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id(),
            "-c",
            str(self.properties_path),
            "--ignore-formatted",
        )
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=self.data_dir,
                timeout=_FORMAT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(
                f"formatting {self.kraft_dir} took more than {_FORMAT_TIMEOUT_S:.0f}s"
            ) from exc
        if result.returncode != 0 or not self.is_formatted():
            tail = " | ".join(_summary(result.stdout, 6)) or "(no output)"
            raise LocalKafkaError(
                f"formatting {self.kraft_dir} failed (exit {result.returncode}): {tail}"
            )

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalKafkaError(
                    f"Kafka broker exited with code {code} during start-up: "
                    f"{self.log_tail()} (logs in {self.logs_dir})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalKafkaError(
                    f"Kafka broker on {self.bootstrap} not ready after {timeout:g}s: "
                    f"{self.log_tail()} (logs in {self.logs_dir})"
                )
            # Cheap TCP check first; the client round trip only once the port answers.
            if _tcp_accepts(self.port) and _client_probe(
                self.bootstrap, timeout=max(0.5, min(3.0, remaining))
            ):
                return
            time.sleep(0.2)

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the broker's process group (only while it is not reaped, so the id
        cannot have been reused)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def _stop_leftovers() -> None:
    for kafka in list(_RUNNING):
        with contextlib.suppress(Exception):
            kafka.stop(timeout=15)


atexit.register(_stop_leftovers)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


class _StopRequested(BaseException):
    """Raised by the SIGINT/SIGTERM handler to leave the foreground wait."""


def _request_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signum)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise LocalKafkaError(f"{name}={raw!r} is not a port number") from None


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground until SIGINT/SIGTERM; 0 on a clean stop, 1 on error."""
    parser = argparse.ArgumentParser(
        prog="python -m saga_streams.local.kafka",
        description=(
            "Run a single-node Apache Kafka broker (KRaft) in the foreground, from jars "
            "fetched by Maven. Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT "
            "(KAFKA_PORT+1), DATA_DIR (.data; the broker uses DATA_DIR/kafka), "
            "SAGA_KAFKA_CACHE (~/.cache/saga_streams)."
        ),
    )
    parser.add_argument("--port", type=int, default=None, help="client port")
    parser.add_argument("--controller-port", type=int, default=None, help="KRaft port")
    parser.add_argument("--data-dir", type=Path, default=None, help="broker data dir")
    args = parser.parse_args(argv)

    kafka: LocalKafka | None = None
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        port = args.port if args.port is not None else _env_int("KAFKA_PORT", 9092)
        controller_port = (
            args.controller_port
            if args.controller_port is not None
            else _env_int("KAFKA_CONTROLLER_PORT", port + 1)
        )
        data_dir = (
            args.data_dir
            if args.data_dir is not None
            else Path(os.environ.get("DATA_DIR") or ".data") / "kafka"
        )
        kafka = LocalKafka(data_dir, port=port, controller_port=controller_port)
        kafka.start()  # fetches the jars first if they are not cached yet
        print(
            f"kafka ready on {kafka.bootstrap} (Kafka {kafka.version}, data in {kafka.data_dir})",
            flush=True,
        )
        while kafka.is_running():
            time.sleep(0.5)
        raise LocalKafkaError(
            f"Kafka broker exited unexpectedly with code {kafka.wait()}: {kafka.log_tail()}"
        )
    except _StopRequested:
        return 0
    except (LocalKafkaError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # Ignore further signals while stopping: stop() falls back to SIGKILL itself.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if kafka is not None:
            kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
