"""Where a worker starts: its settings read and its app built, or one line and an exit.

The library raises ``ConfigError`` (a bad environment variable) or ``WorkflowError`` (a
declaration no participant can run). The entry points, ``python -m saga_streams worker``
and the role modules ``faust -A`` loads, turn them into one line on stderr and a non-zero
exit here, with no traceback, before Faust starts anything.
"""

from __future__ import annotations

from collections.abc import Callable

import faust

from saga_streams.config import ConfigError, Settings, load_settings
from saga_streams.saga.dsl import WorkflowError

__all__ = ["app_or_exit", "lazy_app"]


def app_or_exit(build: Callable[[Settings], faust.App]) -> faust.App:
    """``build(settings)`` with the settings of the environment; exit with one line if
    either is wrong."""
    try:
        return build(load_settings())
    except (ConfigError, WorkflowError) as exc:
        raise SystemExit(f"saga_streams: {exc}") from None


def lazy_app(build: Callable[[Settings], faust.App]) -> Callable[[str], faust.App]:
    """A module ``__getattr__`` that builds the role's app the first time ``app`` is read.

    A role module is what ``faust -A`` loads and what ``python -m saga_streams worker``
    imports; with this, importing it reads no environment and builds nothing until a
    worker asks for its ``app``.
    """
    built: list[faust.App] = []

    def __getattr__(name: str) -> faust.App:
        if name != "app":
            raise AttributeError(name)
        if not built:
            built.append(app_or_exit(build))
        return built[0]

    return __getattr__
