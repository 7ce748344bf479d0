"""The one error type of the local Kafka tooling, and the check for the tools it runs.

Every module of the local broker (jars, nodes, TLS material, the cluster) raises
:class:`LocalKafkaError` with a one-line reason, so callers (``make run``, the tests, the
CLI) catch one type and print one line.
"""

from __future__ import annotations

import shutil

__all__ = ["LocalKafkaError", "require_tool"]


class LocalKafkaError(RuntimeError):
    """The local broker could not be provisioned, started or stopped."""


def require_tool(tool: str, purpose: str) -> str:
    """The path of ``tool`` on PATH; :class:`LocalKafkaError` saying why it is needed if
    it is missing."""
    found = shutil.which(tool)
    if found is None:
        raise LocalKafkaError(f"`{tool}` is not on PATH: it is needed {purpose}")
    return found
