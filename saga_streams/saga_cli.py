"""``python -m saga_streams saga retry|cancel|show ID``: an operator's hand on one saga,
over the orchestrator's HTTP API; ``saga ID`` is ``saga show ID``.

Retry and cancel answer 202 once the orchestrator has the action; the saga moves when its
agent takes it (``saga show`` then tells). The server's ``error`` is printed as it is,
and the exit code is non-zero, for a saga that is unknown (404) or whose state does not
allow the action (409).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any
from urllib.parse import quote

from saga_streams.http_client import http_json
from saga_streams.money import cents, format_dollars
from saga_streams.terminal import Api, ApiError

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m saga_streams saga", description="Look at or move one saga by hand."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, text in (
        ("retry", "send the awaited command again now, with a fresh round of attempts"),
        ("cancel", "roll the saga back from the step it waits on"),
        ("show", "print the saga's steps and history"),
    ):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("saga_id", metavar="ID")
        sub.add_argument(
            "--url", default=DEFAULT_URL, help=f"the orchestrator (default {DEFAULT_URL})"
        )
        if verb != "show":
            sub.add_argument(
                "--reason", help="why, for the saga's history (at most 500 characters)"
            )
            sub.add_argument(
                "--operator",
                default=None,
                help="who asks, for the history (default: your user name)",
            )
    return parser


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password file
        return "cli"


def _show(saga: dict[str, Any]) -> str:
    lines = [
        f"saga {saga['saga_id']}: {saga['status']} ({saga['workflow']}, "
        f"{format_dollars(cents(saga['amount']))} "
        f"from {saga['from_account']} to {saga['to_account']})"
    ]
    if saga.get("cancelled_by"):
        lines.append(f"cancelled by {saga['cancelled_by']}")
    lines.append("steps:")
    for step in saga["steps"]:
        error = f"  error: {step['error']}" if step["error"] else ""
        lines.append(
            f"  {step['step']}. {step['service']}.{step['action']} on {step['account']}: "
            f"{step['outcome']} (attempts {step['attempts']}, compensations "
            f"{step['compensation_attempts']}){error}"
        )
    lines.append("history:")
    for entry in saga.get("history", []):
        step = "" if entry["step"] is None else f" step {entry['step']}"
        lines.append(f"  {entry['at']}  {entry['event']}{step}: {entry['detail']}")
    return "\n".join(lines)


def _request(args: argparse.Namespace) -> dict[str, Any]:
    api = Api(args.url, http_json)
    path = "/sagas/" + quote(args.saga_id, safe="")
    if args.verb == "show":
        return api.call("GET", path)
    body = {} if args.reason is None else {"reason": args.reason}
    api.headers = {**api.headers, "X-Operator": args.operator or _who()}
    return api.call("POST", f"{path}/{args.verb}", body)


VERBS = ("retry", "cancel", "show")


def main(argv: list[str]) -> int:
    # ``saga ID``: the detail, the common case, without the verb.
    if argv and argv[0] not in VERBS and not argv[0].startswith("-"):
        argv = ["show", *argv]
    args = _parser().parse_args(argv)
    try:
        body = _request(args)
    except ApiError as exc:
        print(f"saga_streams: {exc}", file=sys.stderr)
        return 1
    if args.verb == "show":
        print(_show(body))
        return 0
    print(
        f"{args.verb} of saga {args.saga_id} accepted (status {body['status']} when asked); "
        f"follow it with: python -m saga_streams saga show {args.saga_id}"
    )
    return 0
