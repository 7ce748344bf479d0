"""The topics, created before any consumer subscribes, and checked when they exist.

Every role calls ``provision_topics`` at start; the first one up creates what is missing.
Whatever exists already must match: the partition count the tables are keyed on, and the
replication factor the cluster is run with (``TOPIC_REPLICATION_FACTOR``). A mismatch stops
the worker with one line naming the topic, instead of a mis-assignment later or, on a
cluster with ``min.insync.replicas=2``, a topic of one replica that refuses every write
while Faust retries forever.

Credentials and TLS are checked first, on one connection: a wrong password or a CA that
does not match is an answer, not an outage, so it stops the worker at once rather than
after a minute of retries.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from saga_streams.connection import KafkaAccess

__all__ = ["TopicError", "TopicSpec", "provision_topics"]

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
#: Answers that retrying will not change.
_REFUSALS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


class TopicError(Exception):
    """The topics cannot be created or do not match; the message is one line for a person."""


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    #: Whether a topic that exists already is brought to ``config`` (the changelogs,
    #: whose tombstone retention the workers' local tables rely on: ``tables/local.py``).
    enforce: bool = False


async def provision_topics(
    access: KafkaAccess,
    topics: Mapping[str, TopicSpec],
    replication: int,
    timeout: float = 60.0,
) -> None:
    """Create the topics that do not exist, with ``replication`` replicas, and check those
    that do; raise ``TopicError`` on a mismatch, a refusal, or no broker within
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await _check_access(access)
            await _create_and_check(access, topics, replication)
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise TopicError(
                    f"cannot reach Kafka at {access.bootstrap_servers}: {exc or type(exc).__name__}"
                ) from None
            await asyncio.sleep(1.0)


async def _check_access(access: KafkaAccess) -> None:
    """One connection to the first broker that answers, with the full security handshake.

    aiokafka's clients log a failed handshake and retry it as if the broker were away;
    here a refused password or certificate is a ``TopicError`` at once."""
    kwargs = access.client_kwargs()
    del kwargs["bootstrap_servers"]
    failures: list[BaseException] = []
    for address in access.bootstrap:
        host, _, port = address.rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"), int(port), request_timeout_ms=10_000, **kwargs
            )
        except ssl.SSLCertVerificationError as exc:
            raise TopicError(
                f"TLS: the certificate of the broker at {address} cannot be verified "
                f"({exc.verify_message}); check KAFKA_SSL_CAFILE"
            ) from None
        except ssl.SSLError as exc:
            raise TopicError(f"TLS with the broker at {address} failed: {exc.reason}") from None
        except _REFUSALS as exc:
            raise TopicError(
                f"the broker at {address} refused the credentials of user "
                f"{access.sasl_username!r} ({access.sasl_mechanism}: {type(exc).__name__}); "
                "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
            ) from None
        except (OSError, KafkaError) as exc:
            failures.append(exc)
            continue
        conn.close()
        return
    raise KafkaConnectionError(f"no broker answered: {failures[-1]!r}")


async def _create_and_check(
    access: KafkaAccess, topics: Mapping[str, TopicSpec], replication: int
) -> None:
    admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **access.client_kwargs())
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(name, spec.partitions, replication, topic_configs=dict(spec.config))
                for name, spec in topics.items()
            ]
        )
        existing: list[str] = []
        for topic, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                detail = rest[0] if rest and rest[0] else f"error {code}"
                raise TopicError(
                    f"cannot create topic {topic!r} with {replication} replicas: {detail}"
                )
            if code == 0:
                log.info("Created topic %r with %d partitions", topic, topics[topic].partitions)
            else:
                existing.append(topic)
        await _enforce_configs(admin, {t: topics[t] for t in existing if topics[t].enforce})
        for topic, (partitions, replicas) in (await _layout(admin, list(topics))).items():
            wanted = topics[topic].partitions
            if partitions != wanted:
                raise TopicError(
                    f"topic {topic!r} has {partitions} partitions but {wanted} are needed "
                    f"(TOPIC_PARTITIONS); delete it or set TOPIC_PARTITIONS={partitions}"
                )
            if replicas != replication:
                raise TopicError(
                    f"topic {topic!r} has {replicas} replica{'' if replicas == 1 else 's'} but "
                    f"TOPIC_REPLICATION_FACTOR={replication}; reassign its partitions or set "
                    f"TOPIC_REPLICATION_FACTOR={replicas}"
                )
    finally:
        await admin.close()


async def _enforce_configs(admin: AIOKafkaAdminClient, topics: Mapping[str, TopicSpec]) -> None:
    """Bring each existing topic's configuration to its spec where it differs (a setting
    changed since the topic was made). Nothing is asked of the brokers when all match,
    so a cluster that grants no AlterConfigs works as long as its topics are right."""
    differing = [
        name for name, spec in topics.items() if await _current(admin, name, spec) != spec.config
    ]
    for name in differing:
        # AlterConfigs sets the topic's whole configuration: the spec is all of it.
        wanted = dict(topics[name].config)
        (response,) = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, wanted)]
        )
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise TopicError(
                    f"topic {resource['resource_name']!r} needs {wanted} but the brokers "
                    f"refused to alter it: {resource['error_message'] or resource['error_code']}"
                )
        log.info("Set the configuration of topic %r: %s", name, wanted)


async def _current(admin: AIOKafkaAdminClient, name: str, spec: TopicSpec) -> dict[str, str]:
    """The topic's values of the settings ``spec`` names, as the brokers apply them."""
    wanted = ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(spec.config))
    current: dict[str, str] = {}
    for response in await admin.describe_configs([wanted]):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                # (The protocol's field is "config_names", one name per entry.)
                current[entry["config_names"]] = str(entry["config_value"])
    return current


async def _layout(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int]]:
    """Each topic's partition count and replicas (the fewest of any partition), waiting out
    the moment right after creation when the metadata still shows no partitions."""
    layout: dict[str, tuple[int, int]] = {}
    for _ in range(50):
        layout = {
            d["topic"]: (
                len(d["partitions"]),
                min((len(p["replicas"]) for p in d["partitions"]), default=0),
            )
            for d in await admin.describe_topics(names)
        }
        if all(layout.get(name, (0, 0))[0] for name in names):
            break
        await asyncio.sleep(0.2)
    return layout
