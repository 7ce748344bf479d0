"""The listing benchmark's own parts, without Kafka: the requests it fills the table with,
and its in-process comparison of the old scan with the index."""

from __future__ import annotations

import pytest

from saga_streams.__main__ import main as cli_main
from saga_streams.config import load_settings
from saga_streams.local.listing_bench import _request, _scan_page, _stored, in_process
from saga_streams.roles import PARTICIPANTS
from saga_streams.rules import Refused, TransferRules
from saga_streams.tables.saga_index import SagaIndex
from saga_streams.workflows import WORKFLOWS


def test_the_fill_is_mostly_requests_the_rules_refuse() -> None:
    defaults = {role: participant.account for role, participant in PARTICIPANTS.items()}
    rules = TransferRules(WORKFLOWS, load_settings({}).accounts, defaults)
    refused = 0
    for number in range(1, 100):
        try:
            rules.check(_request(number, valid=False, now=1_000))
        except Refused:
            refused += 1
    assert refused == 99
    rules.check(_request(0, valid=True, now=1_000))  # runs: no Refused


def test_the_scan_and_the_index_find_the_same_first_page() -> None:
    stored = _stored(3_000)
    index = SagaIndex()
    index.rebuild(stored)
    for limit in (1, 50, 3_000):
        assert _scan_page(stored, limit) == index.page(None, None, limit, None)[0]
    figures = in_process(3_000, repetitions=5)
    assert figures["index_mb"] > 0 and figures["scan_ms"] > 0


def test_the_command_line_checks_its_arguments() -> None:
    with pytest.raises(SystemExit):
        cli_main(["listing-bench", "--sagas", "0"])
