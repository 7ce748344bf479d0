"""How long the orchestrator waits for a reply, and how often it asks again."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARRIVAL_MARGIN_MS", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    #: Wait for the first reply; each later attempt waits twice as long as the one before.
    step_timeout_ms: int = 5_000
    #: Sends of an action before the orchestrator gives up on it and compensates. A
    #: compensation is never given up: it is sent again until a participant acknowledges it.
    max_attempts: int = 3
    #: The longest wait between two sends, however many attempts came before.
    max_delay_ms: int = 60_000
    #: How much longer than this policy allows a saga may take between two commands about
    #: one action, because a process or the broker was down or a backlog built up: the
    #: timeouts that pace a saga only fire while its orchestrator runs. The participants
    #: remember an action this much longer (LEDGER_GRACE; the settings default is an hour).
    ledger_grace_ms: int = 0

    def __post_init__(self) -> None:
        if (
            self.step_timeout_ms <= 0
            or self.max_attempts < 1
            or self.max_delay_ms <= 0
            or self.ledger_grace_ms < 0
        ):
            raise ValueError(f"invalid retry policy: {self}")

    def delay_ms(self, attempt: int) -> int:
        """How long to wait for a reply to the ``attempt``-th send (1-based)."""
        doubled: int = self.step_timeout_ms << min(attempt - 1, 32)
        return min(doubled, self.max_delay_ms)

    def action_window_ms(self) -> int:
        """From a step's first send to the orchestrator giving up on it: every send of
        an action happens within this window of the first (``Command.issued_at``)."""
        return sum(self.delay_ms(attempt) for attempt in range(1, self.max_attempts + 1))

    def command_window_ms(self, steps: int) -> int:
        """The longest a saga of ``steps`` steps goes between two commands about one
        action: its later steps' forward runs (each at most an action window) before the
        first compensation, then at most one more wait between two sends of it. Holds
        when each compensation is acknowledged the first time it can be done."""
        return steps * self.action_window_ms() + self.max_delay_ms

    def ledger_retention_ms(self, steps: int) -> int:
        """How long a participant remembers an action after last touching it (stream
        time): a command window, plus ``ARRIVAL_MARGIN_MS`` for the time between a send
        and its append and for the orchestrator's and participant's clocks to differ, plus
        the grace for outages. The argument is in ``accounts.py``; a saga is kept at
        least this long too."""
        return self.command_window_ms(steps) + ARRIVAL_MARGIN_MS + self.ledger_grace_ms


#: Send-to-append time and clock difference between workers that the ledger window allows.
ARRIVAL_MARGIN_MS = 10_000
