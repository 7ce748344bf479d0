"""Faust app construction: one app per role, configured from the environment.

Kafka and process concerns live here, apart from the saga logic: the broker URL, the
RocksDB data folder, the partition count every topic and table shares, and the topics
themselves, declared explicitly so that none is left to the broker's auto-creation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from saga_streams.config import ConfigError, Settings, load_settings
from saga_streams.roles import PARTICIPANTS, Role, check_workflows
from saga_streams.saga.workflow import WORKFLOWS, WorkflowError

__all__ = [
    "REPLY_TOPIC",
    "TIMEOUT_TOPIC",
    "TRANSFER_REQUEST_TOPIC",
    "SagaApp",
    "all_topic_names",
    "command_topic_names",
    "consumed_topics",
    "create_app",
    "declare_topic",
    "ensure_topics",
    "settings_or_exit",
]

#: Services -> orchestrator: every reply, keyed by saga id (seed name).
REPLY_TOPIC = "orchestrator-response"
#: Web view -> orchestrator agent: accepted transfers, keyed by saga id (our name).
TRANSFER_REQUEST_TOPIC = "transfer-requests"
#: Orchestrator timer -> orchestrator agent: a saga's awaited reply is overdue (our name).
TIMEOUT_TOPIC = "saga-timeouts"


def command_topic_names() -> tuple[str, ...]:
    """Every command topic of every workflow (the seed's four for the transfer)."""
    names: dict[str, None] = {}
    for workflow in WORKFLOWS.values():
        names.update(dict.fromkeys(workflow.topics))
    return tuple(names)


def all_topic_names() -> tuple[str, ...]:
    """Every topic the roles exchange messages on (changelogs are Faust's own)."""
    return (TRANSFER_REQUEST_TOPIC, REPLY_TOPIC, TIMEOUT_TOPIC, *command_topic_names())


log = logging.getLogger(__name__)
_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    compacted: Iterable[str] = (),
    timeout: float = 60.0,
) -> None:
    """Create the topics that do not exist yet, and check those that do.

    Idempotent, so every role calls it at start and the first one up creates them. A topic
    with another partition count (say, auto-created by the broker) is a clear error here,
    not a silent mis-assignment later.
    """
    compacted = list(compacted)
    names = [*names, *compacted]
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
                    )
                    for name in names
                ]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {topic!r}: error {code} {rest}")
                if code == 0:
                    log.info("Created topic %r with %d partitions", topic, partitions)
            for topic, found in (await _partition_counts(admin, names)).items():
                if found != partitions:
                    raise SystemExit(
                        f"saga_streams: topic {topic!r} has {found} partitions but "
                        f"TOPIC_PARTITIONS={partitions}; delete it or set TOPIC_PARTITIONS={found}"
                    )
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"saga_streams: cannot reach Kafka at {bootstrap} to create topics: {exc}"
                ) from None
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each topic, waiting out the moment right after creation when
    the broker's metadata still shows a new topic with no partitions."""
    for _ in range(50):
        counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
        if all(counts.get(name) for name in names):
            break
        await asyncio.sleep(0.2)
    return counts


class SagaApp(faust.App):
    """A Faust app that makes sure its topics exist before its consumer subscribes.

    Faust creates ``internal`` topics while subscribing, and the partition assignor can
    run before the new topics reach its metadata: the worker then ignores them ("Ignoring
    missing topic") until the next metadata refresh, minutes later. The same holds for
    the tables' changelogs. Creating them all first, in ``on_first_start`` (before the
    consumer service starts), avoids that race.
    """

    async def on_first_start(self) -> None:
        # Faust creates the data folder without its parents; DATA_DIR may be new.
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.conf.broker)
        changelogs = [table.changelog_topic.get_topic_name() for table in self.tables.values()]
        await ensure_topics(
            bootstrap, all_topic_names(), self.conf.topic_partitions, compacted=changelogs
        )

    async def on_started(self) -> None:
        await super().on_started()
        _log_no_lower_than_printed()


def _log_no_lower_than_printed() -> None:
    """Faust's worker sets the root logger to DEBUG for its start-up spinner when the log
    level is warn or above, and leaves it there: every debug call of aiokafka and Faust
    then builds a record that no handler prints (a tenth of the orchestrator's CPU in a
    profile of the bench). Once started, the root logger goes back to the lowest level a
    handler prints."""
    root = logging.getLogger()
    printed = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    if printed and root.level < min(printed):
        root.setLevel(min(printed))


def consumed_topics() -> dict[str, tuple[str, ...]]:
    """Which topics each role's agents consume (role name -> topic names)."""
    return {
        "orchestrator": (TRANSFER_REQUEST_TOPIC, REPLY_TOPIC, TIMEOUT_TOPIC),
        **{name: tuple(p.topics()) for name, p in PARTICIPANTS.items()},
    }


def settings_or_exit() -> Settings:
    """Settings for a worker about to start; a bad value ends it with one clear line."""
    try:
        return load_settings()
    except ConfigError as exc:
        raise SystemExit(f"saga_streams: {exc}") from None


def create_app(role: Role, settings: Settings) -> faust.App:
    try:
        check_workflows(WORKFLOWS, PARTICIPANTS, settings.accounts)
    except WorkflowError as exc:
        raise SystemExit(f"saga_streams: {exc}") from None
    # One RocksDB folder per role and worker: RocksDB locks its files, so two workers of
    # one role need two folders. Faust formats ``{conf...}`` when the path is read, after
    # ``--web-port`` has been applied, so the port tells the workers apart.
    datadir = Path(settings.data_dir).absolute() / f"{role.name}-{{conf.web_port}}"
    return SagaApp(
        role.app_id,
        broker=settings.kafka_broker,
        store="rocksdb://",
        datadir=str(datadir),
        web_port=role.web_port,
        # Loopback unless told otherwise (containers set WEB_BIND=0.0.0.0). The web host
        # goes into the worker's canonical URL, through which the other workers of its
        # role forward requests for the keys it holds.
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
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
    )


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
