"""Admission control for ``POST /transfer``: at most ``MAX_IN_FLIGHT`` sagas in flight on
one orchestrator worker; beyond it the request is refused (429) before anything is
published.

Without a cap the worker accepts requests faster than the sagas end, the request topic
grows without bound, and every accepted saga waits behind all the others (tens of seconds
under load, BENCHMARKS.md, "Backpressure"). With one, the queue stays short, accepted
sagas end quickly, and the clients that were refused learn when to come back.

What counts: the sagas this worker's table holds in flight (STARTED or COMPENSATING),
plus the requests it accepted that its agent has not seen yet. Those are on Kafka and not
yet in the table; leaving them out would let a burst of requests overshoot the cap by the
whole burst. A pending request stops counting once the agent has seen it (it is then in
the table, or refused) or after ``PENDING_TTL_MS``: a request whose partition a rebalance
moved to another worker is never seen here and must not hold a slot forever.

While the worker cannot count its sagas in flight (its tables are recovering after a
start or a rebalance, and the in-flight count still describes the partitions it held
before), every request is refused: counting none would accept a whole recovery's worth
of requests (the soak saw 13,000 accepted in one), and every one of them would wait.

Pure: the clock is passed in, and the in-flight count is read through a callable.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from saga_streams.saga.state import Saga

__all__ = [
    "MAX_RETRY_AFTER_S",
    "MIN_RATE_SPAN_MS",
    "PENDING_TTL_MS",
    "RATE_WINDOW_MS",
    "RECOVERING_RETRY_AFTER_S",
    "Admission",
    "Refusal",
]

#: A request Kafka acknowledged reaches the agent of the worker holding its partition in
#: milliseconds; one not seen after this is held elsewhere, or the agent lags so far
#: behind that the table's own count already refuses new requests.
PENDING_TTL_MS = 20_000
#: The completion rate behind Retry-After is measured over this last stretch of time
#: (over less, from the oldest end in it, right after a start or a quiet spell); with no
#: saga ended in it, Retry-After is this long (nothing better is known).
RATE_WINDOW_MS = 10_000
#: The shortest stretch a rate is measured over: a few ends a few milliseconds apart
#: are no rate.
MIN_RATE_SPAN_MS = 1_000
#: However slow the sagas end, a client is told to come back within a minute, to see a
#: fresh estimate.
MAX_RETRY_AFTER_S = 60
#: Retry-After while the worker recovers its tables: a recovery takes seconds.
RECOVERING_RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused (the 429's ``error``) and when to try again."""

    retry_after_s: int
    error: str


class Admission:
    """Decides each ``POST /transfer`` of one orchestrator worker.

    ``limit``: MAX_IN_FLIGHT; ``in_flight``: how many sagas the worker's table holds in
    flight now, None while that is not known (tables recovering); ``on_refusal``:
    called once per refused request (the metrics counter).
    """

    def __init__(
        self,
        limit: int,
        in_flight: Callable[[], int | None],
        on_refusal: Callable[[], None] = lambda: None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"the limit must be at least 1, not {limit}")
        self.limit = limit
        self.in_flight = in_flight
        self.on_refusal = on_refusal
        #: saga id -> when it was accepted (epoch ms); oldest first (insertion order).
        self._pending: dict[str, int] = {}
        #: When each recently ended saga ended (epoch ms), oldest first.
        self._ended: deque[int] = deque()
        #: When the ends in ``_ended`` began: the first end after a start or after a
        #: window without any (epoch ms).
        self._since = 0

    def admit(self, saga_id: str, now: int, mine: bool = True) -> Refusal | None:
        """None if the request may be published (it then holds a slot until its saga is
        seen); else the refusal. ``mine``: whether this worker holds the partition the
        request goes to (a request for another worker's partition becomes that
        worker's saga, and counts there once it has arrived)."""
        load = self.load(now)
        if load is None:
            self.on_refusal()
            error = (
                "this worker is recovering its tables (after a start or a rebalance) and "
                "cannot count its transfers in flight; nothing was published, try again "
                f"in {RECOVERING_RETRY_AFTER_S} s"
            )
            return Refusal(RECOVERING_RETRY_AFTER_S, error)
        if load >= self.limit:
            self.on_refusal()
            wait = self.retry_after_s(now, load)
            error = (
                f"too many transfers in flight on this worker ({load}, at most {self.limit}: "
                f"MAX_IN_FLIGHT); nothing was published, try again in {wait} s"
            )
            return Refusal(wait, error)
        if mine:
            self._pending[saga_id] = now
        return None

    def load(self, now: int) -> int | None:
        """Sagas in flight in the table plus requests accepted and not yet seen; None
        while the table's count is not known."""
        self._expire(now)
        in_flight = self.in_flight()
        return None if in_flight is None else in_flight + len(self._pending)

    def pending(self, now: int) -> int:
        """Requests accepted and not yet seen by the agent (nor expired)."""
        self._expire(now)
        return len(self._pending)

    def observe(self, before: Saga | None, after: Saga, now: int) -> None:
        """The agent wrote ``after`` (``before``: the saga as it was, None if new): its
        request is no longer pending, and an end is counted for the completion rate."""
        self._pending.pop(after.saga_id, None)
        if after.is_terminal and (before is None or not before.is_terminal):
            self._trim(now)
            if not self._ended:
                self._since = now
            self._ended.append(now)

    def completion_rate(self, now: int) -> float:
        """Sagas ended per second over the last ``RATE_WINDOW_MS``, or since the ends
        began if that is shorter (at least ``MIN_RATE_SPAN_MS``): a window of ten
        seconds that began before the first end would understate the rate."""
        return self._rate(now)[0]

    def _rate(self, now: int) -> tuple[float, int]:
        """The completion rate and the stretch of time (ms) it was measured over."""
        self._trim(now)
        if not self._ended:
            return 0.0, RATE_WINDOW_MS
        span = min(RATE_WINDOW_MS, max(MIN_RATE_SPAN_MS, now - self._since))
        return len(self._ended) * 1000 / span, span

    def retry_after_s(self, now: int, load: int) -> int:
        """Whole seconds until the ``load`` sagas ahead have ended at the recent completion
        rate (Little's law: their expected time in the system), between 1 and
        ``MAX_RETRY_AFTER_S``; the rate window's length if nothing ended in it.

        A rate measured over less than the window (the first ends after a start or a
        quiet spell: one end in its first second reads as 1/s) says little, so it asks
        for at most the window's length: by then a whole window has been measured."""
        rate, span = self._rate(now)
        if rate <= 0:
            return RATE_WINDOW_MS // 1000
        longest = MAX_RETRY_AFTER_S if span >= RATE_WINDOW_MS else RATE_WINDOW_MS // 1000
        return max(1, min(longest, math.ceil(load / rate)))

    def _expire(self, now: int) -> None:
        oldest_kept = now - PENDING_TTL_MS
        while self._pending:
            saga_id, accepted_at = next(iter(self._pending.items()))
            if accepted_at > oldest_kept:
                break
            del self._pending[saga_id]

    def _trim(self, now: int) -> None:
        oldest_kept = now - RATE_WINDOW_MS
        while self._ended and self._ended[0] <= oldest_kept:
            self._ended.popleft()
