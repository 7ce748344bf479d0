from __future__ import annotations

import pytest

from saga_streams.messages import (
    Command,
    MessageError,
    Reply,
    TimeoutElapsed,
    TransferRequested,
    decode,
    encode,
)


def test_round_trip_every_message() -> None:
    for message in (
        TransferRequested("s1", "transfer", 100_00, 1),
        Command("s1-1", "s1", 1, "ACTION", "deduct", "A", 100_00, issued_at=7),
        Command(
            "s1-1-undo",
            "s1",
            1,
            "COMPENSATION",
            "refund",
            "A",
            100_00,
            issued_at=7,
            attempt=3,
            undoes="s1-1",
        ),
        TimeoutElapsed("s1", 12345),
        Reply(
            "s1-1", "s1", 1, "ACTION", "service-a", "deduct", "A", 5, "FAILED", "INSUFFICIENT_FUNDS"
        ),
        Reply("s1-1", "s1", 1, "ACTION", "service-a", "deduct", "A", 5, "SUCCESS"),
    ):
        assert decode(encode(message)) == message


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"type": "Nope"}',
        b'{"type": "Command"}',
        b'{"type":"TransferRequested","saga_id":"s","workflow":"t","amount_cents":"1","requested_at":1}',
        b'{"type":"TransferRequested","saga_id":"s","workflow":"t","amount_cents":true,"requested_at":1}',
        b'{"type":"Reply","command_id":"c","saga_id":"s","step":1,"kind":"ACTION","service":"x",'
        b'"action":"a","status":"MAYBE"}',
    ],
)
def test_malformed_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(MessageError):
        decode(raw)
