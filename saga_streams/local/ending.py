"""Waiting until every saga has ended, through the orchestrator's API: one bounded poll.

Shared by the end-to-end tests (:meth:`~saga_streams.local.cluster.LocalCluster.wait_terminal`),
the bench's final wait for the sagas still in flight and the chaos run's quiescence. The
wait is bounded by time and by count, and always says how it ended: the caller decides
whether sagas still pending are a failure (:meth:`Ending.raise_unless_ended`, in tests)
or something to report (the chaos run's violations, the bench's warning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from saga_streams.saga.state import TERMINAL

__all__ = ["Ending", "SagasStillRunning", "wait_until_ended"]

Saga = dict[str, Any]


class SagasStillRunning(AssertionError):
    """The sagas waited for did not all end in time. An AssertionError, so that a test
    reports it as a failure that names them."""


@dataclass(frozen=True)
class Ending:
    """How a wait ended: the last listing, and what (if anything) was still pending."""

    #: Every saga of the last listing that answered (empty if none did).
    sagas: list[Saga]
    #: Sagas waited for, listed, but not in a terminal status yet.
    in_flight: list[str]
    #: Saga ids waited for that the orchestrator does not list (request not read yet).
    unknown: list[str]
    #: The caller's final condition held (True when it gave none).
    settled: bool
    #: The orchestrator answered at least one listing.
    answered: bool
    timeout: float
    seconds: float
    polls: int

    @property
    def ended(self) -> bool:
        return self.answered and not self.in_flight and not self.unknown and self.settled

    def by_id(self) -> dict[str, Saga]:
        return {saga["saga_id"]: saga for saga in self.sagas}

    def pending(self) -> str:
        """What was still pending, in a line (empty once ended)."""
        parts = [] if self.answered else ["the orchestrator never answered"]
        if self.in_flight:
            parts.append(f"{len(self.in_flight)} sagas in flight {sorted(self.in_flight)[:5]}")
        if self.unknown:
            parts.append(f"{len(self.unknown)} sagas not listed {sorted(self.unknown)[:5]}")
        if self.answered and not parts and not self.settled:
            parts.append("every saga ended, but the final condition did not hold")
        return ", ".join(parts)

    def raise_unless_ended(self) -> Ending:
        if not self.ended:
            raise SagasStillRunning(
                f"after {self.timeout:g}s ({self.polls} polls): {self.pending()}"
            )
        return self


def wait_until_ended(
    list_sagas: Callable[[], list[Saga]],
    saga_ids: Iterable[str] = (),
    *,
    timeout: float,
    every_listed: bool = False,
    interval: float = 0.3,
    settled: Callable[[], bool] | None = None,
) -> Ending:
    """Poll ``list_sagas`` (e.g. :meth:`LocalCluster.all_sagas`) until each of
    ``saga_ids`` is listed in a terminal status, and with ``every_listed`` every other
    saga listed too; then, if given, until ``settled()`` holds as well (the chaos run:
    every consumer group caught up).

    At most ``timeout`` seconds and ``timeout / interval + 1`` polls. A listing that
    fails with OSError (the orchestrator is restarting) is a poll that shows nothing new.
    Returns how it ended, ended or not.
    """
    awaited = set(saga_ids)
    began = time.monotonic()
    deadline = began + timeout
    max_polls = max(1, math.floor(timeout / interval) + 1)
    sagas: list[Saga] = []
    in_flight: list[str] = []
    unknown = sorted(awaited)
    held, answered, polls = settled is None, False, 0
    while polls < max_polls:
        polls += 1
        try:
            sagas = list_sagas()
        except OSError:
            pass  # nothing new this time; the last listing stands
        else:
            answered = True
            in_flight, unknown = _pending(sagas, awaited, every_listed)
            if not in_flight and not unknown:
                held = settled is None or settled()
                if held:
                    break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    seconds = time.monotonic() - began
    return Ending(sagas, in_flight, unknown, held, answered, timeout, seconds, polls)


def _pending(
    sagas: list[Saga], awaited: set[str], every_listed: bool
) -> tuple[list[str], list[str]]:
    """(sagas waited for that are listed but not terminal, ids waited for not listed)."""
    listed = {saga["saga_id"]: saga["status"] for saga in sagas}
    in_flight = [
        saga_id
        for saga_id, status in listed.items()
        if status not in TERMINAL and (every_listed or saga_id in awaited)
    ]
    return sorted(in_flight), sorted(awaited - listed.keys())
