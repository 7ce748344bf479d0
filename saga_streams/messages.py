"""What travels over Kafka: transfer requests, commands and replies, as JSON.

Each message names its own ``type`` and carries the saga id, so ``kcat`` shows a reader
everything needed to follow a saga across topics. Parsing is strict: a malformed message
raises ``MessageError`` and the agent that received it logs and skips it, rather than
crashing the worker or guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "ACTION",
    "COMPENSATION",
    "Command",
    "CommandKind",
    "MessageError",
    "Reply",
    "ReplyStatus",
    "TimeoutElapsed",
    "TransferRequested",
    "decode",
    "encode",
]

CommandKind = Literal["ACTION", "COMPENSATION"]
ReplyStatus = Literal["SUCCESS", "FAILED"]
ACTION: CommandKind = "ACTION"
COMPENSATION: CommandKind = "COMPENSATION"


class MessageError(ValueError):
    """A message on a topic is not one this system understands."""


@dataclass(frozen=True)
class TransferRequested:
    """``POST /transfer`` accepted a transfer; the orchestrator turns it into a saga."""

    saga_id: str
    workflow: str
    amount_cents: int
    requested_at: int  # epoch milliseconds, stamped by the web view
    #: The two parties; a request without them is the seed's transfer from A to B.
    from_account: str = "A"
    to_account: str = "B"
    #: The latest time (epoch ms) at which Kafka may append this request: the view
    #: answers 503 if its acknowledgement has not come soon after, and the orchestrator
    #: refuses a request the broker appended later (the topic stamps append times), so a
    #: client told 503 is never charged. None: no deadline (a request made by hand).
    accept_by: int | None = None

    type: Literal["TransferRequested"] = "TransferRequested"


@dataclass(frozen=True)
class Command:
    """The orchestrator tells a participant to do (or undo) one step of a saga.

    ``command_id`` is stable across resends, so a participant applies it at most once.
    A compensation carries ``undoes``: the id of the action it reverses.
    """

    command_id: str
    saga_id: str
    step: int
    kind: CommandKind
    action: str
    account: str
    amount_cents: int
    #: When the orchestrator first issued this step's action (epoch ms); the same on every
    #: resend and on the step's compensation.
    issued_at: int
    attempt: int = 1  # 1 for the first send, 2 for the first resend, ...
    undoes: str | None = None

    type: Literal["Command"] = "Command"


@dataclass(frozen=True)
class Reply:
    """A participant's answer to a command, sent to ``orchestrator-response``.

    It repeats what the command asked (step, kind, action, account, amount), so the
    orchestrator takes it as the answer to a command it sent only if it answers exactly
    that command: a command produced onto a topic by someone else, with a real command's
    id but other contents, gets a reply the saga ignores.
    """

    command_id: str
    saga_id: str
    step: int
    kind: CommandKind
    service: str
    action: str
    account: str
    amount_cents: int
    status: ReplyStatus
    error: str | None = None
    #: FAILED, but the participant cannot tell whether the command ran once before (it
    #: is older than its ledger remembers): the orchestrator must not assume it did not.
    uncertain: bool = False

    type: Literal["Reply"] = "Reply"

    @classmethod
    def for_command(
        cls, command: Command, service: str, status: ReplyStatus, error: str | None = None
    ) -> Reply:
        """``service``'s answer to ``command``."""
        return cls(
            command_id=command.command_id,
            saga_id=command.saga_id,
            step=command.step,
            kind=command.kind,
            service=service,
            action=command.action,
            account=command.account,
            amount_cents=command.amount_cents,
            status=status,
            error=error,
        )


@dataclass(frozen=True)
class TimeoutElapsed:
    """The orchestrator's timer noticed that a saga's awaited reply is overdue.

    It goes through Kafka, keyed by saga id like every other input of the saga, because
    only the agent may change the saga's table; ``deadline`` lets the engine ignore a
    timeout that the saga has moved past meanwhile.
    """

    saga_id: str
    deadline: int

    type: Literal["Timeout"] = "Timeout"


Message = TransferRequested | Command | Reply | TimeoutElapsed
_TYPES: dict[str, type[Message]] = {
    "TransferRequested": TransferRequested,
    "Command": Command,
    "Reply": Reply,
    "Timeout": TimeoutElapsed,
}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "saga_id": (str,),
    "workflow": (str,),
    "command_id": (str,),
    "action": (str,),
    "account": (str,),
    "from_account": (str,),
    "to_account": (str,),
    "service": (str,),
    "amount_cents": (int,),
    "requested_at": (int,),
    "step": (int,),
    "issued_at": (int,),
    "attempt": (int,),
    "deadline": (int,),
    "accept_by": (int, type(None)),
    "undoes": (str, type(None)),
    "error": (str, type(None)),
    "uncertain": (bool,),
}
_OPTIONAL = frozenset(
    {"undoes", "error", "attempt", "uncertain", "from_account", "to_account", "accept_by"}
)
_ENUMS: dict[str, tuple[str, ...]] = {
    "kind": ("ACTION", "COMPENSATION"),
    "status": ("SUCCESS", "FAILED"),
}


def encode(message: Message) -> bytes:
    return orjson.dumps(asdict(message))


def decode(raw: bytes | str | Mapping[str, Any]) -> Message:
    """Parse one message from its JSON form; raise MessageError on anything unexpected."""
    if isinstance(raw, Mapping):
        data: Any = raw
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError("not a JSON object")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {data.get('type')!r}")
    fields = {name for name in cls.__dataclass_fields__ if name != "type"}
    kwargs: dict[str, Any] = {}
    for name in fields:
        if name not in data:
            if name in _OPTIONAL:
                continue
            raise MessageError(f"{cls.__name__} lacks {name!r}")
        value = data[name]
        if name in _ENUMS:
            if value not in _ENUMS[name]:
                raise MessageError(
                    f"{cls.__name__}.{name} = {value!r} is not one of {_ENUMS[name]}"
                )
        elif not isinstance(value, _FIELD_TYPES[name]) or (
            isinstance(value, bool) and bool not in _FIELD_TYPES[name]
        ):
            raise MessageError(f"{cls.__name__}.{name} has the wrong type: {value!r}")
        kwargs[name] = value
    return cls(**kwargs)
