"""The operator's dashboard: ``GET /`` on the orchestrator serves one plain page whose
script polls the HTTP API (``/sagas``, ``/sagas/{id}``, the participants' ``/accounts``).

No build step and nothing fetched from elsewhere: the page, its script and its style are
package data (``web/static/``), served as they are.
"""

from __future__ import annotations

from importlib.resources import files

import faust
from faust.web import Request, Response, View

__all__ = ["ASSETS", "asset_text", "register_dashboard"]

#: What ``GET /static/{name}`` serves, with its media type; nothing else in the folder is.
ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def asset_text(name: str) -> str:
    """A file of the dashboard, read from the installed package."""
    return (files("saga_streams.web") / "static" / name).read_text(encoding="utf-8")


def register_dashboard(app: faust.App) -> None:
    """``GET /`` (the page) and ``GET /static/{name}`` (its script and style)."""

    @app.page("/")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.html(asset_text("index.html"))

    @app.page("/static/{name}")
    class DashboardAsset(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in ASSETS:
                return self.json({"error": f"no asset {name!r}"}, status=404)
            # no-cache: a browser left open across an upgrade asks again for the script.
            headers = {"Cache-Control": "no-cache"}
            return self.text(asset_text(name), content_type=ASSETS[name], headers=headers)
