"""Answering for every key from any worker of a role.

With several workers per role, each holds the table partitions Kafka assigned it. A view
asked for one key forwards the request to the worker that owns the key's partition (what
Faust's ``table_route`` does, with clear errors); a view that lists a table asks every
worker of the role for its share and merges the answers.

A forwarded request carries ``X-Saga-Local``, and a worker that receives it answers from
its own partitions only: during a rebalance two workers may briefly disagree about who
owns what, and the header keeps them from sending a request back and forth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from faust.types import AppT, CollectionT
from faust.web import Request, Response, View
from yarl import URL

from saga_streams.tables.durable import DurableTable
from saga_streams.web.health import tables_ready

__all__ = [
    "LOCAL_HEADER",
    "Unavailable",
    "answer_for_key",
    "gather_from_peers",
    "is_forwarded",
    "owner_url",
    "peer_urls",
    "serving",
    "unavailable",
]

LOCAL_HEADER = "X-Saga-Local"
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Unavailable(Exception):
    """No worker can answer right now (a rebalance is under way, or the owner is down)."""


def is_forwarded(request: Request) -> bool:
    return request.headers.get(LOCAL_HEADER) == "1"


def _ident(url: URL | str) -> tuple[str, int]:
    url = URL(str(url))
    return (url.host or "", url.port or 80)


def _is_self(app: AppT, url: URL | str) -> bool:
    return _ident(url) == _ident(app.conf.canonical_url)


async def _forward(url: URL) -> tuple[int, Any]:
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(url, headers={LOCAL_HEADER: "1"}) as response,
        ):
            return response.status, await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise Unavailable(f"worker {url.host}:{url.port} did not answer ({exc!r})") from None


def serving(app: AppT) -> bool:
    """Whether this worker's tables can be read: not rebalancing, nothing to recover."""
    return not app.rebalancing and tables_ready(app)


def unavailable(view: View, why: str) -> Response:
    """503: no worker can answer for this right now."""
    return view.json({"error": f"{why}; try again shortly"}, status=503)


async def answer_for_key(
    view: View,
    request: Request,
    table: DurableTable,
    key: str,
    local: Callable[[], Awaitable[Response]],
) -> Response:
    """Answer locally if this worker owns ``key``'s partition, else ask the owner."""
    app = view.app
    if not is_forwarded(request):
        try:
            owner = owner_url(app, table, key)
        except KeyError:
            return unavailable(view, "the partitions are being assigned")
        if not _is_self(app, owner):
            target = request.url.with_host(owner.host or "127.0.0.1").with_port(owner.port)
            try:
                status, body = await _forward(target)
            except Unavailable as exc:
                return unavailable(view, str(exc))
            return view.json(body, status=status)
    if not serving(app):
        return unavailable(view, "this worker is recovering its tables")
    return await local()


def owner_url(app: AppT, table: DurableTable, key: str) -> URL:
    """The web address of the worker holding ``key``'s partition of ``table``; KeyError
    while partitions are unassigned. (Not Faust's ``router.key_store``: see
    ``DurableTable.partition_of``.)"""
    tp = table.partition_of(key)
    for host, topics in app.router.table_metadata(table.name).items():
        if tp.partition in topics.get(tp.topic, ()):
            return URL(str(host))
    raise KeyError(tp)


def peer_urls(app: AppT, table: CollectionT) -> list[URL]:
    """The web address of every worker holding active partitions of ``table``."""
    hosts = app.router.table_metadata(table.name)
    return [URL(str(host)) for host, topics in hosts.items() if any(topics.values())]


async def gather_from_peers(
    view: View,
    request: Request,
    table: CollectionT,
    local: Callable[[], Any],
) -> list[Any]:
    """``local()`` here and the same request's answer from every other worker of the role.

    Raises ``Unavailable`` if a worker holding partitions does not answer: a list that
    silently left out a worker's share would look complete and be wrong.
    """
    app = view.app
    if is_forwarded(request):
        if not serving(app):
            raise Unavailable("this worker is recovering its tables")
        return [local()]
    answers: list[Any] = []
    remote = []
    peers = peer_urls(app, table)
    if not peers:
        raise Unavailable("the partitions are being assigned")
    for url in peers:
        if _is_self(app, url):
            if not serving(app):
                raise Unavailable("this worker is recovering its tables")
            answers.append(local())
        else:
            remote.append(request.url.with_host(url.host or "127.0.0.1").with_port(url.port))
    for status, body in await asyncio.gather(*(_forward(u) for u in remote)):
        if status != 200:
            raise Unavailable(f"a worker answered {status}: {body}")
        answers.append(body)
    return answers
