"""A real Apache Kafka cluster (KRaft) on the loopback, for development and tests.

:class:`LocalKafka` runs one node by default, or several (``brokers=3``), each broker
and controller in one JVM (:mod:`~saga_streams.local.kafka_node`), sharing a cluster id
and a static quorum.  It starts them together and returns only once a Kafka client's
metadata round trip lists every broker; it can be stopped cleanly, killed (for chaos
tests) and started again on the same data directory, which keeps its topics and
messages.  Each node can also be killed and started again alone (:attr:`LocalKafka.nodes`).
``secure=True`` serves clients over SASL_SSL (SCRAM-SHA-512) with a CA and certificate
made on the spot (:mod:`~saga_streams.local.secure`).  :meth:`LocalKafka.client_env` is
the environment a worker needs to use the cluster.

:func:`main` is the foreground CLI: ``python -m saga_streams kafka [--brokers N]
[--secure]`` (``make kafka``).

Layout of a data directory with one node (as it always was)::

    cluster.id          the KRaft cluster id, kept so that restarts reuse the data
    server.properties, kraft/, logs/     the node's (see kafka_node)
    secure/             CA, certificate, SCRAM password (secure mode only)

With several nodes, ``cluster.id`` and ``secure/`` stay at the top and each node has its
own ``node-1/``, ``node-2/``, ... holding its ``server.properties``, ``kraft/``, ``logs/``.

The jars come from Maven Central (:mod:`~saga_streams.local.jars`), Kafka 3.9 on
purpose: it still accepts every old protocol version, which is the safest choice for
aiokafka 0.14 / faust-streaming 0.15 (Kafka 4.0 removed old versions, KIP-896).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, NoReturn, Self

from saga_streams.local.errors import LocalKafkaError, require_tool
from saga_streams.local.jars import (
    KAFKA_VERSION,
    cache_root,
    ensure_jars,
    jars_dir,
    kafka_config_dir,
)
from saga_streams.local.kafka_node import (
    KafkaNode,
    check_secure_storage,
    new_cluster_id,
    stop_nodes,
    wait_until,
)
from saga_streams.local.ports import HOST, free_port, free_ports, port_in_use
from saga_streams.local.secure import SecureListener

# The names this module always offered stay importable from here.
__all__ = [
    "KAFKA_VERSION",
    "MAX_BROKERS",
    "KafkaNode",
    "LocalKafka",
    "LocalKafkaError",
    "broker_count",
    "cache_root",
    "default_data_root",
    "ensure_jars",
    "env_int",
    "exports",
    "free_port",
    "free_ports",
    "jars_dir",
    "kafka_config_dir",
    "main",
    "new_cluster_id",
    "port_in_use",
    "ready_message",
]

#: Every node is a voter of the static quorum; a handful is plenty on one machine.
MAX_BROKERS: Final = 9
#: Controller ports of a multi-node cluster default to the client port plus this.
_CONTROLLER_OFFSET: Final = 10000


def _replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min in-sync replicas) for a cluster of ``brokers`` nodes:
    three copies where there are three nodes, and acks=all needing two of them, so
    any one node may be down; all ones for a single node."""
    factor = min(brokers, 3)
    return factor, 2 if factor >= 3 else 1


def _node_ports(
    brokers: int,
    port: int,
    controller_port: int | None,
    ports: Sequence[int] | None,
    controller_ports: Sequence[int] | None,
) -> tuple[list[int], list[int]]:
    """(client ports, controller ports), one each per node: those given, else counted up
    from ``port`` and ``controller_port``; a controller port defaults to ``port+1`` for
    one node and ``port+10000`` for several. ValueError if they do not fit."""
    if ports is None:
        ports = [port + i for i in range(brokers)]
    if controller_ports is None:
        if controller_port is None:
            controller_port = port + 1 if brokers == 1 else port + _CONTROLLER_OFFSET
        controller_ports = [controller_port + i for i in range(brokers)]
    ports, controller_ports = list(ports), list(controller_ports)
    if len(ports) != brokers or len(controller_ports) != brokers:
        raise ValueError(f"give {brokers} ports and {brokers} controller ports")
    if len(set(ports + controller_ports)) != 2 * brokers:
        raise ValueError(f"ports {ports} and controller ports {controller_ports} overlap")
    return ports, controller_ports


