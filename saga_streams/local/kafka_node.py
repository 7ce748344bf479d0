"""One KRaft node of a local cluster: broker and controller in one JVM, on the loopback.

A node writes its ``server.properties`` into its data directory on every start (ports
may change between runs), formats its storage the first time (``StorageTool format``,
static quorum), runs ``java -cp '<jars>/*' kafka.Kafka server.properties`` as a child
process in its own process group, and can be stopped cleanly, killed (for chaos tests)
and started again on the same data, which keeps its topics and messages.  A cluster
(:mod:`saga_streams.local.kafka`) is one or more of these sharing a cluster id and a
quorum; a node also starts alone, to bring one member of a running cluster back.

Layout of a node's data directory::

    server.properties   written on every start
    kraft/              log.dirs: topic partitions and the __cluster_metadata log
    scram-user          secure mode: which SCRAM user and password (a hash) the storage
                        was formatted with
    logs/server.log     the node's log at INFO (log4j, size-capped)
    logs/console.log    the JVM's stdout/stderr: WARN and above, JVM errors
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import signal
import subprocess
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from saga_streams.local.errors import LocalKafkaError, require_tool
from saga_streams.local.jars import KAFKA_VERSION, ensure_jars
from saga_streams.local.jvm import (
    file_size,
    heap_bytes,
    java_command,
    pdeathsig_prefix,
    read_from,
    run_tool,
    summary,
)
from saga_streams.local.ports import HOST, port_in_use, tcp_accepts
from saga_streams.local.probe import broker_ids
from saga_streams.local.secure import SECURITY_PROTOCOL, SecureListener

__all__ = ["KafkaNode", "new_cluster_id", "stop_nodes"]

#: StorageTool format is a short-lived JVM.
_FORMAT_TIMEOUT_S: Final = 120.0


def new_cluster_id() -> str:
    """A KRaft cluster id like ``kafka-storage.sh random-uuid`` prints.

    Kafka's ``Uuid``: 16 random bytes, URL-safe base64 without padding, never starting
    with ``-`` (it would read as a command-line flag).  Made here to spare a JVM start.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _write_properties(path: Path, props: Mapping[str, str], private: bool = False) -> None:
    """Write a Java .properties file (values escaped for backslashes and newlines);
    ``private``: readable by its owner only (it holds passwords)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    body = "".join(f"{escape(key)}={escape(value)}\n" for key, value in props.items())
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# Written by saga_streams.local.kafka_node on every start.\n" + body)
    if private:
        tmp.chmod(0o600)
    os.replace(tmp, path)


def _absolute(path: Path | None, default: Path) -> Path:
    """``path`` made absolute (``~`` expanded), or ``default`` if none was given."""
    return Path(path).expanduser().resolve() if path is not None else default


# Nodes still running when the interpreter exits normally (or on an uncaught exception /
# Ctrl-C) are stopped; see _stop_leftovers at the bottom of the module.
_RUNNING: weakref.WeakSet[KafkaNode] = weakref.WeakSet()


class KafkaNode:
    """One combined broker + controller KRaft node on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        *,
        node_id: int = 1,
        voters: str | None = None,
        cluster_id_path: Path | None = None,
        replication: int = 1,
        min_insync: int = 1,
        secure: SecureListener | None = None,
        log_path: Path | None = None,
        heap: str = "512m",
        version: str = KAFKA_VERSION,
        config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        """Describe a node; nothing starts before :meth:`start`.

        ``voters``: the static quorum, ``1@127.0.0.1:<c1>,2@...`` (default: this node
        alone).  ``cluster_id_path``: the file holding the cluster id, shared by the
        nodes of a cluster (default ``<data_dir>/cluster.id``).  ``replication`` and
        ``min_insync``: the defaults for topics and Kafka's internal topics.  ``secure``:
        serve clients over SASL_SSL with that material.  ``log_path`` receives the JVM's
        stdout/stderr (WARN and above, JVM errors); default ``<data_dir>/logs/console.log``.
        The INFO log is always ``<data_dir>/logs/server.log``.  ``config`` adds or
        overrides server.properties keys.  ``die_with_parent``: on Linux the node gets
        SIGTERM if the starting thread dies (see :func:`~.jvm.pdeathsig_prefix`).
        """
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        heap_bytes(heap)  # validate early
        self.node_id = node_id
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.voters = voters if voters is not None else f"{node_id}@{HOST}:{controller_port}"
        self.replication = replication
        self.min_insync = min_insync
        self.secure = secure
        self.heap = heap
        self.version = version
        self.logs_dir = self.data_dir / "logs"
        self.log_path = _absolute(log_path, default=self.logs_dir / "console.log")
        self.server_log = self.logs_dir / "server.log"
        self.properties_path = self.data_dir / "server.properties"
        self.kraft_dir = self.data_dir / "kraft"
        #: Written after a format that added the SCRAM user (secure mode).
        self.scram_marker = self.data_dir / "scram-user"
        self.cluster_id_path = _absolute(cluster_id_path, default=self.data_dir / "cluster.id")
        #: Seconds from start() to ready for the last successful start.
        self.last_start_seconds: float | None = None
        self._config = dict(config or {})
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offsets = (0, 0)

    # -- properties ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>``: this node alone, as a client's bootstrap server."""
        return f"{HOST}:{self.port}"

    @property
    def name(self) -> str:
        """How messages call it: ``Kafka broker`` alone, ``Kafka node 2`` in a cluster."""
        alone = self.voters == f"{self.node_id}@{HOST}:{self.controller_port}"
        return "Kafka broker" if alone else f"Kafka node {self.node_id}"

    @property
    def pid(self) -> int | None:
        """Process id of the node's JVM (also its process group id), if started."""
        return self._proc.pid if self._proc is not None else None

    def server_properties(self) -> dict[str, str]:
        """The node configuration written to ``server.properties`` on start."""
        client = SECURITY_PROTOCOL if self.secure is not None else "PLAINTEXT"
        props = {
            # KRaft combined mode: this node is both broker and controller, static quorum.
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": (
                f"{client}://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}"
            ),
            "advertised.listeners": f"{client}://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
            "log.dirs": str(self.kraft_dir),
            # Every topic is declared with its partition count (the workers create them
            # at start). Auto-creation would let a consumer's first metadata request make
            # a one-partition topic that no longer lines up with the tables' changelogs.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # One node: every replication factor / min ISR must be 1.  Three: a topic
            # survives one node down, and acks=all still needs two copies.
            "default.replication.factor": str(self.replication),
            "min.insync.replicas": str(self.min_insync),
            "offsets.topic.replication.factor": str(self.replication),
            "transaction.state.log.replication.factor": str(self.replication),
            "transaction.state.log.min.isr": str(self.min_insync),
            # After a SIGKILL the restarted node's controller still holds the dead
            # broker's registration and answers DUPLICATE_BROKER_REGISTRATION until that
            # session expires; the broker retries with a doubling backoff (0.1 s, 0.2 s,
            # ...).  Measured: default 9 s session -> ready ~14.5 s after kill(); 4 s ->
            # ~8.5 s (a clean stop() + start() takes ~2-3 s either way).  The 0.5 s
            # heartbeat (8 per window, a loopback call) makes a false fence unlikely, and
            # one would only last until the next heartbeat.  In a cluster the same
            # timeout fences a killed node (and takes it out of every ISR) within 4 s.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
            # Kafka's defaults, spelled out.
            "log.retention.hours": "168",
            "log.retention.check.interval.ms": "300000",
        }
        if self.secure is not None:
            props.update(self.secure.broker_properties(client))
        props.update(self._config)
        return props

    def is_formatted(self) -> bool:
        """True once ``StorageTool format`` has written ``meta.properties``."""
        return (self.kraft_dir / "meta.properties").is_file()

    def cluster_id(self) -> str:
        """The cluster id kept in :attr:`cluster_id_path` (created on first use)."""
        try:
            existing = self.cluster_id_path.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        cluster_id = new_cluster_id()
        self.cluster_id_path.parent.mkdir(parents=True, exist_ok=True)
        self.cluster_id_path.write_text(cluster_id + "\n")
        return cluster_id

    # -- lifecycle ----------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the node's process is alive (ready or not)."""
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        """The exit code once the process ended (None while it runs or never started)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self, timeout: float = 90) -> None:
        """Start this node alone and return once it serves clients and is unfenced.

        In a cluster of several nodes the others must be running (the quorum needs a
        majority); :meth:`LocalKafka.start` starts them all at once.  Raises
        :class:`LocalKafkaError` if a port is taken, ``java`` is missing, the jars cannot
        be fetched, formatting fails, or the node exits or is not ready within
        ``timeout`` seconds (it is then killed; the error quotes its log).
        """
        if self.is_running():
            raise LocalKafkaError(f"{self.name} on {self.bootstrap} is already running")
        self.check_ports()
        java = require_tool("java", "to run the Kafka broker (Java 17 works)")
        jars = ensure_jars(self.version)
        began = time.monotonic()
        deadline = began + timeout
        if self.secure is not None:
            self.secure.ensure()
            check_secure_storage([self])
        self.prepare()
        if not self.is_formatted():
            self.format(java, jars)
        self.launch(java, jars)
        try:
            wait_until(
                [self],
                lambda: self.node_id in self.broker_ids(self.bootstrap, deadline),
                deadline,
                f"{self.name} on {self.bootstrap} not ready after {timeout:g}s",
            )
        except BaseException:
            # Not ready (or interrupted, e.g. Ctrl-C): leave no half-started node.
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30) -> None:
        """Stop cleanly (SIGTERM, Kafka's controlled shutdown); SIGKILL after ``timeout``.

        A node of a cluster whose quorum is already gone cannot complete a controlled
        shutdown and waits for the SIGKILL; :meth:`LocalKafka.stop` stops all together.
        """
        stop_nodes([self], timeout)

    def kill(self) -> None:
        """SIGKILL the node at once (a crash, for chaos tests) and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.signal(signal.SIGKILL)
        proc.wait()
        _RUNNING.discard(self)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the node's process to end; its exit code (None if never started).

        Raises :class:`subprocess.TimeoutExpired` if it is still running after ``timeout``.
        """
        if self._proc is None:
            return None
        code = self._proc.wait(timeout)
        _RUNNING.discard(self)
        return code

    def log_tail(self, max_lines: int = 8) -> str:
        """Last meaningful lines the node logged since the latest start, on one line."""
        console_offset, server_offset = self._log_offsets
        lines = summary(read_from(self.log_path, console_offset), max_lines)
        if not lines:  # nothing on the console (WARN+): fall back to the INFO log
            lines = summary(read_from(self.server_log, server_offset), max_lines)
        return " | ".join(lines) if lines else "(the broker logged nothing)"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return (
            f"KafkaNode({self.node_id}, {self.bootstrap}, {self.data_dir}, {state}, pid={self.pid})"
        )

    # -- the steps of a start, also used by a cluster -------------------------------------

    def check_ports(self) -> None:
        """Refuse to start on a taken port, before touching the disk."""
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise LocalKafkaError(f"port {port} is already in use: is another Kafka running?")

    def prepare(self) -> None:
        """Create the node's folders and write its ``server.properties``."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _write_properties(
            self.properties_path, self.server_properties(), private=self.secure is not None
        )
        self._log_offsets = (file_size(self.log_path), file_size(self.server_log))

    def format(self, java: str, jars: Path) -> None:
        """``kafka-storage.sh format`` for a fresh data directory (static quorum)."""
        args = ["-t", self.cluster_id(), "-c", str(self.properties_path), "--ignore-formatted"]
        if self.secure is not None:
            args += self.secure.format_args()
        cmd = self._java(java, jars, "kafka.tools.StorageTool", "format", *args)
        run_tool(cmd, f"formatting {self.kraft_dir}", _FORMAT_TIMEOUT_S, cwd=self.data_dir)
        if not self.is_formatted():
            raise LocalKafkaError(f"formatting {self.kraft_dir} wrote no meta.properties")
        if self.secure is not None:
            self.scram_marker.write_text(self.secure.fingerprint() + "\n")

    def launch(self, java: str, jars: Path) -> None:
        """Spawn the node's JVM (formatted storage and written properties assumed)."""
        # The node's stdout/stderr go to the console log; the child keeps its own copy
        # of the descriptor, ours is closed right after the spawn.
        with self.log_path.open("ab") as console:
            prefix = pdeathsig_prefix() if self._die_with_parent else []
            self._proc = subprocess.Popen(
                [*prefix, *self._java(java, jars, "kafka.Kafka", str(self.properties_path))],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Own session, hence own process group: Ctrl-C in a terminal does not
                # reach the node directly, and stop()/kill() signal the whole group.
                start_new_session=True,
            )
        _RUNNING.add(self)

    def broker_ids(self, bootstrap: str, deadline: float) -> set[int]:
        """The brokers a client round trip through ``bootstrap`` lists (empty if none),
        speaking this node's client protocol."""
        if not any(tcp_accepts(int(a.rsplit(":", 1)[1])) for a in bootstrap.split(",")):
            return set()  # cheap TCP check first; the client round trip once one answers
        remaining = deadline - time.monotonic()
        security: Callable[[], Mapping[str, Any]] | None = (
            self.secure.client_kwargs if self.secure is not None else None
        )
        return broker_ids(bootstrap, max(0.5, min(3.0, remaining)), security)

    def signal(self, sig: signal.Signals) -> None:
        """Signal the node's process group (only while it is not reaped, so the id cannot
        have been reused)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _java(self, java: str, jars: Path, main_class: str, *args: str) -> list[str]:
        return java_command(java, jars, main_class, *args, heap=self.heap, logs_dir=self.logs_dir)


def check_secure_storage(nodes: Iterable[KafkaNode]) -> None:
    """Refuse secure mode on storage formatted without these SCRAM credentials (in
    plaintext mode, or before ``secure/`` was made again): the user is only added by a
    format, so such a broker would refuse every client."""
    for node in nodes:
        if node.secure is None or not node.is_formatted():
            continue
        try:
            formatted_with = node.scram_marker.read_text().strip()
        except FileNotFoundError:
            formatted_with = "no SCRAM user"
        if formatted_with != node.secure.fingerprint():
            raise LocalKafkaError(
                f"{node.kraft_dir} was formatted with other credentials ({formatted_with}) "
                f"than {node.secure.directory} holds: use another data directory for "
                "--secure, or remove this one"
            )


def wait_until(
    nodes: Iterable[KafkaNode], ready: Callable[[], bool], deadline: float, late: str
) -> None:
    """Poll ``ready`` until it holds; :class:`LocalKafkaError` quoting the node's log if
    one of ``nodes`` exits meanwhile, or ``late`` and the logs once ``deadline`` passes."""
    nodes = list(nodes)
    while True:
        for node in nodes:
            code = node.returncode()
            if code is not None:
                raise LocalKafkaError(
                    f"{node.name} exited with code {code} during start-up: "
                    f"{node.log_tail()} (logs in {node.logs_dir})"
                )
        if time.monotonic() >= deadline:
            tails = "; ".join(
                f"node {n.node_id}: {n.log_tail()}" if len(nodes) > 1 else n.log_tail()
                for n in nodes
            )
            logs = ", ".join(str(n.logs_dir) for n in nodes)
            raise LocalKafkaError(f"{late}: {tails} (logs in {logs})")
        if ready():
            return
        time.sleep(0.2)


def stop_nodes(nodes: Iterable[KafkaNode], timeout: float = 30, orphan_grace: float = 8) -> None:
    """Stop nodes cleanly, all at once (SIGTERM: Kafka's controlled shutdown), and
    SIGKILL those still running after ``timeout`` seconds.

    When nodes stop together, those that finish first take their controllers with them:
    once most of the quorum is gone, a node still in its controlled shutdown waits minutes
    for a controller that can no longer be elected.  Such orphans get ``orphan_grace``
    seconds (a quorum leader's own hand-over takes 5) and are then killed."""
    nodes = [node for node in nodes if node._proc is not None]
    for node in nodes:
        node.signal(signal.SIGTERM)
    began = time.monotonic()
    orphaned_at: float | None = None
    while True:
        running = [node for node in nodes if node._proc is not None and node._proc.poll() is None]
        now = time.monotonic()
        if len(nodes) > 1 and running and 2 * len(running) < len(nodes) and orphaned_at is None:
            orphaned_at = now
        overdue = now - began >= timeout
        orphans_overdue = orphaned_at is not None and now - orphaned_at >= orphan_grace
        if not running or overdue or orphans_overdue:
            break
        time.sleep(0.1)
    for node in nodes:
        proc = node._proc
        assert proc is not None
        if proc.poll() is None:
            node.signal(signal.SIGKILL)
        proc.wait()
        _RUNNING.discard(node)


def _stop_leftovers() -> None:
    with contextlib.suppress(Exception):
        stop_nodes(list(_RUNNING), timeout=15)


atexit.register(_stop_leftovers)
