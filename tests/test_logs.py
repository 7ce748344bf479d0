"""The worker's log once started: plain formatting off a terminal, the same lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import faust.worker  # noqa: F401 (registers Faust's argument tables with mode's formatter)
import pytest
from faust.types import TP
from mode.utils.logging import DEFAULT_COLOR_FORMAT, DEFAULT_COLORS, ExtensionFormatter

from saga_streams.logs import PlainFormatter, log_no_lower_than_printed, log_plainly_off_terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def coloured(stream: io.StringIO) -> ExtensionFormatter:
    """The formatter mode's worker gives its log handler."""
    return ExtensionFormatter(fmt=DEFAULT_COLOR_FORMAT, log_colors=DEFAULT_COLORS, stream=stream)


@pytest.fixture
def root_handler() -> Iterator[logging.Handler]:
    """A handler on the root logger, as the worker's own, removed afterwards."""
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("saga", logging.INFO, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("✅ Saga %s completed", ("3f2a9c1e",)),
        ("Assigned: %r", ({"sagas-changelog": TP("sagas-changelog", 3)},)),
    ],
    ids=["saga line", "faust table"],
)
def test_off_a_terminal_the_plain_formatter_writes_the_same_line(
    root_handler: logging.Handler, message: str, args: tuple[object, ...]
) -> None:
    first = record(message, *args)
    twin = logging.makeLogRecord(dict(first.__dict__))  # the same record, time included
    root_handler.setFormatter(coloured(io.StringIO()))
    expected = root_handler.format(first)

    log_plainly_off_terminal()

    assert isinstance(root_handler.formatter, PlainFormatter)
    assert root_handler.format(twin) == expected
    assert "\x1b[" not in expected


def test_a_terminal_keeps_its_colours(root_handler: logging.Handler) -> None:
    formatter = coloured(Terminal())
    root_handler.setFormatter(formatter)

    log_plainly_off_terminal()

    assert root_handler.formatter is formatter
    assert "\x1b[" in root_handler.format(record("✅ Saga %s completed", "3f2a9c1e"))


def test_a_formatter_not_from_mode_is_left_alone(root_handler: logging.Handler) -> None:
    formatter = logging.Formatter("%(message)s")
    root_handler.setFormatter(formatter)

    log_plainly_off_terminal()

    assert root_handler.formatter is formatter


def test_the_root_level_goes_back_to_the_lowest_printed(root_handler: logging.Handler) -> None:
    root = logging.getLogger()
    before = root.level
    others = [h for h in root.handlers if h is not root_handler]
    try:
        for handler in others:
            root.removeHandler(handler)
        root_handler.setLevel(logging.WARNING)
        root.setLevel(logging.DEBUG)

        log_no_lower_than_printed()

        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)
        for handler in others:
            root.addHandler(handler)
