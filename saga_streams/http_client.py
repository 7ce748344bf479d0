"""A small HTTP client for the workers' JSON API, for the audit and the tooling."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["http_json"]


def http_json(
    method: str,
    url: str,
    body: Any = None,
    timeout: float = 10.0,
    raw: bytes | None = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request to a worker's JSON API: (status, decoded body). Sends
    ``Authorization: Bearer $API_TOKEN`` when the environment has a token and ``headers``
    carry no Authorization of their own."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    token = os.environ.get("API_TOKEN", "").strip()
    # The same variable the workers read: the tooling and the audit work with a token set.
    if token and not request.has_header("Authorization"):
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload or b"null")
        except ValueError:
            return exc.code, payload.decode(errors="replace")
