"""Failure injection, as the seed has it: service A fails 20% of commands, service B 30%.

The decision is a function of the command id, not a fresh random roll. A command can be
executed twice when a worker dies after its reply went out but before its table write
reached the changelog; the second execution must then give the answer the orchestrator
already has, or a step that "succeeded" would leave no trace in the account.
"""

from __future__ import annotations

import hashlib

__all__ = ["should_fail"]


def should_fail(participant: str, command_id: str, rate: float) -> bool:
    """True for about ``rate`` of all command ids, always the same for one id."""
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{participant}/{command_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate
