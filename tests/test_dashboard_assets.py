"""The dashboard's files and the cross-origin middleware, without a broker (the page in a
browser on a real stack: tests/test_dashboard.py)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from saga_streams.web.cors import allow_cross_origin_reads
from saga_streams.web.dashboard import ASSETS, asset_text


def test_the_page_loads_only_its_own_files() -> None:
    page = asset_text("index.html")
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(linked) == sorted(f"/static/{name}" for name in ASSETS)
    for name in ("index.html", *ASSETS):
        # No CDN, no fonts, no analytics: the page works on a machine with no internet.
        # The one URL is the participants' default, built from the page's own host.
        text = asset_text(name).replace("http://${host}", "")
        assert "http://" not in text and "https://" not in text, name


def test_the_page_has_what_the_browser_test_finds() -> None:
    page = asset_text("index.html")
    for element_id in (
        "status-counts",
        "saga-rows",
        "status-filter",
        "saga-lookup",
        "step-rows",
        "history",
        "retry-button",
        "cancel-button",
        "action-result",
        "api-token",
        "participant-urls",
        "account-tables",
    ):
        assert f'id="{element_id}"' in page, element_id
    script = asset_text("dashboard.js")
    assert "sessionStorage" in script and "Authorization" in script


async def _answers() -> tuple[str | None, str | None]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[allow_cross_origin_reads])
    app.router.add_get("/accounts", hello)
    app.router.add_post("/transfer", hello)
    async with TestClient(TestServer(app)) as client:
        read = await client.get("/accounts", headers={"Origin": "http://127.0.0.1:8000"})
        write = await client.post("/transfer", headers={"Origin": "http://elsewhere"})
        return (
            read.headers.get("Access-Control-Allow-Origin"),
            write.headers.get("Access-Control-Allow-Origin"),
        )


def test_cross_origin_reads_are_allowed_and_writes_are_not() -> None:
    assert asyncio.run(_answers()) == ("*", None)
