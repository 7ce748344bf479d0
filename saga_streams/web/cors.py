"""Cross-origin reads: the dashboard, served by the orchestrator, reads the participants'
balances from their own ports, which a browser allows only when they say so."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["allow_cross_origin_reads"]


@web.middleware
async def allow_cross_origin_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Access-Control-Allow-Origin: *`` on every GET answer. Only reads: a POST from
    another origin still gets no such header, so a page elsewhere cannot read what a
    transfer, retry or cancel answered."""
    response = await handler(request)
    if request.method == "GET":
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response
