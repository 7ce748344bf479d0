"""``python -m saga_streams transfer|sagas|balance``: the HTTP API from a terminal.

``transfer AMOUNT`` starts a saga (``POST /transfer``) and prints its id; with ``--wait``
it follows the saga (``GET /sagas/{id}`` about every 0.3 s) and exits 0 only if it
COMPLETED. ``sagas`` lists the newest sagas as a table; ``balance [ACCOUNT]`` asks the
participant that owns the account. The server's ``error`` is printed as it is and the
exit code is non-zero; a server that cannot be reached is one line, never a traceback.
``API_TOKEN``, when set, is sent as a bearer token (by ``http_json``).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from saga_streams.config import ConfigError, load_settings
from saga_streams.http_client import http_json
from saga_streams.money import cents, dollars, format_dollars, parse_cents
from saga_streams.roles import PARTICIPANTS
from saga_streams.saga.state import STATUSES, TERMINAL
from saga_streams.web.validation import MAX_PAGE_SIZE

__all__ = [
    "DEFAULT_URL",
    "Api",
    "ApiError",
    "SagaWatch",
    "main",
    "render_sagas",
    "wait_for_end",
]

DEFAULT_URL = "http://127.0.0.1:8000"
#: How often ``transfer --wait`` asks for the saga: often enough to show each step move.
POLL_INTERVAL_S = 0.3
#: Exit codes: the saga ended otherwise than COMPLETED, or an API error; and a wait that
#: ran out of time (the saga may still end: ``saga ID`` tells).
FAILED_EXIT, TIMEOUT_EXIT = 1, 3

Http = Callable[..., tuple[int, Any]]


class ApiError(Exception):
    """One line for the terminal: the server's ``error``, or why it could not be reached.
    ``status`` is the HTTP status, or None when no answer came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _why(exc: Exception) -> str:
    """``Connection refused`` rather than ``<urlopen error [Errno 111] ...>``."""
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


@dataclass
class Api:
    """One server's JSON API: ``call`` answers the body of a 2xx, raises ApiError else."""

    base: str
    http: Http = http_json
    #: Beyond the bearer token, which ``http_json`` adds from API_TOKEN.
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base = self.base.rstrip("/")

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            status, answer = self.http(method, self.base + path, body, headers=self.headers)
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"cannot reach {self.base}: {_why(exc)}") from None
        except ValueError:  # a 2xx whose body is not JSON: not this API
            raise ApiError(f"{self.base}{path} did not answer JSON") from None
        if status >= 400 or not isinstance(answer, dict):
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ApiError(f"{status}: {error}", status)
        return answer


# -- transfer --------------------------------------------------------------------------
def _step_name(step: Mapping[str, Any]) -> str:
    return f"step {step['step']} {step['service']}.{step['action']} on {step['account']}"


@dataclass
class SagaWatch:
    """What changed in a saga since it was last seen, one line per change."""

    status: str | None = None
    outcomes: dict[int, str] = field(default_factory=dict)

    def changes(self, saga: Mapping[str, Any]) -> list[str]:
        lines = []
        if self.status is None:
            lines.append(
                f"saga {saga['saga_id']}: {saga['workflow']}, "
                f"{format_dollars(cents(saga['amount']))} from {saga['from_account']} "
                f"to {saga['to_account']}"
            )
        moved = None
        if saga["status"] != self.status:
            error = f": {saga['error']}" if saga.get("error") else ""
            moved = f"saga {saga['saga_id']}: {saga['status']}{error}"
        # A status in flight comes before the steps it leads to; an end, after them.
        ended = saga["status"] in TERMINAL
        if moved and not ended:
            lines.append(moved)
        for step in saga["steps"]:
            if step["outcome"] != self.outcomes.get(step["step"], "NOT_STARTED"):
                error = f": {step['error']}" if step.get("error") else ""
                lines.append(f"  {_step_name(step)}: {step['outcome']}{error}")
            self.outcomes[step["step"]] = step["outcome"]
        if moved and ended:
            lines.append(moved)
        self.status = saga["status"]
        return lines


