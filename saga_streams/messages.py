"""What travels over Kafka: transfer requests, commands and replies, as JSON.

Each message names its own ``type`` and carries the saga id, so ``kcat`` shows a reader
everything needed to follow a saga across topics. Parsing is strict: a malformed message
raises ``MessageError`` and the agent that received it logs and skips it, rather than
crashing the worker or guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import orjson

__all__ = [
    "ACTION",
    "COMPENSATION",
    "Command",
    "CommandKind",
    "MessageError",
    "OperatorAction",
    "OperatorVerb",
    "Reply",
    "ReplyStatus",
    "TimeoutElapsed",
    "TransferRequested",
    "decode",
    "encode",
]

CommandKind = Literal["ACTION", "COMPENSATION"]
ReplyStatus = Literal["SUCCESS", "FAILED"]
OperatorVerb = Literal["retry", "cancel"]
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
    #: refuses a request the broker appended later (the topic stamps append times), one
    #: that waited for a leader while the view had given up. None: no deadline (a
    #: request made by hand).
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


@dataclass(frozen=True)
class OperatorAction:
    """An operator asked (``POST /sagas/{id}/retry`` or ``/cancel``) to move a saga by hand.

    The view may not write the saga table, so it publishes this, keyed by saga id, and the
    orchestrator's agent hands it to the engine with the saga's other inputs; the engine
    ignores it (and says so in the history) if the saga has moved on meanwhile.
    """

    saga_id: str
    action: OperatorVerb
    by: str  # who asked: the X-Operator header, else "http"
    requested_at: int  # epoch milliseconds, stamped by the web view
    reason: str | None = None

    type: Literal["OperatorAction"] = "OperatorAction"


Message = TransferRequested | Command | Reply | TimeoutElapsed | OperatorAction
_TYPES: dict[str, type[Message]] = {
    "OperatorAction": OperatorAction,
    "TransferRequested": TransferRequested,
    "Command": Command,
    "Reply": Reply,
    "Timeout": TimeoutElapsed,
}


def _field_rules(cls: type[Message]) -> dict[str, tuple[tuple[type, ...], tuple[str, ...]]]:
    """Each field of a message type (but ``type``): the Python types its JSON value may
    have, or the strings it may be, read off the dataclass annotations themselves."""
    rules: dict[str, tuple[tuple[type, ...], tuple[str, ...]]] = {}
    for name, hint in get_type_hints(cls).items():
        if name == "type":
            continue
        options = get_args(hint) if get_origin(hint) in (UnionType, Union) else (hint,)
        literals = tuple(v for o in options if get_origin(o) is Literal for v in get_args(o))
        types = tuple(type(None) if o is type(None) else o for o in options if isinstance(o, type))
        rules[name] = (types, literals)
    return rules


_RULES = {name: _field_rules(cls) for name, cls in _TYPES.items()}
#: Fields a producer may leave out: those with a default (the dataclass supplies it).
_OPTIONAL = {
    name: frozenset(f.name for f in fields(cls) if f.default is not MISSING)
    for name, cls in _TYPES.items()
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
    if not isinstance(kind, str) or kind not in _TYPES:
        raise MessageError(f"unknown message type {kind!r}")
    cls = _TYPES[kind]
    kwargs: dict[str, Any] = {}
    for name, (types, literals) in _RULES[kind].items():
        if name in data:
            kwargs[name] = _checked(cls.__name__, name, data[name], types, literals)
        elif name not in _OPTIONAL[kind]:
            raise MessageError(f"{cls.__name__} lacks {name!r}")
    return cls(**kwargs)


def _checked(
    kind: str, name: str, value: Any, types: tuple[type, ...], literals: tuple[str, ...]
) -> Any:
    """``value`` if field ``name`` of a ``kind`` message may hold it; else MessageError."""
    if literals:
        if value not in literals:
            raise MessageError(f"{kind}.{name} = {value!r} is not one of {literals}")
    # bool is an int to Python, never to us: True is not an amount.
    elif not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise MessageError(f"{kind}.{name} has the wrong type: {value!r}")
    return value
