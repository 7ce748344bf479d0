"""``GET /openapi.json``: the OpenAPI 3.1 description of a worker's own HTTP API.

One checked-in document per kind of role (``orchestrator.json``, ``participant.json``,
package data next to this module): the API is published as written, and a test compares
each document with the routes the role's app registers, both ways. The participant's
document is generic (its default account and port are its own, see ``servers``), so the
three participants serve the same one.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import faust
from faust.web import Request, Response, View

__all__ = ["SpecKind", "register_openapi_view", "spec_document"]

SpecKind = Literal["orchestrator", "participant"]


@cache
def _spec_bytes(kind: SpecKind) -> bytes:
    return (files("saga_streams.web.openapi") / f"{kind}.json").read_bytes()


def spec_document(kind: SpecKind) -> dict[str, Any]:
    """The OpenAPI document of ``kind``, as served."""
    document: dict[str, Any] = json.loads(_spec_bytes(kind))
    return document


def register_openapi_view(app: faust.App, kind: SpecKind) -> None:
    """``GET /openapi.json``: the document of ``kind``, byte for byte as packaged."""

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(_spec_bytes(kind), content_type="application/json")
