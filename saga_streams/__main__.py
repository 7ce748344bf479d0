"""Command line: ``python -m saga_streams worker ROLE | run | kafka | transfer | ...``."""

from __future__ import annotations

import importlib
import sys

from saga_streams.roles import ROLES

USAGE = """\
python -m saga_streams worker ROLE [--web-port N] [faust worker options...]
python -m saga_streams run     # local Kafka + one worker per role, Ctrl-C stops all
                               #   --brokers 3: on a three-node Kafka cluster, --secure: SASL_SSL
python -m saga_streams kafka   # the local Kafka alone, in the foreground, and the settings
                               #   a worker needs; --brokers 3: three nodes, --secure: SASL_SSL
python -m saga_streams audit   # check the invariants through the HTTP API (exit 1 if broken)
python -m saga_streams chaos   # kill, pause and restart processes under load; check after
python -m saga_streams bench   # completed sagas per second, latency, CPU, against the ceiling
python -m saga_streams listing-bench  # what GET /sagas costs with --sagas N (100,000) held
python -m saga_streams floor-bench    # what Faust costs per event when an agent does the
                               #   least a saga hop does: the floor under a saga's CPU
python -m saga_streams saga retry|cancel ID [--reason R] [--url U]  # an operator's hand on
                               #   one saga; saga [show] ID: its steps and history
python -m saga_streams transfer AMOUNT [--from A] [--to B] [--workflow W] [--wait]
                               #   start a saga, print its id; --wait: follow it, exit 0
                               #   only if COMPLETED (1 FAILED/ROLLED_BACK, 3 --timeout)
python -m saga_streams sagas [--status S] [--limit N]  # the newest sagas, as a table
python -m saga_streams balance [ACCOUNT]  # one account's balance, or each participant's
                               #   default account; each takes --url (API_TOKEN is sent)
ROLE is one of: """ + ", ".join(ROLES)


def worker(argv: list[str]) -> int:
    """Run the Faust worker of one role: the same as ``faust -A <module> worker``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    role = ROLES.get(name)
    if role is None:
        print(
            f"saga_streams: unknown role {name!r}; use one of {', '.join(ROLES)}", file=sys.stderr
        )
        return 2
    app = importlib.import_module(role.module).app
    if not any(arg in ("-l", "--loglevel") or arg.startswith("--loglevel=") for arg in rest):
        rest = ["--loglevel", "info", *rest]
    sys.argv = [f"faust -A {role.module}", "worker", *rest]
    app.main()  # runs until stopped; exits through SystemExit
    return 0


#: Each command's module, imported only when the command runs; its ``main(argv)`` runs it.
COMMANDS = {
    "kafka": "saga_streams.local.kafka",
    "audit": "saga_streams.audit",
    "chaos": "saga_streams.local.chaos",
    "bench": "saga_streams.local.bench",
    "listing-bench": "saga_streams.local.listing_bench",
    "floor-bench": "saga_streams.local.floor",
    "saga": "saga_streams.saga_cli",
    "run": "saga_streams.local.stack",
}
#: The terminal client's commands: ``terminal.main(command, argv)``.
TERMINAL_COMMANDS = ("transfer", "sagas", "balance")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "worker":
        return worker(rest)
    if command in TERMINAL_COMMANDS:
        from saga_streams.terminal import main as terminal_main

        return terminal_main(command, rest)
    module = COMMANDS.get(command)
    if module is None:
        print(f"saga_streams: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    code: int = importlib.import_module(module).main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
