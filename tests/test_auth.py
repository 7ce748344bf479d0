"""Token authentication on a real broker: workers started with ``API_TOKEN`` refuse a
transfer without it (and publish nothing), take one with it, open their reads only to the
token when ``API_TOKEN_READS=1``, and never write the token into their logs; a worker
bound beyond loopback without a token says so once."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from saga_streams.http_client import http_json
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

TOKEN = "a-real-broker-test-token-0123456789"
WRONG = "not-the-token-but-long-enough"
CHALLENGE = 'Bearer realm="saga_streams"'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"API_TOKEN": TOKEN, "SERVICE_A_FAILURE_RATE": "0", "SERVICE_B_FAILURE_RATE": "0"}
    stack = Stack(tmp_path_factory.mktemp("auth"), env)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def request(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    """``http_json`` with exactly these headers: an empty Authorization stands for none,
    whatever the test process's own environment holds."""
    return http_json(method, url, body, headers={"Authorization": "", **headers})


def restart_with(stack: Stack, name: str, **extra: str) -> None:
    stack.workers[name].stop()
    stack.start_worker(name, extra).wait_ready()


def saga_count(stack: Stack) -> int:
    status, body = request("GET", stack.url("orchestrator", "/sagas"), bearer(TOKEN))
    assert status == 200, body
    return len(body["sagas"])


def assert_refused(answer: tuple[int, Any]) -> None:
    status, body = answer
    assert status == 401, body
    assert isinstance(body, dict) and isinstance(body["error"], str)


def test_only_a_transfer_with_the_token_is_taken(stack: Stack) -> None:
    url = stack.url("orchestrator", "/transfer")
    for headers in ({}, bearer(WRONG), {"Authorization": f"Basic {TOKEN}"}):
        assert_refused(request("POST", url, headers, {"amount": 10}))
    # The challenge header, read raw (http_json keeps only the body).
    raw = urllib.request.Request(url, data=b'{"amount": 10}', method="POST")
    raw.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(raw, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == CHALLENGE
    retry = stack.url("orchestrator", "/sagas/no-such-saga/retry")
    assert_refused(request("POST", retry, {}))
    assert saga_count(stack) == 0, "a refused transfer published nothing"

    status, accepted = stack.transfer(25)  # the cluster sends its workers' token
    assert status == 202, accepted
    saga_id = accepted["saga_id"]
    assert stack.wait_terminal([saga_id])[saga_id]["status"] == "COMPLETED"
    assert saga_count(stack) == 1
    # Reads are open by default.
    status, body = request("GET", stack.url("orchestrator", f"/sagas/{saga_id}"), {})
    assert status == 200, body
    assert request("GET", stack.url("service-a", "/balance"), {})[0] == 200
    stack.assert_invariants()
    for name in stack.workers:
        log = stack.log(name)
        assert TOKEN not in log and WRONG not in log, f"{name} logged a token"


def test_reads_need_the_token_when_asked(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("orchestrator", "service-a"):
        restart_with(stack, name, API_TOKEN_READS="1")
    for path in ("/sagas", "/workflows"):
        url = stack.url("orchestrator", path)
        assert_refused(request("GET", url, {}))
        assert_refused(request("GET", url, bearer(WRONG)))
        assert request("GET", url, bearer(TOKEN))[0] == 200
    balance = stack.url("service-a", "/balance")
    assert_refused(request("GET", balance, {}))
    assert request("GET", balance, bearer(TOKEN))[0] == 200
    for name in ("orchestrator", "service-a"):
        for path in ("/health", "/metrics"):
            # Read raw: /metrics answers text, not JSON.
            with urllib.request.urlopen(stack.url(name, path), timeout=10) as answer:
                assert answer.status == 200, f"{name} {path}: {answer.status}"
    # The audit, as a person runs it with the token in their environment.
    monkeypatch.setenv("API_TOKEN", TOKEN)
    stack.assert_invariants()
    for name in stack.workers:
        assert TOKEN not in stack.log(name), f"{name} logged the token"


def test_an_open_port_beyond_loopback_is_warned_about_once(stack: Stack) -> None:
    token = stack.env.pop("API_TOKEN")
    try:
        restart_with(stack, "service-c", WEB_BIND="0.0.0.0")
    finally:
        stack.env["API_TOKEN"] = token
    log = stack.log("service-c")
    assert log.count("WEB_BIND=0.0.0.0 and no API_TOKEN") == 1, log[-3000:]
    assert "and no API_TOKEN" not in stack.log("orchestrator"), "it has a token"
