"""Faust app construction: one app per role, configured from the environment.

Kafka and process concerns live here, apart from the saga logic: the broker URL, the
RocksDB data folder, the partition count every topic and table shares, and the topics
themselves, declared explicitly so that none is left to the broker's auto-creation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, Protocol, cast

import faust
from faust.transport.consumer import Consumer
from faust.types import ConsumerT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from saga_streams.config import DEFAULT_TOMBSTONE_RETENTION_S, Settings
from saga_streams.connection import KafkaAccess
from saga_streams.logs import log_no_lower_than_printed, log_plainly_off_terminal
from saga_streams.rebalance import ResumeOnce, rewind_never_committed
from saga_streams.roles import ORCHESTRATOR, PARTICIPANTS, Role, check_workflows
from saga_streams.saga.dsl import Registry
from saga_streams.tables.local import discard_if_stale, note_interval_s, note_running
from saga_streams.topics import TopicError, TopicSpec, provision_topics
from saga_streams.web.auth import require_token, warn_if_open
from saga_streams.web.cors import allow_cross_origin_reads

__all__ = [
    "OPERATOR_TOPIC",
    "ORCHESTRATOR_INPUTS",
    "REPLY_TOPIC",
    "TIMEOUT_TOPIC",
    "TRANSFER_REQUEST_TOPIC",
    "SagaApp",
    "Send",
    "all_topic_names",
    "consumed_topics",
    "create_app",
    "declare_topic",
    "ensure_topics",
]

#: Services -> orchestrator: every reply, keyed by saga id (seed name).
REPLY_TOPIC = "orchestrator-response"
#: Web view -> orchestrator agent: accepted transfers, keyed by saga id (our name).
TRANSFER_REQUEST_TOPIC = "transfer-requests"
#: Orchestrator timer -> orchestrator agent: a saga's awaited reply is overdue (our name).
TIMEOUT_TOPIC = "saga-timeouts"
#: Web view -> orchestrator agent: an operator's retry or cancel, keyed by saga id (our name).
OPERATOR_TOPIC = "saga-operator-actions"


#: What the orchestrator's agent consumes: every input of a saga, keyed by saga id.
ORCHESTRATOR_INPUTS = (TRANSFER_REQUEST_TOPIC, REPLY_TOPIC, TIMEOUT_TOPIC, OPERATOR_TOPIC)


def all_topic_names(workflows: Registry) -> tuple[str, ...]:
    """Every topic the roles exchange messages on (changelogs are Faust's own)."""
    return (*ORCHESTRATOR_INPUTS, *workflows.topics)


def consumed_topics(workflows: Registry) -> dict[str, tuple[str, ...]]:
    """Which topics each role's agents consume (role name -> topic names)."""
    return {
        ORCHESTRATOR.name: ORCHESTRATOR_INPUTS,
        **{name: tuple(p.topics(workflows)) for name, p in PARTICIPANTS.items()},
    }


log = logging.getLogger(__name__)


class Send(Protocol):
    """Produce one message; the awaitable it returns resolves once Kafka has it."""

    async def __call__(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Any = None,
    ) -> Awaitable[Any]: ...


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    compacted: Iterable[str] = (),
    timeout: float = 60.0,
) -> None:
    """Topics with ``partitions`` each on a plaintext broker with one replica (the bench's
    and the tests' own topics); the workers' are made by ``SagaApp``."""
    compacted = set(compacted)
    specs = {
        name: TopicSpec(partitions, _COMPACTED if name in compacted else {})
        for name in [*names, *compacted]
    }
    await provision_topics(KafkaAccess(tuple(bootstrap.split(","))), specs, 1, timeout)


def changelog_config(
    tombstone_retention_ms: int = DEFAULT_TOMBSTONE_RETENTION_S * 1000,
) -> dict[str, str]:
    """Changelogs: compacted, with segments rolled every 10 minutes or 16 MiB. Kafka
    compacts closed segments only: with the broker's defaults (1 GiB, 7 days) a changelog
    would keep every value ever written for a week, expired sagas and ledger entries
    included, and grow with the traffic however much retention removes (the soak
    measured it). A removed key's tombstone stays ``tombstone_retention_ms`` after
    compaction (TOMBSTONE_RETENTION): the changelog holds the live keys plus about that
    long of removals."""
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(10 * 60 * 1000),
        "segment.bytes": str(16 * 2**20),
        "min.cleanable.dirty.ratio": "0.25",
        "delete.retention.ms": str(tombstone_retention_ms),
    }


_COMPACTED = changelog_config()
#: Requests carry the time by which the view needs Kafka's acknowledgement: the broker's
#: append time on each request lets the agent tell one appended too late (see
#: ``TransferRequested.accept_by``).
_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


