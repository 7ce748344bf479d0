"""Settings read from the environment, the same names in every role.

Everything a worker needs to know about its surroundings comes from here, so a bad value
stops the worker at start with one clear line instead of failing at the first message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from saga_streams.connection import PROTOCOLS, SASL_MECHANISMS, KafkaAccess
from saga_streams.money import parse_cents
from saga_streams.roles import PARTICIPANTS
from saga_streams.rules import ID_RULE, IDENTIFIER
from saga_streams.saga.policy import RetryPolicy

__all__ = ["ACCOUNT_ID", "ConfigError", "Settings", "load_settings", "parse_accounts"]

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_SAGA_RETENTION_S = 7 * 24 * 3600
#: An hour of outage (a worker or the broker down, a backlog) a saga may sit through
#: between two commands about one action before its participants may forget the action.
DEFAULT_LEDGER_GRACE_S = 3600
#: Sized from the open-loop benchmark (BENCHMARKS.md, "Backpressure"), 2 cores: capacity
#: ~190 sagas/s x 0.34 s (p50 with 64 in flight) = 64 (Little's law); at twice the capacity
#: (377 POSTs/s) 64 kept ~190/s completed with p99 0.54-0.57 s from 202 to end, where 150
#: fell to 44-134/s with p99 2.3-5.4 s and no cap to 3-29/s with p99 51-58 s.
DEFAULT_MAX_IN_FLIGHT = 64
#: How long the changelogs keep a tombstone once compacted: Kafka's own default, a day.
DEFAULT_TOMBSTONE_RETENTION_S = 86400


class ConfigError(ValueError):
    """An environment variable holds a value the system cannot run with."""


@dataclass(frozen=True)
class Settings:
    kafka: KafkaAccess
    data_dir: Path
    failure_rates: Mapping[str, float]  # participant role name -> probability of failing
    partitions: int
    #: participant role name -> its accounts, each with its opening balance in cents;
    #: the first is the participant's default (the seed's A, B, C)
    accounts: Mapping[str, Mapping[str, int]]
    retry_policy: RetryPolicy
    #: Replicas of every topic and changelog the system creates (TOPIC_REPLICATION_FACTOR).
    replication_factor: int = 1
    #: Where the worker's web server listens, and the host other workers of its role use
    #: to reach it (the host of its Faust ``canonical_url``).
    web_bind: str = "127.0.0.1"
    web_host: str = "127.0.0.1"
    #: The bearer token every mutating request must carry (API_TOKEN); None: no token.
    api_token: str | None = None
    #: Whether reads need the token too (API_TOKEN_READS=1), apart from health and metrics.
    api_token_reads: bool = False
    #: How long a terminal saga is kept after it ended (SAGA_RETENTION, seconds; default
    #: 7 days), at least as long as the participants' ledgers remember its commands.
    saga_retention_ms: int = DEFAULT_SAGA_RETENTION_S * 1000
    #: STARTED and COMPENSATING sagas one orchestrator worker holds before POST /transfer
    #: answers 429 (MAX_IN_FLIGHT).
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: The changelogs' ``delete.retention.ms`` (TOMBSTONE_RETENTION, seconds): how long a
    #: removed key's tombstone outlives compaction. A worker's local tables older than
    #: half of it are discarded at start (``tables/local.py``).
    tombstone_retention_ms: int = DEFAULT_TOMBSTONE_RETENTION_S * 1000

    @property
    def kafka_broker(self) -> str:
        """The bootstrap list as one Faust broker URL: ``kafka://h1:9092;kafka://h2:9092``."""
        return self.kafka.broker_url

    @property
    def opening_balances(self) -> dict[str, int]:
        """Every account of every participant -> its opening balance in cents."""
        return {a: cents for owned in self.accounts.values() for a, cents in owned.items()}


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; use a probability in [0, 1]") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigError(f"{name}={raw!r} is out of range; use a probability in [0, 1]")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not 1 <= value <= maximum:
        raise ConfigError(f"{name}={raw!r} is out of range; use 1 to {maximum}")
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, maximum: float, minimum: float = 0.1
) -> int:
    """A duration in seconds (fractions allowed), returned in milliseconds."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return round(default * 1000)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not minimum <= value <= maximum:  # also rejects NaN
        raise ConfigError(f"{name}={raw!r} is out of range; use {minimum:g} to {maximum:g} seconds")
    return round(value * 1000)


def _balance(env: Mapping[str, str], name: str, default_cents: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default_cents
    try:
        return parse_cents(raw, allow_zero=True)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


#: An account id: letters, digits, ``_``, ``.`` and ``-``; readable as a Kafka key.
ACCOUNT_ID = IDENTIFIER
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
#: At most this many accounts per service: each is a key in the account table.
MAX_ACCOUNTS = 100_000


def parse_accounts(name: str, raw: str) -> dict[str, int]:
    """``SERVICE_A_ACCOUNTS``: comma-separated ``ID=BALANCE``; ``{1..500}`` in an id opens
    a numbered range (``A-{001..500}=100`` opens A-001 to A-500 with $100 each)."""
    opened: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        ident, sep, amount = (part.strip() for part in entry.partition("="))
        if not sep:
            raise ConfigError(f"{name}: {entry!r} is not ID=BALANCE")
        try:
            cents = parse_cents(amount, allow_zero=True)
        except ValueError as exc:
            raise ConfigError(f"{name}: {entry!r}: {exc}") from None
        for account in _expand(name, ident):
            if not ACCOUNT_ID.fullmatch(account):
                raise ConfigError(f"{name}: account id {account!r} must be {ID_RULE}")
            if account in opened:
                raise ConfigError(f"{name}: account {account!r} is opened twice")
            opened[account] = cents
            if len(opened) > MAX_ACCOUNTS:
                raise ConfigError(f"{name}: more than {MAX_ACCOUNTS} accounts")
    return opened


def _expand(name: str, ident: str) -> list[str]:
    match = _RANGE.search(ident)
    if match is None:
        return [ident]
    first, last = match.group(1), match.group(2)
    if int(last) < int(first) or int(last) - int(first) >= MAX_ACCOUNTS:
        raise ConfigError(f"{name}: range {match.group(0)} is empty or too large")
    width = len(first) if first.startswith("0") else 0
    head, tail = ident[: match.start()], ident[match.end() :]
    return [f"{head}{n:0{width}d}{tail}" for n in range(int(first), int(last) + 1)]


def _participant_accounts(env: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Each participant's default account (``OPENING_BALANCE_<ID>``) and the accounts
    ``SERVICE_<X>_ACCOUNTS`` opens beside it; an id belongs to one participant only."""
    accounts = {
        role: {p.account: _balance(env, p.opening_balance_variable, p.default_opening_cents)}
        for role, p in PARTICIPANTS.items()
    }
    owners = {p.account: role for role, p in PARTICIPANTS.items()}
    for role, p in PARTICIPANTS.items():
        variable = p.accounts_variable
        for account, cents in parse_accounts(variable, env.get(variable, "")).items():
            owner = owners.setdefault(account, role)
            if owner != role or account in accounts[role]:
                default = PARTICIPANTS[owner].account == account
                raise ConfigError(
                    f"{variable}: account {account!r} already belongs to {owner}"
                    + (f" (set {PARTICIPANTS[owner].opening_balance_variable})" if default else "")
                )
            accounts[role][account] = cents
    return accounts


