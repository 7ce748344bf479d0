"""The published OpenAPI documents (``GET /openapi.json``) against the apps themselves:
every route a role's app registers is in its document and every operation of the
document is a route, both ways; the documents are valid OpenAPI 3.1; and the bounds they
state are the ones the views enforce."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import faust
import pytest
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from openapi_spec_validator import validate

from saga_streams.agents.orchestrator import Orchestrator
from saga_streams.config import load_settings
from saga_streams.money import MAX_AMOUNT_CENTS
from saga_streams.saga.state import STATUSES
from saga_streams.web.openapi import SpecKind, spec_document
from saga_streams.web.validation import MAX_PAGE_SIZE
from saga_streams.workflows import WORKFLOWS
from tests.test_agents import Http, Outbox, build_service_a, fake_wiring, in_memory

#: The methods an OpenAPI path item may hold; aiohttp adds HEAD to every GET by itself.
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def routes(app: faust.App) -> set[tuple[str, str]]:
    """(method, path) of every route the app's web server answers, HEAD left out."""
    router = cast(AiohttpWeb, app.web).web_app.router
    return {
        (route.method.lower(), route.resource.canonical)
        for route in router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


# Each role's app as the in-memory agent tests build it: a fake Wiring, tables in memory.


@pytest.fixture
def orchestrator_app(runner: asyncio.Runner) -> faust.App:
    role = Orchestrator(load_settings({}), WORKFLOWS, fake_wiring(Outbox()))
    return in_memory(role.app, runner)


@pytest.fixture
def service_a_app(runner: asyncio.Runner) -> faust.App:
    return build_service_a(runner, Outbox(), failure_rate="0")


@pytest.mark.parametrize("kind", ["orchestrator", "participant"])
def test_documents_are_valid_openapi_3_1(kind: SpecKind) -> None:
    document = spec_document(kind)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_orchestrator_routes_match_its_document(orchestrator_app: faust.App) -> None:
    registered = routes(orchestrator_app)
    documented = operations(spec_document("orchestrator"))
    assert registered - documented == set(), "routes missing from orchestrator.json"
    assert documented - registered == set(), "operations orchestrator.json invents"


def test_participant_routes_match_its_document(service_a_app: faust.App) -> None:
    registered = routes(service_a_app)
    documented = operations(spec_document("participant"))
    assert registered - documented == set(), "routes missing from participant.json"
    assert documented - registered == set(), "operations participant.json invents"


@pytest.fixture
def service_a_http(runner: asyncio.Runner, service_a_app: faust.App) -> Iterator[Http]:
    http = Http(runner, service_a_app)
    yield http
    http.close()


def test_each_worker_serves_its_own_document(
    runner: asyncio.Runner,
    orchestrator_app: faust.App,
    service_a_http: Http,
) -> None:
    http = Http(runner, orchestrator_app)
    try:
        assert http.get("/openapi.json") == (200, spec_document("orchestrator"))
    finally:
        http.close()
    assert service_a_http.get("/openapi.json") == (200, spec_document("participant"))


def _parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    found = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert len(found) == 1, f"{path} has no single parameter {name!r}"
    schema: dict[str, Any] = found[0]["schema"]
    return schema


def test_documented_bounds_are_the_enforced_ones() -> None:
    orchestrator_doc = spec_document("orchestrator")
    schemas = orchestrator_doc["components"]["schemas"]
    assert tuple(schemas["SagaStatus"]["enum"]) == STATUSES
    amount = schemas["TransferRequest"]["properties"]["amount"]
    assert amount["maximum"] * 100 == MAX_AMOUNT_CENTS
    assert amount["exclusiveMinimum"] == 0
    assert amount["multipleOf"] == 0.01
    for kind, path in (("orchestrator", "/sagas"), ("participant", "/accounts")):
        limit = _parameter(spec_document(cast(SpecKind, kind)), path, "limit")
        assert (limit["minimum"], limit["maximum"]) == (1, MAX_PAGE_SIZE)


def test_mutating_operations_require_the_bearer_token() -> None:
    document = spec_document("orchestrator")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for method, path in operations(document):
        operation = document["paths"][path][method]
        if method != "get":
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in operation["responses"], (method, path)


@pytest.mark.parametrize("kind", ["orchestrator", "participant"])
def test_every_error_answer_has_the_error_schema(kind: SpecKind) -> None:
    document = spec_document(kind)
    for method, path in operations(document):
        if path == "/health":
            continue  # its 503 is the health report itself: "not ready", not an error
        for status, answer in document["paths"][path][method]["responses"].items():
            if int(status) < 400:
                continue
            schema = answer["content"]["application/json"]["schema"]
            if "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            # Every error carries "error"; a 503 body may carry more (POST /transfer's saga_id).
            assert "error" in schema["required"], (method, path, status)