class LocalKafka:
    """A KRaft cluster of ``brokers`` combined broker + controller nodes on 127.0.0.1.

    >>> with LocalKafka(Path(".data/kafka"), brokers=3) as kafka:   # doctest: +SKIP
    ...     print(kafka.bootstrap)
    127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        *,
        brokers: int = 1,
        secure: bool = False,
        ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        log_path: Path | None = None,
        heap: str = "512m",
        version: str = KAFKA_VERSION,
        config: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        """Describe a cluster; nothing starts before :meth:`start`.

        Client ports: ``ports``, else ``port``, ``port+1``, ...  Controller ports:
        ``controller_ports``, else ``controller_port``, ``controller_port+1``, ..., else
        ``port+1`` for one node (as always) and ``port+10000+i`` for several (9092-9094
        and 19092-19094 for three).  ``secure``: clients (and the brokers among
        themselves) use SASL_SSL with SCRAM-SHA-512; the controllers stay PLAINTEXT on
        the loopback.  ``log_path`` (one node only) receives the JVM's stdout/stderr;
        default ``<node dir>/logs/console.log``.  ``config`` adds or overrides
        server.properties keys of every node.  ``die_with_parent``: on Linux a node gets
        SIGTERM if the starting thread dies (see :func:`~.jvm.pdeathsig_prefix`).
        """
        if not 1 <= brokers <= MAX_BROKERS:
            raise ValueError(f"brokers={brokers}: use 1 to {MAX_BROKERS}")
        ports, controller_ports = _node_ports(
            brokers, port, controller_port, ports, controller_ports
        )
        if log_path is not None and brokers > 1:
            raise ValueError("log_path is for a single node; each node logs in its folder")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.brokers = brokers
        self.secure = secure
        self.version = version
        self.heap = heap
        self.cluster_id_path = self.data_dir / "cluster.id"
        #: The SASL_SSL material (TLS files, SCRAM user) in secure mode, else None.
        self.listener = SecureListener(self.data_dir / "secure") if secure else None
        self.replication_factor, self.min_insync_replicas = _replication(brokers)
        voters = ",".join(f"{i}@{HOST}:{c}" for i, c in enumerate(controller_ports, start=1))
        #: The nodes, ``node_id`` 1 to ``brokers``.
        self.nodes = [
            self._node(node_id, ports_of_node, voters, log_path, config, die_with_parent)
            for node_id, ports_of_node in enumerate(
                zip(ports, controller_ports, strict=True), start=1
            )
        ]
        #: Seconds from start() to every broker serving, for the last successful start.
        self.last_start_seconds: float | None = None

    def _node(
        self,
        node_id: int,
        ports: tuple[int, int],
        voters: str,
        log_path: Path | None,
        config: Mapping[str, str] | None,
        die_with_parent: bool,
    ) -> KafkaNode:
        """Node ``node_id`` on ``ports`` (client, controller), in its own folder (the
        cluster's, for a single node, as it always was) and the static quorum ``voters``."""
        port, controller_port = ports
        return KafkaNode(
            self.data_dir if self.brokers == 1 else self.data_dir / f"node-{node_id}",
            port,
            controller_port,
            node_id=node_id,
            voters=voters,
            cluster_id_path=self.cluster_id_path,
            replication=self.replication_factor,
            min_insync=self.min_insync_replicas,
            secure=self.listener,
            log_path=log_path,
            heap=self.heap,
            version=self.version,
            config=config,
            die_with_parent=die_with_parent,
        )

    # -- properties ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` for clients: ``127.0.0.1:<port>[,127.0.0.1:<port>...]``."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def controller_ports(self) -> list[int]:
        return [node.controller_port for node in self.nodes]

    # The first node's, which for one node is the whole cluster's, as it always was.
    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def controller_port(self) -> int:
        return self.nodes[0].controller_port

    @property
    def pid(self) -> int | None:
        """Process id of the first node's JVM (also its process group id), if started."""
        return self.nodes[0].pid

    @property
    def logs_dir(self) -> Path:
        return self.nodes[0].logs_dir

    @property
    def log_path(self) -> Path:
        return self.nodes[0].log_path

    @property
    def server_log(self) -> Path:
        return self.nodes[0].server_log

    @property
    def properties_path(self) -> Path:
        return self.nodes[0].properties_path

    @property
    def kraft_dir(self) -> Path:
        return self.nodes[0].kraft_dir

    def server_properties(self) -> dict[str, str]:
        """The first node's ``server.properties`` (the others differ in id, ports, dirs)."""
        return self.nodes[0].server_properties()

    @property
    def _name(self) -> str:
        return "Kafka broker" if self.brokers == 1 else "Kafka cluster"

    def is_formatted(self) -> bool:
        """True once every node's storage is formatted."""
        return all(node.is_formatted() for node in self.nodes)

    def cluster_id(self) -> str:
        """The cluster id kept in ``<data_dir>/cluster.id`` (created on first use)."""
        return self.nodes[0].cluster_id()

    # -- what clients need --------------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """The environment a worker needs to use this cluster: ``KAFKA_BROKER`` (every
        node, after one ``kafka://``), ``TOPIC_REPLICATION_FACTOR``, and in secure mode
        ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_CAFILE``.

        In secure mode the TLS material and password are made first if missing (they
        are kept in the data directory and reused by every start).
        """
        env = {
            "KAFKA_BROKER": f"kafka://{self.bootstrap}",
            "TOPIC_REPLICATION_FACTOR": str(self.replication_factor),
        }
        if self.listener is not None:
            self.listener.ensure()
            env.update(self.listener.client_env())
        return env

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client of this cluster (producer, consumer,
        admin): ``bootstrap_servers`` and, in secure mode, SASL and a TLS context."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.listener is not None:
            self.listener.ensure()
            kwargs.update(self.listener.client_kwargs())
        return kwargs

    def kcat_args(self) -> list[str]:
        """``-b <first node>`` and, in secure mode, the ``-X`` flags kcat needs."""
        flags: list[str] = []
        if self.listener is not None:
            self.listener.ensure()
            flags = self.listener.kcat_args()
        return ["-b", self.nodes[0].bootstrap, *flags]

    # -- lifecycle ----------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while any node's process is alive (ready or not)."""
        return any(node.is_running() for node in self.nodes)

    def start(self, timeout: float = 90) -> None:
        """Start every node and return once a client's metadata lists every broker.

        Raises :class:`LocalKafkaError` if a port is taken (before the data directory is
        touched), ``java`` is missing, the jars cannot be fetched, formatting fails, or a
        node exits or the cluster is not ready within ``timeout`` seconds (every node is
        then killed; the error quotes the logs).
        """
        if self.is_running():
            raise LocalKafkaError(f"{self._name} on {self.bootstrap} is already running")
        for node in self.nodes:
            node.check_ports()
        java = require_tool("java", "to run the Kafka broker (Java 17 works)")
        jars = ensure_jars(self.version)

        began = time.monotonic()
        deadline = began + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.listener is not None:
            self.listener.ensure()
            check_secure_storage(self.nodes)
        self.cluster_id()  # one id for every node, made before they format in parallel
        for node in self.nodes:
            node.prepare()
        fresh = [node for node in self.nodes if not node.is_formatted()]
        if fresh:
            # Each format is a JVM start (~2 s): side by side on a multi-core machine.
            with ThreadPoolExecutor(len(fresh)) as pool:
                for future in [pool.submit(node.format, java, jars) for node in fresh]:
                    future.result()
        try:
            # From this thread, not a pool's: the parent-death guard follows the thread.
            for node in self.nodes:
                node.launch(java, jars)
            wait_until(
                self.nodes,
                lambda: self._every_node_sees_all(deadline),
                deadline,
                f"{self._name} on {self.bootstrap} not ready after {timeout:g}s",
            )
        except BaseException:
            # Not ready (or interrupted, e.g. Ctrl-C): leave no half-started cluster.
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - began

    def _every_node_sees_all(self, deadline: float) -> bool:
        """True once each node's own metadata lists every broker: the controller unfences
        a broker before that broker's metadata says so, and a client may ask any node."""
        expected = {node.node_id for node in self.nodes}
        return all(expected <= node.broker_ids(node.bootstrap, deadline) for node in self.nodes)

    def stop(self, timeout: float = 30) -> None:
        """Stop every node cleanly, together (SIGTERM); SIGKILL those left after
        ``timeout``.

        Nodes left without a quorum (most of the others are down) are killed at once: a
        broker's controlled shutdown would wait minutes for a controller that cannot be
        elected.  A three-node stop takes ~6 s: the last quorum leader waits 5 s for a
        successor before it exits; a node orphaned by the others' exit while still in its
        controlled shutdown is killed after a grace (see :func:`~.kafka_node.stop_nodes`).
        """
        running = sum(node.is_running() for node in self.nodes)
        if len(self.nodes) > 1 and 2 * running <= len(self.nodes):
            for node in self.nodes:
                node.kill()
            return
        stop_nodes(self.nodes, timeout)

    def kill(self) -> None:
        """SIGKILL every node at once (a crash, for chaos tests) and reap them."""
        for node in self.nodes:
            node.signal(signal.SIGKILL)
        for node in self.nodes:
            node.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for every node's process to end; an exit code (None if never started):
        the first node's that did not end with a clean stop (0 or 143), else node 1's.

        Raises :class:`subprocess.TimeoutExpired` if one is still running after
        ``timeout`` seconds in all.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        codes = [
            node.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            for node in self.nodes
        ]
        return next((code for code in codes if code not in (None, 0, 143)), codes[0])

    def log_tail(self, max_lines: int = 8) -> str:
        """Last meaningful lines the nodes logged since their latest start, on one line."""
        if len(self.nodes) == 1:
            return self.nodes[0].log_tail(max_lines)
        return " || ".join(f"node {n.node_id}: {n.log_tail(max_lines)}" for n in self.nodes)

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
        running = sum(node.is_running() for node in self.nodes)
        return (
            f"LocalKafka({self.bootstrap}, {self.data_dir}, "
            f"{running}/{len(self.nodes)} running, pid={self.pid})"
        )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def default_data_root(data_dir: Path, brokers: int = 1, secure: bool = False) -> Path:
    """Where a local system keeps its broker, worker tables and logs by default.

    ``DATA_DIR`` itself for the usual single plaintext node (as it always was);
    ``DATA_DIR/brokers-3``, ``DATA_DIR/secure``, ``DATA_DIR/secure-brokers-3`` for the
    others, so that switching never starts workers on tables another cluster wrote.
    The broker's data is ``<root>/kafka``.
    """
    parts = (["secure"] if secure else []) + ([f"brokers-{brokers}"] if brokers > 1 else [])
    return data_dir / "-".join(parts) if parts else data_dir


def env_int(name: str, default: int, what: str = "a port number") -> int:
    """The whole number in environment variable ``name``, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise LocalKafkaError(f"{name}={raw!r} is not {what}") from None


def broker_count(given: int | None) -> int:
    """``--brokers``, else ``KAFKA_BROKERS``, else 1; checked against the limit."""
    count = given if given is not None else env_int("KAFKA_BROKERS", 1, "a number of brokers")
    if not 1 <= count <= MAX_BROKERS:
        raise LocalKafkaError(f"{count} brokers: use 1 to {MAX_BROKERS}")
    return count


def exports(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a shell can paste (values quoted)."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())


def ready_message(kafka: LocalKafka, workers_root: Path | None) -> str:
    """What the foreground CLI prints once the cluster serves: where, and how to use it
    (``workers_root``: a ``DATA_DIR`` to export for workers of this cluster, if any)."""
    what = [f"Kafka {kafka.version}"]
    if kafka.brokers > 1:
        what.append(f"{kafka.brokers} nodes")
    if kafka.secure:
        what.append("SASL_SSL")
    what += [f"data in {kafka.data_dir}", f"ready in {kafka.last_start_seconds or 0:.1f}s"]
    env = kafka.client_env()
    if workers_root is not None:  # keep the workers' tables with this cluster's topics
        env["DATA_DIR"] = str(workers_root.absolute())
    return "\n".join(
        [
            f"kafka ready on {kafka.bootstrap} ({', '.join(what)})",
            "# the settings of a worker using it:",
            exports(env),
            "# its topics with kcat:",
            shlex.join(["kcat", *kafka.kcat_args(), "-L"]),
        ]
    )


class _StopRequested(BaseException):
    """Raised by the SIGINT/SIGTERM handler to leave the foreground wait."""


def _request_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signum)


def _watch(kafka: LocalKafka) -> NoReturn:
    """Return never; :class:`LocalKafkaError` once the cluster can no longer serve.

    One node gone from several (a ``kill -9`` to watch a failover, say) is reported and
    the others carry on; the last node of a single-node broker, or the node that takes
    the quorum's majority with it, ends the run.
    """
    gone: set[int] = set()
    while True:
        for node in kafka.nodes:
            code = node.returncode()
            if code is None or node.node_id in gone:
                continue
            gone.add(node.node_id)
            message = f"{node.name} exited unexpectedly with code {code}: {node.log_tail()}"
            if 2 * (len(kafka.nodes) - len(gone)) <= len(kafka.nodes):
                raise LocalKafkaError(message)
            print(f"warning: {message}; the others carry on", file=sys.stderr, flush=True)
        time.sleep(0.5)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m saga_streams kafka",
        description=(
            "Run Apache Kafka (KRaft) in the foreground, from jars fetched by Maven: one "
            "node, or several (--brokers 3), plaintext or SASL_SSL (--secure). Prints the "
            "settings a worker needs. Environment: KAFKA_PORT (9092; more nodes take the "
            "next ports), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1 for one node, KAFKA_PORT+10000 "
            "for several), KAFKA_BROKERS (1), DATA_DIR (.data; the cluster uses "
            "DATA_DIR/kafka, or DATA_DIR/brokers-N/kafka, DATA_DIR/secure/kafka), "
            "SAGA_KAFKA_CACHE (~/.cache/saga_streams)."
        ),
    )
    parser.add_argument("--port", type=int, default=None, help="client port of node 1")
    parser.add_argument("--controller-port", type=int, default=None, help="KRaft port of node 1")
    parser.add_argument("--data-dir", type=Path, default=None, help="the cluster's data dir")
    parser.add_argument("--brokers", type=int, default=None, help="number of nodes (1)")
    parser.add_argument(
        "--secure", action="store_true", help="SASL_SSL (SCRAM-SHA-512) client listener"
    )
    return parser.parse_args(argv)


def _cluster_from_args(args: argparse.Namespace) -> tuple[LocalKafka, Path | None]:
    """The cluster the options and the environment describe, and the ``DATA_DIR`` its
    workers should use when it is not the usual one (None otherwise)."""
    brokers = broker_count(args.brokers)
    port = args.port if args.port is not None else env_int("KAFKA_PORT", 9092)
    default_controller = port + 1 if brokers == 1 else port + _CONTROLLER_OFFSET
    controller_port = (
        args.controller_port
        if args.controller_port is not None
        else env_int("KAFKA_CONTROLLER_PORT", default_controller)
    )
    base = Path(os.environ.get("DATA_DIR") or ".data")
    root = default_data_root(base, brokers, args.secure)
    data_dir = args.data_dir if args.data_dir is not None else root / "kafka"
    kafka = LocalKafka(
        data_dir,
        port=port,
        controller_port=controller_port,
        brokers=brokers,
        secure=args.secure,
    )
    return kafka, root if args.data_dir is None and root != base else None


def main(argv: list[str] | None = None) -> int:
    """Run a cluster in the foreground until SIGINT/SIGTERM; 0 on a clean stop, 1 on error."""
    args = _parse_args(argv)
    kafka: LocalKafka | None = None
    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        kafka, workers_root = _cluster_from_args(args)
        kafka.start()  # fetches the jars first if they are not cached yet
        print(ready_message(kafka, workers_root))
        sys.stdout.flush()
        _watch(kafka)
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
