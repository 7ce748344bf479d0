"""Settings read from the environment, the same names in every role.

Everything a worker needs to know about its surroundings comes from here, so a bad value
stops the worker at start with one clear line instead of failing at the first message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from saga_streams.money import parse_cents
from saga_streams.roles import PARTICIPANTS
from saga_streams.saga.policy import RetryPolicy

__all__ = ["ConfigError", "Settings", "load_settings"]

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


class ConfigError(ValueError):
    """An environment variable holds a value the system cannot run with."""


@dataclass(frozen=True)
class Settings:
    kafka_broker: str
    data_dir: Path
    failure_rates: Mapping[str, float]  # participant role name -> probability of failing
    partitions: int
    opening_balances: Mapping[str, int]  # account -> opening balance in cents
    retry_policy: RetryPolicy


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


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float) -> int:
    """A duration in seconds (fractions allowed), returned in milliseconds."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return round(default * 1000)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0.1 <= value <= maximum:  # also rejects NaN
        raise ConfigError(f"{name}={raw!r} is out of range; use 0.1 to {maximum:g} seconds")
    return round(value * 1000)


def _balance(env: Mapping[str, str], name: str, default_cents: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default_cents
    try:
        return parse_cents(raw, allow_zero=True)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _broker(env: Mapping[str, str]) -> str:
    raw = env.get("KAFKA_BROKER", "").strip() or DEFAULT_BROKER
    # Faust wants a URL; accept the bare host:port that kcat users type as well.
    return raw if "://" in raw else f"kafka://{raw}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    return Settings(
        kafka_broker=_broker(env),
        data_dir=Path(env.get("DATA_DIR", "").strip() or ".data"),
        failure_rates={
            name: _rate(env, p.failure_rate_variable, p.default_failure_rate)
            for name, p in PARTICIPANTS.items()
        },
        partitions=_positive_int(env, "TOPIC_PARTITIONS", 4, maximum=256),
        opening_balances={
            p.account: _balance(env, p.opening_balance_variable, p.default_opening_cents)
            for p in PARTICIPANTS.values()
        },
        retry_policy=RetryPolicy(
            step_timeout_ms=_seconds(env, "STEP_TIMEOUT", 5.0, maximum=3600),
            max_attempts=_positive_int(env, "STEP_MAX_ATTEMPTS", 3, maximum=100),
            max_delay_ms=_seconds(env, "RETRY_MAX_DELAY", 60.0, maximum=86400),
        ),
    )
