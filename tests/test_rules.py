"""The rules every input must satisfy, HTTP or Kafka, and the partition a key belongs to."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from aiokafka.partitioner import DefaultPartitioner

from saga_streams.messages import Command, TransferRequested
from saga_streams.money import MAX_AMOUNT_CENTS
from saga_streams.partitions import partition_for
from saga_streams.rules import MAX_EPOCH_MS, Refused, TransferRules, command_refusal
from saga_streams.workflows import WORKFLOWS

RULES = TransferRules(
    WORKFLOWS,
    {"service-a": {"A", "A-1"}, "service-b": {"B"}, "service-c": {"C"}},
    {"service-a": "A", "service-b": "B", "service-c": "C"},
)
GOOD = TransferRequested("s1", "transfer", 100, requested_at=1_000)


def test_partition_for_is_the_hash_our_producers_use() -> None:
    rng = random.Random(7)
    partitioner = DefaultPartitioner()
    for _ in range(500):
        key = "".join(rng.choice("abcdef0123456789-AB") for _ in range(rng.randint(1, 20)))
        for count in (1, 3, 4, 8):
            everything = list(range(count))
            assert partition_for(key, count) == partitioner(key.encode(), everything, everything)


def test_partition_for_matches_the_java_client() -> None:
    # Utils.toPositive(Utils.murmur2("A".getBytes())) % n, as Kafka's Java producer places it.
    assert [partition_for(key, 4) for key in ("A", "B", "abc")] == [2, 0, 3]


def test_a_good_request_passes() -> None:
    RULES.check(GOOD)
    RULES.check(replace(GOOD, workflow="transfer-with-fee", from_account="A-1"))


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (replace(GOOD, amount_cents=-5000), "amount must be greater than 0"),
        (replace(GOOD, amount_cents=0), "amount must be greater than 0"),
        (replace(GOOD, amount_cents=MAX_AMOUNT_CENTS + 1), "amount must be at most"),
        (replace(GOOD, workflow="nope"), "unknown workflow 'nope'"),
        (replace(GOOD, from_account="Z"), "unknown from_account 'Z'"),
        (replace(GOOD, to_account="A"), "unknown to_account 'A'"),
        (replace(GOOD, requested_at=-1), "requested_at"),
        (replace(GOOD, requested_at=MAX_EPOCH_MS + 1), "requested_at"),
    ],
)
def test_a_request_breaking_a_rule_is_refused_with_the_reason(
    request_: TransferRequested, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        RULES.check(request_)


def test_the_same_account_on_both_sides_is_refused() -> None:
    rules = TransferRules(WORKFLOWS, {"service-a": {"X"}, "service-b": {"X"}}, {})
    with pytest.raises(Refused, match="same account"):
        rules.parties(WORKFLOWS["transfer"], {"from_account": "X", "to_account": "X"})


DEDUCT = Command("s1-1", "s1", 1, "ACTION", "deduct", "A", 100, issued_at=1)
REFUND = Command("s1-1-undo", "s1", 1, "COMPENSATION", "refund", "A", 100, 1, undoes="s1-1")


@pytest.mark.parametrize(
    ("command", "topic", "action", "refusal"),
    [
        (DEDUCT, "service-a-deduct", "deduct", None),
        (REFUND, "service-a-refund", "refund", None),
        (replace(DEDUCT, amount_cents=-100000), "service-a-deduct", "deduct", "INVALID_AMOUNT"),
        (replace(DEDUCT, amount_cents=MAX_AMOUNT_CENTS + 1), "t", "deduct", "INVALID_AMOUNT"),
        (replace(DEDUCT, action="add"), "service-a-deduct", "deduct", "UNKNOWN_ACTION"),
        (replace(DEDUCT, account="B"), "service-a-deduct", "deduct", "UNKNOWN_ACCOUNT"),
        (replace(REFUND, undoes=None), "service-a-refund", "refund", "INVALID_COMMAND"),
        (replace(REFUND, amount_cents=-1), "service-a-refund", "refund", "INVALID_AMOUNT"),
    ],
)
def test_command_refusal_names_the_broken_rule(
    command: Command, topic: str, action: str, refusal: str | None
) -> None:
    found = command_refusal(command, topic, action, {"A"})
    if refusal is None:
        assert found is None
    else:
        assert found is not None and found.startswith(refusal + ":")
