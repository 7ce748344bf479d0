"""The worker's log, made cheap once the worker runs.

Every saga event is a log line at ``info`` (what ``make run`` shows), so the cost of a
line is paid several times per saga. Two defaults of Faust's worker make it dear; both
are put right once the worker has started (``SagaApp.on_started``).
"""

from __future__ import annotations

import logging
import re

from mode.utils.logging import ExtensionFormatter

__all__ = ["log_no_lower_than_printed", "log_plainly_off_terminal"]

# colorlog's placeholders: %(log_color)s, and %(<name>_log_color)s for secondary colours.
_COLOUR_PLACEHOLDER = re.compile(r"%\(\w*log_color\)s")


def log_no_lower_than_printed() -> None:
    """Faust's worker sets the root logger to DEBUG for its start-up spinner when the log
    level is warn or above, and leaves it there: every debug call of aiokafka and Faust
    then builds a record that no handler prints (a tenth of the orchestrator's CPU in a
    profile of the bench). Once started, the root logger goes back to the lowest level a
    handler prints."""
    root = logging.getLogger()
    printed = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    if printed and root.level < min(printed):
        root.setLevel(min(printed))


class PlainFormatter(ExtensionFormatter):
    """mode's formatter without colorlog's colour handling: the same text (and Faust's
    tables of partitions), for a log that is not a terminal.

    colorlog decides per record whether to colour, and when it does not it still builds a
    map of every escape code and a copy of the record to blank them: in a profile of the
    orchestrator with the log in a file, 6% of its CPU went there, half its logging."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return logging.Formatter.formatMessage(self, record)


def plain_formatter(coloured: ExtensionFormatter) -> PlainFormatter:
    """A formatter writing what ``coloured`` writes when it does not colour."""
    fmt = _COLOUR_PLACEHOLDER.sub("", coloured._fmt or "")
    return PlainFormatter(fmt=fmt, datefmt=coloured.datefmt)


def log_plainly_off_terminal() -> None:
    """Swap each root handler's colouring formatter for a plain one when the formatter
    would not colour anyway (output not a terminal, ``NO_COLOR``): same lines, less CPU.
    A terminal keeps its colours."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, PlainFormatter) or not isinstance(formatter, ExtensionFormatter):
            continue
        if not formatter._colorize():  # type: ignore[no-untyped-call]
            handler.setFormatter(plain_formatter(formatter))