def wait_for_end(
    api: Api,
    saga_id: str,
    timeout_s: float,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Print the saga as it moves until it ends; its terminal status, None on timeout.
    Until then a missing saga (the orchestrator has not created it yet) or a server that
    does not answer (a worker restarting) is waited out: the saga goes on meanwhile."""
    watch = SagaWatch()
    deadline = clock() + timeout_s
    while True:
        try:
            saga = api.call("GET", "/sagas/" + quote(saga_id, safe=""))
        except ApiError as exc:
            if exc.status is not None and exc.status != 404 and exc.status < 500:
                raise
        else:
            for line in watch.changes(saga):
                print(line, file=out, flush=True)
            if saga["status"] in TERMINAL:
                return str(saga["status"])
        if clock() >= deadline:
            return None
        sleep(POLL_INTERVAL_S)


def _transfer(args: argparse.Namespace, api: Api) -> int:
    body: dict[str, Any] = {"amount": dollars(args.amount)}
    for key, value in (
        ("workflow", args.workflow),
        ("from_account", args.from_account),
        ("to_account", args.to_account),
    ):
        if value is not None:
            body[key] = value
    saga_id = str(api.call("POST", "/transfer", body)["saga_id"])
    print(saga_id, flush=True)
    if not args.wait:
        return 0
    status = wait_for_end(api, saga_id, args.timeout, sys.stdout)
    if status == "COMPLETED":
        return 0
    if status is None:
        print(
            f"saga_streams: saga {saga_id} did not end within {args.timeout:g}s "
            f"(timeout); follow it with: python -m saga_streams saga {saga_id}",
            file=sys.stderr,
        )
        return TIMEOUT_EXIT
    print(f"saga_streams: saga {saga_id} ended {status}, not COMPLETED", file=sys.stderr)
    return FAILED_EXIT


# -- sagas -----------------------------------------------------------------------------
def render_sagas(page: Mapping[str, Any]) -> str:
    """``GET /sagas``'s page as a table, newest first as the API orders it."""
    sagas = page["sagas"]
    if not sagas:
        return "no sagas"
    header = ("ID", "STATUS", "AMOUNT", "FROM → TO", "WORKFLOW", "CREATED")
    rows = [header] + [
        (
            s["saga_id"],
            s["status"],
            format_dollars(cents(s["amount"])),
            f"{s['from_account']} → {s['to_account']}",
            s["workflow"],
            s["created_at"].replace("T", " ").removesuffix("Z"),
        )
        for s in sagas
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines = [line.rstrip() for line in lines]
    lines.append(f"{len(sagas)} of {page['count']} saga(s), newest first")
    return "\n".join(lines)


def _sagas(args: argparse.Namespace, api: Api) -> int:
    query = {"limit": str(args.limit)}
    if args.status:
        query["status"] = args.status
    print(render_sagas(api.call("GET", "/sagas?" + urlencode(query))))
    return 0


# -- balance ---------------------------------------------------------------------------
def _owner(account: str) -> str | None:
    """The participant whose settings (``SERVICE_X_ACCOUNTS``) open ``account``."""
    accounts = load_settings().accounts
    return next((role for role, owned in accounts.items() if account in owned), None)


def _balance(args: argparse.Namespace, http: Http) -> int:
    urls = {name: getattr(args, name.replace("-", "_")) for name in PARTICIPANTS}
    if args.account is None:
        targets = [(args.url, "")] if args.url else [(url, "") for url in urls.values()]
    elif args.url:
        targets = [(args.url, args.account)]
    else:
        owner = _owner(args.account)
        if owner is None:
            print(
                f"saga_streams: no participant owns account {args.account!r} in the settings "
                f"({', '.join(p.accounts_variable for p in PARTICIPANTS.values())})",
                file=sys.stderr,
            )
            return FAILED_EXIT
        targets = [(urls[owner], args.account)]
    for url, account in targets:
        path = "/balance" + (f"?{urlencode({'account': account})}" if account else "")
        body = Api(url, http).call("GET", path)
        print(f"{body['account']}: {format_dollars(cents(body['balance']))}")
    return 0


# -- the command line ------------------------------------------------------------------
def _amount(text: str) -> int:
    try:
        return parse_cents(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _limit(text: str) -> int:
    # ASCII only: "²".isdigit() holds, and int() refuses it.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the orchestrator (default {DEFAULT_URL})"
    )


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m saga_streams {command}")
    if command == "transfer":
        parser.description = "Start a transfer saga; print its id."
        parser.add_argument("amount", metavar="AMOUNT", type=_amount, help="dollars, e.g. 100.50")
        parser.add_argument("--from", dest="from_account", metavar="A", help="the payer")
        parser.add_argument("--to", dest="to_account", metavar="B", help="the payee")
        parser.add_argument("--workflow", metavar="W", help="default: the default workflow")
        parser.add_argument(
            "--wait", action="store_true", help="follow the saga; exit 0 only if it COMPLETED"
        )
        parser.add_argument(
            "--timeout", type=_positive, default=120.0, help="seconds --wait waits (120)"
        )
        _url(parser)
    elif command == "sagas":
        parser.description = "List the newest sagas."
        parser.add_argument("--status", choices=STATUSES)
        parser.add_argument("--limit", type=_limit, default=20, help="at most this many (20)")
        _url(parser)
    else:
        parser.description = "The balance of one account, or of each participant's default."
        parser.add_argument("account", metavar="ACCOUNT", nargs="?")
        parser.add_argument(
            "--url", default=None, help="ask this participant (default: the account's owner)"
        )
        for participant in PARTICIPANTS.values():
            role = participant.role
            parser.add_argument(f"--{role.name}", default=f"http://127.0.0.1:{role.web_port}")
    return parser


COMMANDS = ("transfer", "sagas", "balance")


def main(command: str, argv: list[str], http: Http = http_json) -> int:
    """Run ``command`` (one of COMMANDS) with its arguments; ``http`` is injected by tests."""
    args = _parser(command).parse_args(argv)
    try:
        if command == "balance":
            return _balance(args, http)
        api = Api(args.url, http)
        return _transfer(args, api) if command == "transfer" else _sagas(args, api)
    except ApiError as exc:
        print(f"saga_streams: {exc}", file=sys.stderr)
        return FAILED_EXIT
    except ConfigError as exc:
        print(f"saga_streams: {exc}", file=sys.stderr)
        return 2
