"""``POST /sagas/{id}/retry`` and ``/cancel`` on the real orchestrator app, in memory (the
fakes of ``test_agents.py``): what the views answer, what they publish, and what the agent
makes of it."""

from __future__ import annotations

import json

import pytest

from saga_streams.messages import Command, OperatorAction
from tests import test_agents as agents
from tests.test_agents import (
    REPLIES,
    REQUESTS,
    Http,
    OrchestratorDriver,
    Outbox,
    reply_to,
    transfer,
)

# The in-memory orchestrator of the agent tests, and what it needs.
orchestrator = agents.orchestrator
orchestrator_app = agents.orchestrator_app
orchestrator_http = agents.orchestrator_http
sagas = agents.sagas

OPERATOR = "saga-operator-actions"


def published(outbox: Outbox) -> OperatorAction:
    """The one operator action sent since the last look."""
    sent = outbox.take()
    assert [(s.topic, s.key) for s in sent] == [(OPERATOR, sent[0].key)], sent
    action = sent[0].message
    assert isinstance(action, OperatorAction) and sent[0].key == action.saga_id
    return action


def awaited_command(outbox: Outbox) -> Command:
    sent = outbox.take()
    assert len(sent) == 1 and isinstance(sent[0].message, Command), sent
    return sent[0].message


def started(sagas: OrchestratorDriver, outbox: Outbox, saga_id: str = "s1") -> Command:
    sagas.deliver(REQUESTS, transfer(saga_id))
    return awaited_command(outbox)


def test_retry_answers_202_with_the_saga_and_publishes_the_action(
    orchestrator_http: Http, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    started(sagas, outbox)
    body = json.dumps({"reason": "A is back"}).encode()
    status, saga = orchestrator_http.post("/sagas/s1/retry", body, headers={"X-Operator": "ops"})
    assert status == 202
    assert (saga["saga_id"], saga["status"], saga["history"][0]["event"]) == (
        "s1",
        "STARTED",
        "started",
    )
    action = published(outbox)
    assert (action.saga_id, action.action, action.by, action.reason) == (
        "s1",
        "retry",
        "ops",
        "A is back",
    )
    sagas.deliver(OPERATOR, action)
    assert awaited_command(outbox).command_id == "s1-1"
    _, detail = orchestrator_http.get("/sagas/s1")
    assert [(e["event"], e["detail"]) for e in detail["history"][-2:]] == [
        ("operator_action", "retry by ops: A is back"),
        ("command_sent", "service-a.deduct sent, attempt 1 of 3"),
    ]


def test_cancel_starts_the_rollback_and_a_second_cancel_is_202_again(
    orchestrator_http: Http, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    deduct = started(sagas, outbox)
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    awaited_command(outbox)
    assert orchestrator_http.post("/sagas/s1/cancel", b"")[0] == 202
    action = published(outbox)
    assert (action.action, action.by, action.reason) == ("cancel", "http", None)
    sagas.deliver(OPERATOR, action)
    remove = awaited_command(outbox)
    assert (remove.kind, remove.step) == ("COMPENSATION", 2)
    status, saga = orchestrator_http.post("/sagas/s1/cancel", b"")
    assert (status, saga["status"], saga["cancelled_by"]) == (202, "COMPENSATING", "http")
    assert outbox.take() == []  # cancelled already: nothing more to publish


def test_actions_the_state_does_not_allow_are_409(
    orchestrator_http: Http, sagas: OrchestratorDriver, outbox: Outbox
) -> None:
    deduct = started(sagas, outbox)
    sagas.deliver(REPLIES, reply_to(deduct, "FAILED", "Insufficient funds"))
    assert sagas.saga("s1").status == "FAILED"
    status, body = orchestrator_http.post("/sagas/s1/retry", b"")
    assert (status, body) == (409, {"error": "saga s1 already ended FAILED: nothing to retry"})
    status, body = orchestrator_http.post("/sagas/s1/cancel", b"")
    assert (status, body) == (409, {"error": "saga s1 is already FAILED: too late to cancel"})

    deduct = started(sagas, outbox, "s2")
    sagas.deliver(REPLIES, reply_to(deduct, "SUCCESS"))
    add = awaited_command(outbox)
    sagas.deliver(REPLIES, reply_to(add, "FAILED", "Account verification failed"))
    outbox.take()
    assert sagas.saga("s2").status == "COMPENSATING"
    status, body = orchestrator_http.post("/sagas/s2/cancel", b"")
    assert (status, body) == (409, {"error": "saga s2 is already COMPENSATING: too late to cancel"})
    assert orchestrator_http.post("/sagas/s2/retry", b"")[0] == 202  # resends the refund
    assert outbox.take()[0].topic == OPERATOR


def test_an_unknown_saga_is_404(orchestrator_http: Http, outbox: Outbox) -> None:
    for action in ("retry", "cancel"):
        assert orchestrator_http.post(f"/sagas/nope/{action}", b"") == (
            404,
            {"error": "no saga 'nope'"},
        )
    assert outbox.take() == []


@pytest.mark.parametrize(
    ("body", "content_type", "headers"),
    [
        (b'{"reason": "x", "force": true}', "application/json", {}),
        (b'{"reason": 42}', "application/json", {}),
        (json.dumps({"reason": "x" * 501}).encode(), "application/json", {}),
        (b'{"reason": "x", "reason": "y"}', "application/json", {}),
        (b"reason=x", "application/x-www-form-urlencoded", {}),
        (b"[1]", "application/json", {}),
        (b"{", "application/json", {}),
        (b"", "application/json", {"X-Operator": "x" * 101}),
    ],
    ids=["unknown", "number", "long", "twice", "form", "array", "broken", "operator"],
)
def test_a_bad_body_is_a_400_that_publishes_nothing(
    orchestrator_http: Http,
    sagas: OrchestratorDriver,
    outbox: Outbox,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
) -> None:
    started(sagas, outbox)
    for action in ("retry", "cancel"):
        status, answer = orchestrator_http.post(f"/sagas/s1/{action}", body, content_type, headers)
        assert status == 400 and isinstance(answer["error"], str), answer
    assert outbox.take() == []
