"""A saga's history: what happened to it, oldest first, kept in its table value.

Each entry is made from an event the engine already emits (``entry_for``), so the history
and the log tell the same story. It is bounded (``bounded``): a saga that retries for
hours keeps its first entries (how it started), one entry saying how many were dropped,
and its latest ones, never more than ``CAP`` in all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from saga_streams.money import format_dollars
from saga_streams.saga.events import (
    CompensationDispatched,
    CompensationRefused,
    MessageIgnored,
    OperatorActed,
    OperatorActionIgnored,
    RollbackStarted,
    SagaCompleted,
    SagaEvent,
    SagaFailed,
    SagaRefused,
    SagaRolledBack,
    SagaStarted,
    StepCompensated,
    StepDispatched,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
)

__all__ = ["CAP", "DROPPED", "HEAD", "HistoryEntry", "bounded", "entry_for", "recorded"]

#: The most entries a saga keeps; the first ``HEAD`` are never dropped.
CAP = 50
HEAD = 5
#: The event of the entry that stands for the entries dropped between the head and the
#: latest ones.
DROPPED = "dropped"


@dataclass(frozen=True)
class HistoryEntry:
    at: int  # epoch milliseconds
    event: str
    step: int | None
    detail: str
    #: How many entries this one stands for (a ``DROPPED`` entry only).
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "event": self.event,
            "step": self.step,
            "detail": self.detail,
        }
        if self.dropped:
            data["dropped"] = self.dropped
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(data["at"], data["event"], data["step"], data["detail"], data.get("dropped", 0))


def _why(reason: str | None) -> str:
    return f": {reason}" if reason else " (no reason given)"


def _forward_entry(event: SagaEvent) -> tuple[str, int | None, str] | None:
    """Entries of the forward path and of the operator."""
    match event:
        case SagaStarted():
            amount = format_dollars(event.amount_cents)
            return "started", None, f"{event.workflow}, {amount}, {event.total_steps} steps"
        case StepDispatched():
            attempt = f"attempt {event.attempt} of {event.max_attempts}"
            if event.resent:  # a redelivery's resend has no entry: this one timed out
                return (
                    "resent",
                    event.step,
                    f"no reply in time: {event.label} sent again, {attempt}",
                )
            return "command_sent", event.step, f"{event.label} sent, {attempt}"
        case StepSucceeded():
            return "step_succeeded", event.step, event.label
        case StepFailed():
            return "step_failed", event.step, f"{event.label}: {event.error}"
        case StepTimedOut():
            return "timed_out", event.step, f"no reply after {event.attempts} attempts"
        case OperatorActed():
            return (
                "operator_action",
                event.step,
                f"{event.action} by {event.by}{_why(event.reason)}",
            )
        case OperatorActionIgnored():
            who = f"{event.action} by {event.by}{_why(event.reason)}"
            return "operator_action_ignored", None, f"{who}; ignored: {event.why}"
    return None


def _ending_entry(event: SagaEvent) -> tuple[str, int | None, str] | None:
    """Entries of the rollback and of the end."""
    match event:
        case RollbackStarted():
            return "rollback_started", event.failed_step, f"from step {event.failed_step}"
        case CompensationDispatched():
            what = f"{event.participant} compensation sent, attempt {event.attempt}"
            if event.resent:
                what = f"no reply in time: {what}"
            return "compensation_sent", event.step, what
        case StepCompensated():
            return "compensated", event.step, event.participant
        case CompensationRefused():
            return "compensation_refused", event.step, event.error
        case SagaCompleted():
            return "finished", None, "COMPLETED"
        case SagaRolledBack():
            return "finished", None, "ROLLED_BACK"
        case SagaFailed():
            return "finished", None, f"FAILED: {event.error}"
        case SagaRefused():
            return "refused", None, event.reason
    return None


def entry_for(event: SagaEvent, now: int) -> HistoryEntry | None:
    """The history entry of one engine event, or None for an event not worth keeping (an
    ignored duplicate or late reply: Kafka's redeliveries are not the saga's story)."""
    if isinstance(event, MessageIgnored):
        return None
    if isinstance(event, StepDispatched | CompensationDispatched) and event.redelivered:
        return None
    found = _forward_entry(event) or _ending_entry(event)
    if found is None:
        raise AssertionError(f"no history entry for {event!r}")
    return HistoryEntry(now, *found)


def bounded(
    history: tuple[HistoryEntry, ...], cap: int = CAP, head: int = HEAD
) -> tuple[HistoryEntry, ...]:
    """``history`` cut to at most ``cap`` entries: the first ``head``, one ``DROPPED``
    entry counting every entry dropped so far, and the latest ones."""
    if len(history) <= cap:
        return history
    first, rest = history[:head], list(history[head:])
    already = 0
    if rest and rest[0].event == DROPPED:
        already = rest.pop(0).dropped
    keep = cap - head - 1
    cut, latest = rest[: len(rest) - keep], rest[len(rest) - keep :]
    count = already + len(cut)
    marker = HistoryEntry(
        cut[-1].at, DROPPED, None, f"{count} entries dropped to keep the history short", count
    )
    return (*first, marker, *latest)


def recorded(
    history: tuple[HistoryEntry, ...], events: Iterable[SagaEvent], now: int
) -> tuple[HistoryEntry, ...]:
    """``history`` with the entries of ``events`` appended, bounded."""
    new = tuple(e for e in (entry_for(event, now) for event in events) if e is not None)
    return bounded(history + new) if new else history