_ADDRESS = re.compile(r"(?:kafka://)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")


def _bootstrap(env: Mapping[str, str]) -> tuple[str, ...]:
    """``KAFKA_BROKER``: one broker or a comma-separated list, each ``host:port`` with or
    without ``kafka://`` (the bare form is what kcat users type)."""
    raw = env.get("KAFKA_BROKER", "").strip() or DEFAULT_BROKER
    addresses = []
    for entry in filter(None, (part.strip() for part in re.split("[,;]", raw))):
        match = _ADDRESS.fullmatch(entry)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise ConfigError(
                f"KAFKA_BROKER={raw!r}: {entry!r} is not host:port; "
                "use e.g. 127.0.0.1:9092 or a comma-separated list of them"
            )
        addresses.append(f"{match.group(1)}:{int(match.group(2))}")
    if not addresses:
        raise ConfigError(f"KAFKA_BROKER={raw!r} names no broker")
    return tuple(addresses)


def _file(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}={raw!r}: no such file")
    return str(path.absolute())


def _kafka_access(env: Mapping[str, str]) -> KafkaAccess:
    """The bootstrap list and ``KAFKA_SECURITY_PROTOCOL`` with what that protocol needs."""
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper() or "PLAINTEXT"
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of {', '.join(PROTOCOLS)}"
        )
    sasl = {
        name: env.get(name, "").strip() or None
        for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
    }
    tls = {name: _file(env, name) for name in _TLS_FILES}
    if protocol.startswith("SASL_"):
        mechanism = (sasl["KAFKA_SASL_MECHANISM"] or "").upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM={mechanism!r}: with {protocol}, use one of "
                + ", ".join(SASL_MECHANISMS)
            )
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if sasl[name] is None:
                raise ConfigError(f"{name} is needed with KAFKA_SECURITY_PROTOCOL={protocol}")
        sasl["KAFKA_SASL_MECHANISM"] = mechanism
    else:
        given = [name for name, value in sasl.items() if value is not None]
        if given:
            raise ConfigError(
                f"{given[0]} is set but KAFKA_SECURITY_PROTOCOL={protocol} has no SASL"
            )
    if protocol.endswith("SSL"):
        if (tls["KAFKA_SSL_CERTFILE"] is None) != (tls["KAFKA_SSL_KEYFILE"] is None):
            raise ConfigError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
    else:
        given = [name for name, value in tls.items() if value is not None]
        if given:
            raise ConfigError(
                f"{given[0]} is set but KAFKA_SECURITY_PROTOCOL={protocol} has no TLS"
            )
    return KafkaAccess(
        bootstrap=_bootstrap(env),
        security_protocol=protocol,
        sasl_mechanism=sasl["KAFKA_SASL_MECHANISM"],
        sasl_username=sasl["KAFKA_SASL_USERNAME"],
        sasl_password=sasl["KAFKA_SASL_PASSWORD"],
        ssl_cafile=tls["KAFKA_SSL_CAFILE"],
        ssl_certfile=tls["KAFKA_SSL_CERTFILE"],
        ssl_keyfile=tls["KAFKA_SSL_KEYFILE"],
    )


