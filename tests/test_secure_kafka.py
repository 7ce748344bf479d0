"""The whole system on a broker that needs TLS and SASL (SCRAM-SHA-512), as managed Kafka
services do; and the two mistakes a user makes first, a wrong password and a CA that did
not sign the broker's certificate, each stopping a worker at start with one clear line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_streams.local.ports import free_ports
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

#: Failure injection off: the one transfer must complete.
ENV = {"SERVICE_A_FAILURE_RATE": "0", "SERVICE_B_FAILURE_RATE": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("secure"), ENV, secure=True)
    try:
        stack.kafka.start()
        yield stack
    finally:
        stack.close()


def test_a_transfer_completes_on_a_sasl_ssl_broker(stack: Stack) -> None:
    env = stack.worker_env()
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    stack.start()
    status, body = stack.transfer(100)
    assert status == 202, body
    saga = stack.wait_terminal([body["saga_id"]], timeout=60)[body["saga_id"]]
    assert saga["status"] == "COMPLETED"
    assert (stack.balance_cents("service-a"), stack.balance_cents("service-b")) == (
        900_00,
        600_00,
    )
    stack.assert_invariants()


def stopped_with(stack: Stack, name: str, **env: str) -> str:
    """Start one more service-b worker, ``name``, with ``env`` changed; return the last
    line it printed before it stopped."""
    (stack.ports[name],) = free_ports(1)
    stack.role_of[name] = "service-b"
    worker = stack.start_worker(name, extra_env=env)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"still running after 60 s: {worker.log_tail()}") from None
    stack.workers.pop(name)
    log = worker.log_text()
    assert worker.returncode() not in (0, None), log
    assert "Traceback" not in log, log
    line = log.strip().splitlines()[-1]
    print(f"\n{name}: {line}")
    return line


def test_a_wrong_password_stops_the_worker_with_one_line(stack: Stack) -> None:
    line = stopped_with(stack, "service-b-password", KAFKA_SASL_PASSWORD="not-the-password")
    assert line.startswith("saga_streams: the broker at 127.0.0.1:"), line
    assert "refused the credentials" in line and "KAFKA_SASL_USERNAME" in line


def test_a_ca_that_did_not_sign_the_broker_stops_the_worker_with_one_line(
    stack: Stack,
) -> None:
    other_ca = Path("/etc/ssl/certs/ca-certificates.crt")  # the public CAs: none signed it
    assert other_ca.is_file(), "the system CA bundle (Debian's ca-certificates) is missing"
    line = stopped_with(stack, "service-b-ca", KAFKA_SSL_CAFILE=str(other_ca))
    assert line.startswith("saga_streams: TLS: the certificate of the broker at 127.0.0.1:"), line
    assert "KAFKA_SSL_CAFILE" in line


def test_kcat_reads_the_replies_on_the_secured_broker(stack: Stack) -> None:
    # The kcat flags docs/deployment.md gives for a SASL_SSL broker read the replies.
    flags = stack.kafka.kcat_args()
    assert "security.protocol=SASL_SSL" in flags and "sasl.mechanisms=SCRAM-SHA-512" in flags
    replies = stack.topic_messages("orchestrator-response")
    assert replies and all(r["type"] == "Reply" for r in replies)
