"""The orchestrator's HTTP API: ``POST /transfer``, ``GET /sagas``, ``GET /sagas/{id}``."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

import faust
from faust.web import Request, Response, View

from saga_streams.messages import TransferRequested, encode
from saga_streams.money import dollars
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import Saga, iso_ms
from saga_streams.saga.workflow import DEFAULT_WORKFLOW, WORKFLOWS, Workflow
from saga_streams.tables.sagas import SagaStore
from saga_streams.web.validation import BadRequest, parse_saga_query, parse_transfer

__all__ = ["register_saga_views", "saga_json", "workflow_json"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def saga_json(saga: Saga, policy: RetryPolicy | None = None) -> dict[str, Any]:
    """A saga as the API shows it; with ``policy``, also its retry state and settings."""
    workflow = WORKFLOWS[saga.workflow]
    steps = []
    for number, (step, state) in enumerate(zip(workflow.steps, saga.steps, strict=True), 1):
        shown: dict[str, Any] = {
            "step": number,
            "service": step.participant,
            "action": step.action,
            "compensation": step.compensation,
            "outcome": state.outcome,
            "error": state.error,
        }
        if policy is not None:
            shown["amount"] = dollars(step.amount_cents(saga.amount_cents))
            shown["attempts"] = state.attempts
            shown["compensation_attempts"] = state.compensation_attempts
        steps.append(shown)
    body: dict[str, Any] = {
        "saga_id": saga.saga_id,
        "workflow": saga.workflow,
        "amount": dollars(saga.amount_cents),
        "status": saga.status,
        "steps": steps,
        "created_at": iso_ms(saga.created_at),
        "updated_at": iso_ms(saga.updated_at),
    }
    if policy is not None:
        body["next_retry_at"] = None if saga.deadline is None else iso_ms(saga.deadline)
        body["retry_policy"] = {
            "step_timeout_s": policy.step_timeout_ms / 1000,
            "max_attempts": policy.max_attempts,
            "max_delay_s": policy.max_delay_ms / 1000,
        }
    return body


def workflow_json(workflow: Workflow) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "default": workflow.name == DEFAULT_WORKFLOW,
        "description": workflow.description,
        "steps": [
            {
                "step": number,
                "participant": step.participant,
                "account": step.account,
                "action": step.action,
                "action_topic": step.action_topic,
                "compensation": step.compensation,
                "compensation_topic": step.compensation_topic,
                "amount": step.amount,
            }
            for number, step in enumerate(workflow.steps, start=1)
        ],
    }


def register_saga_views(
    app: faust.App, sagas: SagaStore, requests: faust.TopicT, policy: RetryPolicy
) -> None:
    @app.page("/transfer")
    class Transfer(View):
        async def post(self, request: Request) -> Response:
            try:
                media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
                transfer = parse_transfer(media_type, await request.read())
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            # The view may not write the saga table (only agents can), so it publishes the
            # request and the orchestrator agent creates the saga. 202 is answered only
            # once Kafka has acknowledged the request: an accepted saga is never lost.
            saga_id = uuid.uuid4().hex[:16]
            message = TransferRequested(
                saga_id=saga_id,
                workflow=transfer.workflow,
                amount_cents=transfer.amount_cents,
                requested_at=_now_ms(),
            )
            pending = await requests.send(key=saga_id, value=encode(message))
            await pending
            return self.json(
                {
                    "saga_id": saga_id,
                    "amount": dollars(transfer.amount_cents),
                    "status": "STARTED",
                    "message": "Transfer saga initiated",
                },
                status=202,
            )

    @app.page("/sagas")
    class SagaList(View):
        async def get(self, request: Request) -> Response:
            try:
                query = parse_saga_query(dict(request.query))
            except BadRequest as exc:
                return self.json({"error": str(exc)}, status=400)
            # older_than: sagas created that many seconds ago or earlier (stuck ones, with
            # a non-terminal status filter).
            cutoff = None if query.older_than is None else _now_ms() - query.older_than * 1000
            matching = [
                s
                for s in sagas.all()
                if query.status in (None, s.status) and (cutoff is None or s.created_at <= cutoff)
            ]
            matching.sort(key=lambda s: (s.created_at, s.saga_id), reverse=True)
            after = [
                s
                for s in matching
                if query.cursor is None or (s.created_at, s.saga_id) < query.cursor
            ]
            page = after[: query.limit]
            next_path = None
            if len(after) > query.limit:
                last = page[-1]
                params = {"cursor": f"{last.created_at}.{last.saga_id}", "limit": str(query.limit)}
                if query.status:
                    params["status"] = query.status
                if query.older_than is not None:
                    params["older_than"] = f"{query.older_than:g}"
                next_path = f"/sagas?{urlencode(sorted(params.items()))}"
            return self.json(
                {"sagas": [saga_json(s) for s in page], "count": len(matching), "next": next_path}
            )

    @app.page("/workflows")
    class WorkflowList(View):
        async def get(self, request: Request) -> Response:
            return self.json({"workflows": [workflow_json(w) for w in WORKFLOWS.values()]})

    @app.page("/sagas/{saga_id}")
    class SagaDetail(View):
        async def get(self, request: Request, saga_id: str) -> Response:
            saga = sagas.get(saga_id)
            if saga is None:
                return self.json({"error": f"no saga {saga_id!r}"}, status=404)
            return self.json(saga_json(saga, policy))
