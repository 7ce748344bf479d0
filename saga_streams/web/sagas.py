"""The orchestrator's HTTP API: ``POST /transfer``, ``GET /sagas``, ``GET /sagas/{id}``."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.web import Request, Response, View

from saga_streams.app import TRANSFER_REQUEST_TOPIC, Send
from saga_streams.messages import TransferRequested, encode
from saga_streams.money import dollars
from saga_streams.rules import TransferRules
from saga_streams.saga.dsl import Registry, Workflow
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import Saga, epoch_seconds, iso_ms, now_ms
from saga_streams.tables.saga_index import SagaIndex, generation
from saga_streams.tables.sagas import SagaStore
from saga_streams.web.admission import Admission
from saga_streams.web.listing import RenderedSagas
from saga_streams.web.retention import no_saga_error
from saga_streams.web.routing import (
    Peers,
    Unavailable,
    answer_for_key,
    gather_from_peers,
    is_forwarded,
    unavailable,
)
from saga_streams.web.validation import (
    BadRequest,
    SagaQuery,
    TransferInput,
    parse_saga_query,
    parse_transfer,
)

__all__ = [
    "ACK_MARGIN_S",
    "ACK_WAIT_S",
    "SagaViews",
    "register_saga_views",
    "saga_json",
    "workflow_json",
]

#: How long POST /transfer waits for Kafka to acknowledge a request before it answers 503.
ACK_WAIT_S = 10.0
#: A request must be appended this much before the view stops waiting (its accept_by),
#: so that the acknowledgement of an append just in time still reaches the view in time.
#: It also absorbs the difference between the worker's clock and the broker's.
ACK_MARGIN_S = 3.0


def saga_json(saga: Saga, workflows: Registry, policy: RetryPolicy | None = None) -> dict[str, Any]:
    """A saga as the API shows it; with ``policy``, also its retry state and settings."""
    # A refused request may name a workflow that does not exist: its saga has no steps.
    workflow = workflows.get(saga.workflow)
    declared = workflow.steps if workflow is not None else ()
    steps = []
    for number, (step, state) in enumerate(zip(declared, saga.steps, strict=True), 1):
        shown: dict[str, Any] = {
            "step": number,
            "service": step.participant,
            "account": saga.account_of(step),
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
        "from_account": saga.from_account,
        "to_account": saga.to_account,
        "status": saga.status,
        "steps": steps,
        # Why the saga was refused before any step; null for every saga that ran.
        "error": saga.error,
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
        # The detail only: pages of GET /sagas stay small.
        body["cancelled_by"] = saga.cancelled_by
        body["history"] = [
            {"at": iso_ms(e.at), "event": e.event, "step": e.step, "detail": e.detail}
            for e in saga.history
        ]
    return body


def workflow_json(workflow: Workflow, default: str) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "default": workflow.name == default,
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


def _local_page(
    sagas: SagaStore,
    index: SagaIndex,
    rendered: RenderedSagas,
    workflows: Registry,
    query: SagaQuery,
    now_ms: int,
) -> dict[str, Any]:
    """This worker's share of a page: its first ``limit`` matches after the cursor, newest
    first, how many match in all, and how many follow the cursor."""
    # older_than: sagas created that many seconds ago or earlier (stuck ones, with a
    # non-terminal status filter). created_at is whole milliseconds: rounding the cutoff
    # down keeps exactly the sagas at or before it.
    cutoff = None if query.older_than is None else math.floor(now_ms - query.older_than * 1000)
    # The index finds the page and the counts; only the page's sagas are read, and of
    # those only the ones not already rendered (web/listing.py).
    ids, count, remaining = index.page(query.status, query.cursor, query.limit, cutoff)
    return {
        "sagas": rendered.page(ids, sagas.read, lambda saga: saga_json(saga, workflows)),
        "count": count,
        "remaining": remaining,
    }


def _merge_pages(shares: list[dict[str, Any]], query: SagaQuery) -> dict[str, Any]:
    """One page out of every worker's share (each already sorted and cut to the limit)."""
    merged = [saga for share in shares for saga in share["sagas"]]
    merged.sort(key=lambda s: (s["created_at"], s["saga_id"]), reverse=True)
    page = merged[: query.limit]
    next_path = None
    if sum(share["remaining"] for share in shares) > query.limit:
        last = page[-1]
        created = round(epoch_seconds(last["created_at"]) * 1000)
        params = {"cursor": f"{created}.{last['saga_id']}", "limit": str(query.limit)}
        if query.status:
            params["status"] = query.status
        if query.older_than is not None:
            params["older_than"] = f"{query.older_than:g}"
        next_path = f"/sagas?{urlencode(sorted(params.items()))}"
    return {"sagas": page, "count": sum(share["count"] for share in shares), "next": next_path}