class SagaApp(faust.App):
    """A Faust app that makes sure its topics exist before its consumer subscribes.

    ``kafka`` says how to reach the cluster (the same for the admin client as for Faust);
    ``workflows`` are those the system runs, whose command topics it creates.

    Faust creates ``internal`` topics while subscribing, and the partition assignor can
    run before the new topics reach its metadata: the worker then ignores them ("Ignoring
    missing topic") until the next metadata refresh, minutes later. The same holds for
    the tables' changelogs. Creating them all first, in ``on_first_start`` (before the
    consumer service starts), avoids that race.
    """

    kafka: KafkaAccess
    workflows: Registry
    settings: Settings

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        # Faust's own would empty the agents' queues a second time after a rebalance,
        # losing the messages fetched in between (rebalance.py).
        return ResumeOnce(loop=self.loop)

    def _new_consumer(self) -> ConsumerT:
        consumer = cast(Consumer, super()._new_consumer())
        # After a rebalance, what was dropped is fetched again also from a partition that
        # nobody has committed yet (rebalance.py).
        rewind_never_committed(consumer, lambda: set(self.tables.changelog_topics))
        return consumer

    async def on_first_start(self) -> None:
        # Here rather than in create_app: the worker's log handlers exist by now.
        warn_if_open(self.settings)
        # Faust creates the data folder without its parents; DATA_DIR may be new.
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        # Before any table opens its local store (that happens on assignment).
        tabledir = Path(self.conf.tabledir)
        discard_if_stale(tabledir, self.settings.tombstone_retention_ms)
        note_running(tabledir)
        await super().on_first_start()
        partitions = self.conf.topic_partitions
        topics = {name: TopicSpec(partitions) for name in all_topic_names(self.workflows)}
        topics[TRANSFER_REQUEST_TOPIC] = TopicSpec(partitions, _APPEND_TIME)
        changelog = TopicSpec(
            partitions, changelog_config(self.settings.tombstone_retention_ms), enforce=True
        )
        for table in self.tables.values():
            topics[table.changelog_topic.get_topic_name()] = changelog
        # Faust's own: the partition assignor's leader topic, one partition.
        topics[f"{self.conf.id}-__assignor-__leader"] = TopicSpec(1)
        try:
            await provision_topics(self.kafka, topics, self.conf.topic_replication_factor)
        except TopicError as exc:
            # The worker's own lifecycle is the process boundary here: Faust would print
            # a traceback and carry on stopping; a person needs the one line.
            raise SystemExit(f"saga_streams: {exc}") from None

    async def on_started(self) -> None:
        await super().on_started()
        log_no_lower_than_printed()
        log_plainly_off_terminal()


def create_app(role: Role, settings: Settings, workflows: Registry) -> SagaApp:
    """The Faust app of ``role``; raises ``WorkflowError`` if a workflow asks for what no
    participant can do (checked before anything starts)."""
    check_workflows(workflows, PARTICIPANTS, settings.accounts)
    # One RocksDB folder per role and worker: RocksDB locks its files, so two workers of
    # one role need two folders. Faust formats ``{conf...}`` when the path is read, after
    # ``--web-port`` has been applied, so the port tells the workers apart.
    datadir = Path(settings.data_dir).absolute() / f"{role.name}-{{conf.web_port}}"
    app = SagaApp(
        role.app_id,
        broker=settings.kafka.broker_url,
        broker_credentials=settings.kafka.faust_credentials(),
        store="rocksdb://",
        datadir=str(datadir),
        web_port=role.web_port,
        # Loopback unless told otherwise (containers set WEB_BIND=0.0.0.0). The web host
        # goes into the worker's canonical URL, through which the other workers of its
        # role forward requests for the keys it holds.
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        topic_partitions=settings.partitions,
        # Every topic Faust creates (changelogs, the assignor's leader topic, any
        # repartition topic) gets this many replicas; ours get it from provision_topics.
        topic_replication_factor=settings.replication_factor,
        # Every write waits for all in-sync replicas: with min.insync.replicas=2, an
        # acknowledged write survives the loss of a broker.
        producer_acks=-1,
        # Roles discover nothing: each role module imports exactly what it runs.
        autodiscover=False,
        # A worker that dies without leaving its consumer group (kill -9) holds its
        # partitions until its session expires: 10 s (Kafka's own former default) instead
        # of Faust's 60 s bounds how long its sagas wait for the restarted worker.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        # An agent sends a batch's commands or replies in a burst: a 2 ms linger puts
        # them in a few produce requests instead of one each.
        producer_linger=0.002,
        # Keys are saga ids and account ids: plain strings, readable with kcat.
        key_serializer="raw",
        value_serializer="json",
        # The dashboard (on the orchestrator's port) reads every role's GET answers.
        # CORS outermost: it answers a preflight, which carries no token, by itself.
        web_application_options={
            "middlewares": [allow_cross_origin_reads, require_token(settings)]
        },
    )
    app.kafka = settings.kafka
    app.settings = settings
    app.workflows = workflows

    async def note_this_worker_runs() -> None:
        note_running(Path(app.conf.tabledir))

    app.timer(interval=note_interval_s(settings.tombstone_retention_ms))(note_this_worker_runs)

    return app


def declare_topic(app: faust.App, *names: str, partitions: int) -> faust.TopicT:
    """A topic (or several, consumed as one stream) with an explicit partition count.

    ``internal=True`` makes Faust create it at start-up with that count. Left to the
    broker, it would be auto-created with one partition, and a table written from its
    events would no longer line up with its changelog (Faust's PartitionsMismatch).
    """
    return app.topic(
        *names,
        partitions=partitions,
        internal=True,
        key_serializer="raw",
        value_serializer="raw",
    )
