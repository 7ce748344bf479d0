"""Ended sagas as ``GET /sagas`` shows them, rendered once.

A client that follows every page of the listing (a dashboard's export, a reconciliation
job, a load test waiting for its sagas) reads the same ended sagas again and again. Each
read decoded the stored JSON, built the ``Saga`` and rendered it back to JSON: with such
a client polling twice a second, 9% of the orchestrator's CPU in a profile.

Only ended sagas are kept. Nothing changes an ended saga (the engine ignores every
message and operator action for one), and one the retention removes leaves the index,
so the listing no longer asks for it. Sagas still moving are read from the table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from saga_streams.saga.state import Saga

__all__ = ["RENDERED_SAGAS_KEPT", "RenderedSagas"]

#: Ended sagas kept rendered, the most recently listed: a few thousand cover every page
#: a poller reads while a run of sagas ends (1.1 KB each for a two-step transfer: 11 MB).
RENDERED_SAGAS_KEPT = 10_000


class RenderedSagas:
    """A bounded cache, least recently listed out first, of ended sagas as rendered."""

    def __init__(self, kept: int = RENDERED_SAGAS_KEPT) -> None:
        self._kept = kept
        self._rendered: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rendered)

    def page(
        self,
        saga_ids: list[str],
        read: Callable[[str], Saga | None],
        render: Callable[[Saga], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The listed sagas, in order, rendered: ended ones from the cache when there;
        the others read and rendered (and kept if ended). A saga gone from the table
        (removed since the index listed it) is left out."""
        shown = []
        for saga_id in saga_ids:
            body = self._rendered.get(saga_id)
            if body is not None:
                self._rendered.move_to_end(saga_id)
            else:
                saga = read(saga_id)
                if saga is None:
                    continue
                body = render(saga)
                if saga.is_terminal:
                    self._keep(saga_id, body)
            shown.append(body)
        return shown

    def _keep(self, saga_id: str, body: dict[str, Any]) -> None:
        self._rendered[saga_id] = body
        if len(self._rendered) > self._kept:
            self._rendered.popitem(last=False)
