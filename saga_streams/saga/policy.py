"""How long the orchestrator waits for a reply, and how often it asks again."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    #: Wait for the first reply; each later attempt waits twice as long as the one before.
    step_timeout_ms: int = 5_000
    #: Sends of an action before the orchestrator gives up on it and compensates. A
    #: compensation is never given up: it is sent again until a participant acknowledges it.
    max_attempts: int = 3
    #: The longest wait between two sends, however many attempts came before.
    max_delay_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.step_timeout_ms <= 0 or self.max_attempts < 1 or self.max_delay_ms <= 0:
            raise ValueError(f"invalid retry policy: {self}")

    def delay_ms(self, attempt: int) -> int:
        """How long to wait for a reply to the ``attempt``-th send (1-based)."""
        doubled: int = self.step_timeout_ms << min(attempt - 1, 32)
        return min(doubled, self.max_delay_ms)
