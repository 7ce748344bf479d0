"""Backpressure on a real broker: with MAX_IN_FLIGHT sagas in flight (a participant
stopped with SIGSTOP holds them there), ``POST /transfer`` answers 429 with Retry-After
and a JSON error, and publishes nothing, as ``kcat`` shows on the request topic; once the
participant is back and the sagas have ended, transfers are accepted again, and the money
adds up."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from saga_streams.app import TRANSFER_REQUEST_TOPIC
from saga_streams.http_client import http_json
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

LIMIT = 3
REFUSED = 4


def post_transfer(stack: Stack, amount: float) -> tuple[int, dict[str, str], Any]:
    """POST /transfer: (status, headers, JSON body); ``http_json`` drops the headers."""
    request = urllib.request.Request(
        stack.url("orchestrator", "/transfer"),
        data=json.dumps({"amount": amount}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def refused_count(stack: Stack) -> float:
    """``saga_transfers_refused_total`` as the orchestrator's GET /metrics shows it."""
    with urllib.request.urlopen(stack.url("orchestrator", "/metrics"), timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^saga_transfers_refused_total (\S+)$", text, re.MULTILINE)
    assert found, "no saga_transfers_refused_total in GET /metrics"
    return float(found.group(1))


def test_beyond_max_in_flight_transfers_are_refused_until_sagas_end(
    stack_factory: Callable[..., Stack],
) -> None:
    # No failures, and a step timeout far beyond the pause: the stopped participant's
    # sagas wait in flight (no retries, no rollbacks) until it is back.
    stack = stack_factory(
        MAX_IN_FLIGHT=str(LIMIT),
        SERVICE_A_FAILURE_RATE="0",
        SERVICE_B_FAILURE_RATE="0",
        STEP_TIMEOUT="120",
    )
    stack.start()
    service_a = stack.workers["service-a"]
    service_a.pause()
    try:
        accepted = [post_transfer(stack, 10) for _ in range(LIMIT)]
        assert [status for status, _, _ in accepted] == [202] * LIMIT, accepted
        ids = [body["saga_id"] for _, _, body in accepted]
        assert len(stack.topic_messages(TRANSFER_REQUEST_TOPIC)) == LIMIT

        for _ in range(REFUSED):
            status, headers, body = post_transfer(stack, 10)
            assert status == 429, body
            assert re.fullmatch(r"[1-9][0-9]*", headers.get("Retry-After", "")), headers
            assert set(body) == {"error"} and "MAX_IN_FLIGHT" in body["error"], body
        # A bad body is still a 400 when the worker is full.
        assert post_transfer(stack, -1)[0] == 400
        # Nothing more reached Kafka; the refusals are counted.
        requests = stack.topic_messages(TRANSFER_REQUEST_TOPIC)
        assert sorted(r["saga_id"] for r in requests) == sorted(ids)
        assert refused_count(stack) == REFUSED
        # The sagas held: each one STARTED, waiting for service A.
        assert {stack.saga(i)["status"] for i in ids} == {"STARTED"}
    finally:
        service_a.resume()

    ended = stack.wait_terminal(ids, timeout=60)
    assert {s["status"] for s in ended.values()} == {"COMPLETED"}, ended
    status, body = http_json("POST", stack.url("orchestrator", "/transfer"), {"amount": 10})
    assert status == 202, body
    assert stack.wait_terminal([body["saga_id"]])[body["saga_id"]]["status"] == "COMPLETED"
    assert len(stack.topic_messages(TRANSFER_REQUEST_TOPIC)) == LIMIT + 1
    stack.assert_invariants()
    assert stack.balance_cents("service-a") == 1000_00 - (LIMIT + 1) * 10_00
