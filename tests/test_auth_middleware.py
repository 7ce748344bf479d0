"""Token authentication without Kafka: the settings, the middleware on the orchestrator's
real views (aiohttp's test client, the agent tests' in-memory wiring), the CORS preflight,
forwarding between workers and the tooling's client."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from faust.web import Request
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.config import ConfigError, load_settings
from saga_streams.http_client import http_json
from saga_streams.web.auth import bearer_token, warn_if_open
from saga_streams.web.routing import LOCAL_HEADER, forwarded_headers
from saga_streams.workflows import WORKFLOWS
from tests.test_agents import STEP_TIMEOUT, Outbox, fake_wiring, in_memory

TOKEN = "s3cret-token-for-the-tests"
CHALLENGE = 'Bearer realm="saga_streams"'


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body


class Client:
    """aiohttp's test client on the orchestrator's web application, keeping headers."""

    def __init__(self, runner: asyncio.Runner, orchestrator: Orchestrator) -> None:
        self._runner = runner
        self._client = runner.run(self._start(orchestrator))

    @staticmethod
    async def _start(orchestrator: Orchestrator) -> TestClient[Any, Any]:
        web_app = cast(AiohttpWeb, orchestrator.app.web).web_app
        client = TestClient(TestServer(web_app))  # made in the loop it runs in
        await client.start_server()
        return client

    def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self._runner.run(self._request(method, path, headers=headers, **kwargs))

    async def _request(self, method: str, path: str, **kwargs: Any) -> Answer:
        async with (
            asyncio.timeout(STEP_TIMEOUT),
            self._client.request(method, path, **kwargs) as response,
        ):
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return Answer(response.status, dict(response.headers), body)

    def close(self) -> None:
        self._runner.run(self._client.close())


def client_for(runner: asyncio.Runner, outbox: Outbox, env: dict[str, str]) -> Iterator[Client]:
    role = Orchestrator(load_settings(env), WORKFLOWS, fake_wiring(outbox))
    in_memory(role.app, runner)
    client = Client(runner, role)
    yield client
    client.close()


@pytest.fixture
def guarded(runner: asyncio.Runner, outbox: Outbox) -> Iterator[Client]:
    yield from client_for(runner, outbox, {"API_TOKEN": TOKEN})


@pytest.fixture
def guarded_reads(runner: asyncio.Runner, outbox: Outbox) -> Iterator[Client]:
    yield from client_for(runner, outbox, {"API_TOKEN": TOKEN, "API_TOKEN_READS": "1"})


@pytest.fixture
def open_api(runner: asyncio.Runner, outbox: Outbox) -> Iterator[Client]:
    yield from client_for(runner, outbox, {})


def assert_refused(answer: Answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.headers["WWW-Authenticate"] == CHALLENGE
    assert isinstance(answer.body, dict) and isinstance(answer.body["error"], str)


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_TOKEN": ""}, "API_TOKEN is empty or holds whitespace"),
        ({"API_TOKEN": "has a space in it, long"}, "API_TOKEN is empty or holds whitespace"),
        ({"API_TOKEN": "short"}, "shorter than 16 characters"),
        ({"API_TOKEN_READS": "1"}, "API_TOKEN_READS=1 needs API_TOKEN"),
        ({"API_TOKEN": TOKEN, "API_TOKEN_READS": "yes"}, "API_TOKEN_READS='yes'"),
    ],
)
def test_a_bad_token_setting_is_one_line_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(env)
    assert "\n" not in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_token_settings_default_to_none() -> None:
    settings = load_settings({})
    assert settings.api_token is None and settings.api_token_reads is False
    settings = load_settings({"API_TOKEN": TOKEN, "API_TOKEN_READS": "1"})
    assert settings.api_token == TOKEN and settings.api_token_reads is True


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer {TOKEN}", TOKEN),
        ("Bearer ", None),
        (f"Basic {TOKEN}", None),
        ("", None),
    ],
)
def test_bearer_token_is_read_off_the_header(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


# -- mutations ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token-of-some-length", TOKEN + "x", ""])
def test_a_transfer_without_the_token_is_refused_and_publishes_nothing(
    guarded: Client, outbox: Outbox, token: str | None
) -> None:
    answer = guarded.request("POST", "/transfer", token, json={"amount": 10})
    assert_refused(answer)
    assert outbox.take() == []


def test_a_transfer_with_the_token_is_accepted(guarded: Client, outbox: Outbox) -> None:
    answer = guarded.request("POST", "/transfer", TOKEN, json={"amount": 10})
    assert answer.status == 202, answer.body
    assert [sent.topic for sent in outbox.take()] == ["transfer-requests"]


@pytest.mark.parametrize("action", ["retry", "cancel"])
def test_operator_actions_need_the_token(guarded: Client, outbox: Outbox, action: str) -> None:
    assert_refused(guarded.request("POST", f"/sagas/no-such-saga/{action}"))
    assert outbox.take() == []
    # With the token the view itself answers: there is no such saga.
    answer = guarded.request("POST", f"/sagas/no-such-saga/{action}", TOKEN)
    assert answer.status == 404, answer.body


def test_without_a_token_set_everything_is_open(open_api: Client, outbox: Outbox) -> None:
    answer = open_api.request("POST", "/transfer", json={"amount": 10})
    assert answer.status == 202, answer.body
    assert open_api.request("GET", "/sagas").status == 200


# -- reads -------------------------------------------------------------------------------


def test_reads_are_open_by_default(guarded: Client) -> None:
    assert guarded.request("GET", "/sagas").status == 200
    assert guarded.request("GET", "/workflows").status == 200


def test_reads_need_the_token_when_asked(guarded_reads: Client) -> None:
    for path in ("/sagas", "/workflows", "/sagas/no-such-saga"):
        assert_refused(guarded_reads.request("GET", path))
        assert_refused(guarded_reads.request("GET", path, "wrong-token-of-some-length"))
    assert guarded_reads.request("GET", "/sagas", TOKEN).status == 200
    assert guarded_reads.request("GET", "/sagas/no-such-saga", TOKEN).status == 404


@pytest.mark.parametrize("path", ["/health", "/metrics", "/", "/static/dashboard.js"])
def test_health_metrics_and_the_page_stay_open(guarded_reads: Client, path: str) -> None:
    assert guarded_reads.request("GET", path).status != 401


def test_a_preflight_is_answered_without_the_token(guarded_reads: Client) -> None:
    answer = guarded_reads.request(
        "OPTIONS",
        "/sagas",
        headers={
            "Origin": "http://127.0.0.1:8000",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
    assert answer.headers["Access-Control-Allow-Methods"] == "GET"


# -- forwarding, logging and the tooling -----------------------------------------------


def test_a_forwarded_request_keeps_the_callers_authorization() -> None:
    authorization = {"Authorization": f"Bearer {TOKEN}"}
    request = cast(Request, make_mocked_request("GET", "/sagas", headers=authorization))
    assert forwarded_headers(request) == {
        LOCAL_HEADER: "1",
        "Authorization": f"Bearer {TOKEN}",
    }
    bare = cast(Request, make_mocked_request("GET", "/sagas"))
    assert forwarded_headers(bare) == {LOCAL_HEADER: "1"}


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({"WEB_BIND": "0.0.0.0"}, True),
        ({"WEB_BIND": "::"}, True),
        ({"WEB_BIND": "127.0.0.1"}, False),
        ({"WEB_BIND": "localhost"}, False),
        ({"WEB_BIND": "::1"}, False),
        ({}, False),
        ({"WEB_BIND": "0.0.0.0", "API_TOKEN": TOKEN}, False),
    ],
)
def test_an_open_port_beyond_loopback_is_warned_about(
    caplog: pytest.LogCaptureFixture, env: dict[str, str], warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="saga_streams.web.auth"):
        warn_if_open(load_settings(env))
    lines = [r.getMessage() for r in caplog.records if r.name == "saga_streams.web.auth"]
    assert len(lines) == (1 if warned else 0), lines
    assert all("API_TOKEN" in line for line in lines)


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"authorization": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the answers."""


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_tooling_sends_the_token_of_its_environment(
    echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    assert http_json("GET", echo_url) == (200, {"authorization": None})
    monkeypatch.setenv("API_TOKEN", TOKEN)
    assert http_json("GET", echo_url) == (200, {"authorization": f"Bearer {TOKEN}"})
    own = {"Authorization": "Bearer another-token-given"}
    assert http_json("GET", echo_url, headers=own) == (200, {"authorization": own["Authorization"]})
