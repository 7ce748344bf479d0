"""Token authentication: with ``API_TOKEN`` set, whatever changes money or a saga (every
method but GET, HEAD and OPTIONS: ``POST /transfer``, the operator's retry and cancel)
needs ``Authorization: Bearer <token>``; with ``API_TOKEN_READS=1`` the reads need it too.

Health, metrics, the dashboard page with its static files and the OpenAPI document stay
open: they carry no account or saga data, and probes and scrapers hold no token.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from saga_streams.config import Settings

__all__ = ["PUBLIC_PATHS", "REALM", "bearer_token", "require_token", "warn_if_open"]

log = logging.getLogger(__name__)

REALM = "saga_streams"
#: Readable without the token even when reads need it.
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/", "/openapi.json"})
_PUBLIC_PREFIXES = ("/static/",)
_READS = frozenset({"GET", "HEAD"})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _is_public(request: web.Request) -> bool:
    if request.method == "OPTIONS":  # a preflight never carries credentials
        return True
    path = request.path
    return path in PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def _unauthorized(why: str) -> web.Response:
    return web.json_response(
        {"error": why},
        status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
    )


def require_token(settings: Settings) -> Middleware:
    """The middleware that checks the bearer token, or one that lets everything through
    when no token is set."""
    expected = None if settings.api_token is None else settings.api_token.encode()
    reads_too = settings.api_token_reads

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or (request.method in _READS and not reads_too):
            return await handler(request)
        if _is_public(request):
            return await handler(request)
        given = bearer_token(request.headers.get("Authorization", ""))
        if given is None:
            return _unauthorized("this request needs an Authorization: Bearer <token> header")
        # Constant time: how long a wrong token takes to refuse says nothing about it.
        if not hmac.compare_digest(given.encode(), expected):
            return _unauthorized("the bearer token is wrong")
        return await handler(request)

    return check_token


def warn_if_open(settings: Settings) -> None:
    """One warning line when the web server listens beyond loopback with no token."""
    if settings.api_token is None and settings.web_bind not in _LOOPBACK:
        log.warning(
            "WEB_BIND=%s and no API_TOKEN: anyone who reaches this port can start "
            "transfers and retry or cancel sagas; set API_TOKEN (docs/deployment.md)",
            settings.web_bind,
        )
