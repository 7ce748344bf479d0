"""Schemathesis against the live stack: every worker's published OpenAPI document
(``GET /openapi.json``) drives generated requests, valid and invalid, at that worker.

Required: no 5xx, every answer as its document says (status, media type, headers, body
schema), every invalid request refused with a 4xx, and, with ``API_TOKEN`` set, no
protected operation answered without the token. Afterwards the money still adds up.

One check is left out: ``positive_data_acceptance`` expects every schema-valid transfer
to be accepted, but whether an account exists, or two parties differ, depends on the
worker's configuration, which no static schema states; such a transfer is a 400 by design.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from saga_streams.http_client import http_json
from saga_streams.saga.state import TERMINAL
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

TOKEN = "fuzz-token-0123456789abcdef"
#: Fixed: the same requests on every run, so a failure reproduces.
SEED = 20261127
#: Test cases per operation and phase: the four runs take about 40 s in all.
EXAMPLES = 100
#: One worker's run; far above what it takes, so only a hang ends here.
RUN_TIMEOUT_S = 180.0
EXCLUDED_CHECKS = "positive_data_acceptance"


def schemathesis(url: str, report: Path) -> dict[str, Any]:
    """Run ``st run`` against the document at ``url``; its JSON report."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", url),
        *("--checks", "all", "--exclude-checks", EXCLUDED_CHECKS),
        *("--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1"),
        *("--header", f"Authorization: Bearer {TOKEN}"),
        *("--generation-database", "none", "--no-color", "--request-timeout", "15"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    # cwd: schemathesis keeps a .schemathesis/ folder of its own in the working directory.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=report.parent
    )
    assert report.exists(), f"schemathesis wrote no report:\n{run.stdout}\n{run.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = run.stdout
    return result


def figures(name: str, result: dict[str, Any]) -> str:
    operations, cases = result["operations"], result["test_cases"]
    return (
        f"{name}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} test cases, {cases['with_failures']} with failures, "
        f"{len(result['failures'])} kinds of failure, {len(result['errors'])} errors, "
        f"{result['running_time']:.1f} s"
    )


def test_every_worker_answers_as_its_document_says(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory(API_TOKEN=TOKEN)
    stack.start()
    # ignored_auth is only meaningful if the token is enforced at all.
    status, _ = http_json("POST", stack.url("orchestrator", "/transfer"), {"amount": 1}, headers={})
    assert status == 401

    results = {}
    for name in ("orchestrator", "service-a", "service-b", "service-c"):
        result = schemathesis(stack.url(name, "/openapi.json"), tmp_path / f"{name}.json")
        results[name] = result
        print(figures(name, result))
    for name, result in results.items():
        assert result["failures"] == [] and result["errors"] == [], result["output"]
        assert result["exit_code"] == 0, result["output"]
        assert result["operations"]["tested"] == result["operations"]["total"], name

    # The fuzzed transfers that were accepted run to their end; then every invariant.
    running = [s["saga_id"] for s in stack.all_sagas() if s["status"] not in TERMINAL]
    stack.wait_terminal(running)
    report = stack.assert_invariants()
    print(f"after the fuzzing: {len(stack.all_sagas())} sagas, audit ok: {report.ok}")
