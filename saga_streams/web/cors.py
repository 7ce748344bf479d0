"""Cross-origin reads: the dashboard, served by the orchestrator, reads the participants'
balances from their own ports, which a browser allows only when they say so."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["allow_cross_origin_reads"]


def _preflight(request: web.Request) -> web.Response:
    """A browser asks before a cross-origin GET with an Authorization header (reads that
    need the token); only GET is offered, so other origins still cannot post."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        },
    )


@web.middleware
async def allow_cross_origin_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Access-Control-Allow-Origin: *`` on every GET answer. Only reads: a POST from
    another origin still gets no such header, so a page elsewhere cannot read what a
    transfer, retry or cancel answered."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request)
    response = await handler(request)
    if request.method == "GET":
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response
