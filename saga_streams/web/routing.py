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
    "Alone",
    "Peers",
    "Unavailable",
    "answer_for_key",
    "forward",
    "forwarded_headers",
    "gather_from_peers",
    "is_forwarded",
    "unavailable",
]

LOCAL_HEADER = "X-Saga-Local"
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Unavailable(Exception):
    """No worker can answer right now (a rebalance is under way, or the owner is down)."""


def is_forwarded(request: Request) -> bool:
    return request.headers.get(LOCAL_HEADER) == "1"


def forwarded_headers(request: Request) -> dict[str, str]:
    """The headers of a request forwarded to another worker of the role: the local mark,
    and the caller's Authorization, which the other worker checks again (with
    ``API_TOKEN_READS=1`` it would refuse the forwarded request without it)."""
    headers = {LOCAL_HEADER: "1"}
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


def _ident(url: URL | str) -> tuple[str, int]:
    url = URL(str(url))
    return (url.host or "", url.port or 80)


class Peers:
    """The workers of this worker's role, as Faust's assignment shows them: who holds
    which partition of a table, and at which web address."""

    def __init__(self, app: AppT) -> None:
        self.app = app

    def is_self(self, url: URL) -> bool:
        return _ident(url) == _ident(self.app.conf.canonical_url)

    def serving(self) -> bool:
        """Whether this worker's tables can be read: not rebalancing, nothing to recover."""
        return not self.app.rebalancing and tables_ready(self.app)

    def recovered(self) -> bool:
        """Whether this worker's tables hold all their changelogs do for its active
        partitions (a rebalance that is not over may still move them)."""
        return tables_ready(self.app)

    def holds(self, table: DurableTable, key: str) -> bool:
        """Whether this worker holds ``key``'s partition as an active one (with several
        workers per role, each holds some partitions; a standby copy does not count)."""
        return table.partition_of(key) in self.app.assignor.assigned_actives()

    def owner_url(self, table: DurableTable, key: str) -> URL:
        """The web address of the worker holding ``key``'s partition of ``table``; KeyError
        while partitions are unassigned. (Not Faust's ``router.key_store``: see
        ``DurableTable.partition_of``.)"""
        tp = table.partition_of(key)
        for host, topics in self.app.router.table_metadata(table.name).items():
            if tp.partition in topics.get(tp.topic, ()):
                return URL(str(host))
        raise KeyError(tp)

    def urls(self, table: CollectionT) -> list[URL]:
        """The web address of every worker holding active partitions of ``table``."""
        hosts = self.app.router.table_metadata(table.name)
        return [URL(str(host)) for host, topics in hosts.items() if any(topics.values())]


class Alone(Peers):
    """One worker that holds every partition and is always serving: a role's views seen
    without Kafka (the agent tests)."""

    def serving(self) -> bool:
        return True

    def recovered(self) -> bool:
        return True

    def holds(self, table: DurableTable, key: str) -> bool:
        return True

    def owner_url(self, table: DurableTable, key: str) -> URL:
        return URL(str(self.app.conf.canonical_url))

    def urls(self, table: CollectionT) -> list[URL]:
        return [URL(str(self.app.conf.canonical_url))]


async def forward(url: URL, headers: dict[str, str]) -> tuple[int, Any]:
    """GET ``url`` from another worker of the role: (status, JSON body); ``Unavailable``
    if it does not answer."""
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise Unavailable(f"worker {url.host}:{url.port} did not answer ({exc!r})") from None


def unavailable(view: View, why: str) -> Response:
    """503: no worker can answer for this right now."""
    return view.json({"error": f"{why}; try again shortly"}, status=503)


async def answer_for_key(
    view: View,
    request: Request,
    peers: Peers,
    table: DurableTable,
    key: str,
    local: Callable[[], Awaitable[Response]],
) -> Response:
    """Answer locally if this worker owns ``key``'s partition, else ask the owner."""
    if not is_forwarded(request):
        try:
            owner = peers.owner_url(table, key)
        except KeyError:
            return unavailable(view, "the partitions are being assigned")
        if not peers.is_self(owner):
            target = request.url.with_host(owner.host or "127.0.0.1").with_port(owner.port)
            try:
                status, body = await forward(target, forwarded_headers(request))
            except Unavailable as exc:
                return unavailable(view, str(exc))
            return view.json(body, status=status)
    if not peers.serving():
        return unavailable(view, "this worker is recovering its tables")
    return await local()


async def gather_from_peers(
    request: Request, peers: Peers, table: CollectionT, local: Callable[[], Any]
) -> list[Any]:
    """``local()`` here and the same request's answer from every other worker of the role.

    Raises ``Unavailable`` if a worker holding partitions does not answer: a list that
    silently left out a worker's share would look complete and be wrong.
    """
    if is_forwarded(request):
        if not peers.serving():
            raise Unavailable("this worker is recovering its tables")
        return [local()]
    answers: list[Any] = []
    remote = []
    urls = peers.urls(table)
    if not urls:
        raise Unavailable("the partitions are being assigned")
    for url in urls:
        if peers.is_self(url):
            if not peers.serving():
                raise Unavailable("this worker is recovering its tables")
            answers.append(local())
        else:
            remote.append(request.url.with_host(url.host or "127.0.0.1").with_port(url.port))
    headers = forwarded_headers(request)
    for status, body in await asyncio.gather(*(forward(u, headers) for u in remote)):
        if status != 200:
            raise Unavailable(f"a worker answered {status}: {body}")
        answers.append(body)
    return answers
