"""The operator's HTTP API: ``POST /sagas/{id}/retry`` and ``POST /sagas/{id}/cancel``.

Only the orchestrator's agent writes the saga table, so a view does not move a saga: it
checks that the action makes sense now (404 for an unknown saga, 409 for one whose state
does not allow it), publishes an ``OperatorAction`` keyed by the saga id onto
``saga-operator-actions``, and answers 202 with the saga as it stands. The agent hands the
action to the engine, which takes it, or ignores it if the saga moved on meanwhile, and
records either in the saga's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View

from saga_streams.app import OPERATOR_TOPIC
from saga_streams.messages import OperatorAction, OperatorVerb, encode
from saga_streams.saga.state import TERMINAL, now_ms
from saga_streams.web.routing import (
    Unavailable,
    forward,
    forwarded_headers,
    is_forwarded,
    unavailable,
)
from saga_streams.web.sagas import ACK_WAIT_S, SagaViews, saga_json
from saga_streams.web.validation import BadRequest, json_object

__all__ = [
    "MAX_OPERATOR_LENGTH",
    "MAX_REASON_LENGTH",
    "OperatorViews",
    "parse_operator_body",
    "register_operator_views",
]

MAX_REASON_LENGTH = 500
#: The X-Operator header is written into the history: a name, not a document.
MAX_OPERATOR_LENGTH = 100
OPERATOR_HEADER = "X-Operator"


def parse_operator_body(content_type: str, body: bytes) -> str | None:
    """The reason of a retry or cancel: an empty body, or JSON ``{"reason": "..."}``."""
    if not body.strip():
        return None
    data = json_object(content_type, body, example='{"reason": "..."}')
    unknown = sorted(set(data) - {"reason"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; expected only 'reason'")
    reason = data.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadRequest(f"reason must be at most {MAX_REASON_LENGTH} characters")
    return reason or None


def _operator(request: Request) -> str:
    """Who asks: the X-Operator header, else "http"."""
    name = request.headers.get(OPERATOR_HEADER, "").strip()
    if len(name) > MAX_OPERATOR_LENGTH or not name.isprintable():
        raise BadRequest(f"{OPERATOR_HEADER} must be a printable name of at most 100 characters")
    return name or "http"


def _conflict(action: OperatorVerb, saga: dict[str, Any]) -> str | None:
    """Why the saga's state does not allow ``action``, or None if it does."""
    status = saga["status"]
    if action == "retry" and status in TERMINAL:
        return f"saga {saga['saga_id']} already ended {status}: nothing to retry"
    if action == "cancel" and (status in TERMINAL or status == "COMPENSATING"):
        return f"saga {saga['saga_id']} is already {status}: too late to cancel"
    return None


@dataclass(frozen=True)
class OperatorViews:
    """Retry and cancel, over the orchestrator's saga views (their table, sender, peers)."""

    sagas: SagaViews

    async def _saga(self, request: Request, saga_id: str) -> tuple[int, dict[str, Any]]:
        """The saga as ``GET /sagas/{id}`` shows it, from whichever worker holds it."""
        views = self.sagas
        table = views.sagas.table
        if not is_forwarded(request):
            try:
                owner = views.peers.owner_url(table, saga_id)
            except KeyError:
                raise Unavailable("the partitions are being assigned") from None
            if not views.peers.is_self(owner):
                status, body = await forward(
                    owner.with_path(f"/sagas/{saga_id}"), forwarded_headers(request)
                )
                if status not in (200, 404) or not isinstance(body, dict):
                    raise Unavailable(f"the worker holding saga {saga_id!r} answered {status}")
                return status, body
        if not views.peers.serving():
            raise Unavailable("this worker is recovering its tables")
        saga = views.sagas.read(saga_id)
        if saga is None:
            return 404, {"error": f"no saga {saga_id!r}"}
        return 200, saga_json(saga, views.rules.workflows, views.policy)

    async def act(
        self, view: View, request: Request, saga_id: str, action: OperatorVerb
    ) -> Response:
        try:
            media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            reason = parse_operator_body(media_type, await request.read())
            by = _operator(request)
        except BadRequest as exc:
            return view.json({"error": str(exc)}, status=400)
        try:
            status, saga = await self._saga(request, saga_id)
        except Unavailable as exc:
            return unavailable(view, str(exc))
        if status != 200:
            return view.json(saga, status=status)
        if action == "cancel" and saga.get("cancelled_by"):
            return view.json(saga, status=202)  # cancelled already: the same request again
        conflict = _conflict(action, saga)
        if conflict is not None:
            return view.json({"error": conflict}, status=409)
        message = OperatorAction(saga_id, action, by, now_ms(), reason)
        why = await self.sagas.publish(OPERATOR_TOPIC, saga_id, encode(message))
        if why is not None:
            error = f"Kafka did not take the {action} within {ACK_WAIT_S:g}s ({why}); try again"
            return view.json({"error": error}, status=503)
        return view.json(saga, status=202)


def register_operator_views(app: faust.App, views: OperatorViews) -> None:
    """``POST /sagas/{id}/retry`` and ``POST /sagas/{id}/cancel``."""

    @app.page("/sagas/{saga_id}/retry")
    class SagaRetry(View):
        async def post(self, request: Request, saga_id: str) -> Response:
            return await views.act(self, request, saga_id, "retry")

    @app.page("/sagas/{saga_id}/cancel")
    class SagaCancel(View):
        async def post(self, request: Request, saga_id: str) -> Response:
            return await views.act(self, request, saga_id, "cancel")