@dataclass(frozen=True)
class SagaViews:
    """What the orchestrator's views answer with. ``send``: how a request reaches the
    request topic; ``rules``: what a transfer may ask for, the same rules the agent
    applies; ``peers``: the orchestrator's other workers, which hold the other sagas;
    ``index``: the sagas this worker holds in listing order, so that a page of
    ``GET /sagas`` costs the page."""

    sagas: SagaStore
    send: Send
    policy: RetryPolicy
    rules: TransferRules
    peers: Peers
    index: SagaIndex
    #: At most MAX_IN_FLIGHT sagas in flight on this worker: beyond it, 429.
    admission: Admission
    #: Ended sagas as the listing shows them, rendered once.
    rendered: RenderedSagas = field(default_factory=RenderedSagas)

    async def transfer(self, view: View, request: Request) -> Response:
        try:
            media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            transfer = parse_transfer(media_type, await request.read(), self.rules)
        except BadRequest as exc:
            return view.json({"error": str(exc)}, status=400)
        message = _request(transfer)
        # A valid request is refused here, before anything reaches Kafka, if the worker
        # already holds as many sagas as it can finish quickly.
        mine = self.peers.holds(self.sagas.table, message.saga_id)
        refusal = self.admission.admit(message.saga_id, message.requested_at, mine)
        if refusal is not None:
            retry = {"Retry-After": str(refusal.retry_after_s)}
            return view.json({"error": refusal.error}, status=429, headers=retry)
        # The view may not write the saga table (only agents can), so it publishes the
        # request and the orchestrator agent creates the saga. 202 is answered only once
        # Kafka has acknowledged the request: an accepted saga is never lost. The answer
        # is the seed's, field for field; GET /sagas/{id} shows the accounts.
        why = await self.publish(TRANSFER_REQUEST_TOPIC, message.saga_id, encode(message))
        if why is not None:
            # Kafka cannot take a message back: a request its leader appended in time,
            # still waiting for its replicas, runs once they return. One appended later
            # (no leader until then) is refused by the orchestrator (accept_by). Either
            # way it runs whole or not at all, and the saga id in the answer tells which.
            error = (
                f"Kafka did not acknowledge the transfer within {ACK_WAIT_S:g}s ({why}); "
                f"try again shortly. If the request reached Kafka it may still run once "
                f"the brokers are back: GET /sagas/{message.saga_id} tells"
            )
            return view.json({"error": error, "saga_id": message.saga_id}, status=503)
        accepted = {
            "saga_id": message.saga_id,
            "amount": dollars(transfer.amount_cents),
            "status": "STARTED",
            "message": "Transfer saga initiated",
        }
        return view.json(accepted, status=202)

    async def publish(self, topic: str, key: str, value: bytes) -> str | None:
        """Send and wait for Kafka's acknowledgement, at most ``ACK_WAIT_S``; None once
        acknowledged, else why not (brokers down, or too few in-sync replicas for
        acks=all), for a 503."""
        try:
            async with asyncio.timeout(ACK_WAIT_S):
                pending = await self.send(topic, key, value)
                await pending
        except (TimeoutError, KafkaError, ProducerSendError) as exc:
            return "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
        return None

    async def listing(self, view: View, request: Request) -> Response:
        try:
            query = parse_saga_query(dict(request.query))
        except BadRequest as exc:
            return view.json({"error": str(exc)}, status=400)
        now = now_ms()

        def local() -> dict[str, Any]:
            # Only called while the tables are recovered (gather_from_peers): after a
            # rebalance, the first listing rebuilds the index before it is read.
            self.index.refresh(generation(self.peers.app), self.sagas.stored)
            return _local_page(
                self.sagas, self.index, self.rendered, self.rules.workflows, query, now
            )

        try:
            shares = await gather_from_peers(request, self.peers, self.sagas.table, local)
        except Unavailable as exc:
            return unavailable(view, str(exc))
        if is_forwarded(request):
            return view.json(shares[0])
        return view.json(_merge_pages(shares, query))

    async def workflows(self, view: View, request: Request) -> Response:
        workflows = self.rules.workflows
        listed = [workflow_json(w, workflows.default) for w in workflows.values()]
        return view.json({"workflows": listed})

    async def detail(self, view: View, request: Request, saga_id: str) -> Response:
        async def local() -> Response:
            saga = self.sagas.read(saga_id)
            if saga is None:
                # It may have ended long ago and been removed (agents/expiry.py).
                return view.json({"error": no_saga_error(view.app, saga_id)}, status=404)
            return view.json(saga_json(saga, self.rules.workflows, self.policy))

        return await answer_for_key(view, request, self.peers, self.sagas.table, saga_id, local)


def _request(transfer: TransferInput) -> TransferRequested:
    """The message a valid ``POST /transfer`` publishes, under a new saga id."""
    now = now_ms()
    return TransferRequested(
        saga_id=uuid.uuid4().hex[:16],
        workflow=transfer.workflow,
        amount_cents=transfer.amount_cents,
        requested_at=now,
        from_account=transfer.from_account,
        to_account=transfer.to_account,
        accept_by=now + round((ACK_WAIT_S - ACK_MARGIN_S) * 1000),
    )


def register_saga_views(app: faust.App, views: SagaViews) -> None:
    """``POST /transfer``, ``GET /sagas``, ``GET /workflows``, ``GET /sagas/{id}``."""

    @app.page("/transfer")
    class Transfer(View):
        async def post(self, request: Request) -> Response:
            return await views.transfer(self, request)

    @app.page("/sagas")
    class SagaList(View):
        async def get(self, request: Request) -> Response:
            return await views.listing(self, request)

    @app.page("/workflows")
    class WorkflowList(View):
        async def get(self, request: Request) -> Response:
            return await views.workflows(self, request)

    @app.page("/sagas/{saga_id}")
    class SagaDetail(View):
        async def get(self, request: Request, saga_id: str) -> Response:
            return await views.detail(self, request, saga_id)