#: Shorter tokens are guessable; the check cannot tell a random one from a word, though.
MIN_TOKEN_LENGTH = 16


def _api_token(env: Mapping[str, str]) -> str | None:
    """``API_TOKEN``: unset means no authentication; set, it must be usable as a bearer
    token (an empty one set by mistake must not silently turn authentication off)."""
    raw = env.get("API_TOKEN")
    if raw is None:
        return None
    if not raw or any(c.isspace() for c in raw):
        raise ConfigError("API_TOKEN is empty or holds whitespace; unset it or use a long token")
    if len(raw) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters")
    return raw


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{name}={raw!r}: use 1 (on) or 0 (off)")
    return raw == "1"


def _token_reads(env: Mapping[str, str]) -> bool:
    reads = _flag(env, "API_TOKEN_READS")
    if reads and _api_token(env) is None:
        raise ConfigError("API_TOKEN_READS=1 needs API_TOKEN")
    return reads


_TLS_FILES = ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    return Settings(
        kafka=_kafka_access(env),
        data_dir=Path(env.get("DATA_DIR", "").strip() or ".data"),
        failure_rates={
            name: _rate(env, p.failure_rate_variable, p.default_failure_rate)
            for name, p in PARTICIPANTS.items()
        },
        partitions=_positive_int(env, "TOPIC_PARTITIONS", 4, maximum=256),
        replication_factor=_positive_int(env, "TOPIC_REPLICATION_FACTOR", 1, maximum=32),
        accounts=_participant_accounts(env),
        web_bind=env.get("WEB_BIND", "").strip() or "127.0.0.1",
        web_host=env.get("WEB_HOST", "").strip() or "127.0.0.1",
        api_token=_api_token(env),
        api_token_reads=_token_reads(env),
        saga_retention_ms=_seconds(
            env, "SAGA_RETENTION", DEFAULT_SAGA_RETENTION_S, maximum=10 * 365 * 86400
        ),
        max_in_flight=_positive_int(env, "MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, 1_000_000),
        tombstone_retention_ms=_seconds(
            env,
            "TOMBSTONE_RETENTION",
            DEFAULT_TOMBSTONE_RETENTION_S,
            maximum=365 * 86400,
            minimum=60,
        ),
        retry_policy=RetryPolicy(
            step_timeout_ms=_seconds(env, "STEP_TIMEOUT", 5.0, maximum=3600),
            max_attempts=_positive_int(env, "STEP_MAX_ATTEMPTS", 3, maximum=100),
            max_delay_ms=_seconds(env, "RETRY_MAX_DELAY", 60.0, maximum=86400),
            ledger_grace_ms=_seconds(
                env, "LEDGER_GRACE", DEFAULT_LEDGER_GRACE_S, maximum=30 * 86400, minimum=0
            ),
        ),
    )
