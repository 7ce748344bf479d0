"""Imports point down only (docs/architecture.md, "Layers"): a module imports from its own
layer or a lower one, never from a higher one, and nothing but the tooling and the command
line imports the tooling (``local/``). Read off the source, so a new upward import fails
here before it tangles the house."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "saga_streams"

#: Lowest first. A module is placed by its path; the first pattern that matches wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("pure", ("saga/", "messages.py", "money.py")),
    ("domain", ("workflows.py", "roles.py", "rules.py", "accounts.py", "partitions.py",
                "faults.py", "effects.py")),
    # web/cors.py, web/auth.py: aiohttp middlewares that app.py installs, apart from
    # the views; tables/local.py: the worker's local table folder, which app.py checks
    # at start.
    ("infrastructure", ("app.py", "logs.py", "topics.py", "connection.py", "config.py",
                        "web/cors.py", "web/auth.py", "tables/local.py", "rebalance.py")),
    ("state and HTTP", ("tables/", "web/", "http_client.py", "metrics.py")),
    ("roles", ("agents/wiring.py", "agents/batches.py", "agents/strays.py",
               "agents/stream_time.py", "agents/participant.py", "agents/expiry.py",
               "launch.py")),
    ("entry points", ("agents/", "audit.py", "saga_cli.py", "terminal.py")),
    ("tooling", ("local/", "__main__.py")),
]  # fmt: skip


def layer_of(relative: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in patterns):
            return rank
    raise AssertionError(f"{relative} is in no layer: place it in LAYERS")


def module_path(module: str) -> str | None:
    """``saga_streams.saga.engine`` -> ``saga/engine.py`` (None outside the package)."""
    if not module.startswith("saga_streams."):
        return None
    parts = module.split(".")[1:]
    package = PACKAGE.joinpath(*parts)
    return "/".join(parts) + ("/__init__.py" if package.is_dir() else ".py")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every project module ``path`` imports at run time, with its line (imports under
    ``if TYPE_CHECKING:`` are types only and count too: a type is a dependency)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = module_path(f"{node.module}.{alias.name}") or ""
                if not (PACKAGE / target).exists():
                    target = module_path(node.module) or ""
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, module_path(a.name) or "") for a in node.names]
    return [(line, target) for line, target in found if target]


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    rank = layer_of(relative)
    for line, target in imports(path):
        if target.endswith("__init__.py"):
            continue
        assert layer_of(target) <= rank, (
            f"{relative}:{line} imports {target} from a higher layer "
            f"({LAYERS[layer_of(target)][0]} above {LAYERS[rank][0]})"
        )
