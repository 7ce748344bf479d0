"""What service A and service B share: an account, its command topics, its replies.

A participant knows nothing about sagas: it executes a command on its account, at most
once, and answers on ``orchestrator-response``.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT

from saga_streams.accounts import Account, Execution, execute
from saga_streams.agents.batches import acting_for, in_batches
from saga_streams.app import REPLY_TOPIC, create_app, declare_topic, settings_or_exit
from saga_streams.faults import should_fail
from saga_streams.messages import ACTION, Command, MessageError, Reply, decode, encode
from saga_streams.money import format_dollars
from saga_streams.roles import Participant
from saga_streams.tables.accounts import AccountStore
from saga_streams.web.accounts import register_account_views
from saga_streams.web.health import register_health_view

__all__ = ["create_participant_app", "describe"]

#: Account id -> the account as a batch has changed it, and the event to store it under.
Changed = dict[str, tuple[Account, EventT[bytes]]]


def _past(action: str) -> str:
    return action + ("d" if action.endswith("e") else "ed")


def describe(command: Command, result: Execution) -> str:
    """The seed's service log lines for one command, tagged with the saga id."""
    tag = f"[saga {command.saga_id}]"
    verb = command.action.capitalize()
    amount = format_dollars(command.amount_cents)
    received = (
        f"📨 RECEIVED: {verb} {amount} {tag}"
        if command.kind == ACTION
        else f"🔄 COMPENSATION: {verb} {amount} {tag}"
    )
    if result.what == "repeated":
        return f"{received}\n🔁 ALREADY ANSWERED: {result.status}; balance untouched {tag}"
    if result.status == "FAILED":
        return f"{received}\n❌ FAILED: {verb} {amount} {tag}\n   Error: {result.error}"
    if result.what == "voided":
        return f"{received}\n✅ Nothing to {command.action}: the action never ran here {tag}"
    if result.what == "nothing_to_undo":
        return f"{received}\n✅ Nothing to {command.action}: the action was refused {tag}"
    done = (
        f"✅ SUCCESS: {_past(verb)} {amount}"
        if command.kind == ACTION
        else f"✅ {_past(verb)} {amount}"
    )
    balance = (
        f"   Balance: {format_dollars(result.balance_before)} → "
        f"{format_dollars(result.balance_after)}"
    )
    return f"{received}\n{done} {tag}\n{balance}"


def create_participant_app(participant: Participant) -> faust.App:
    settings = settings_or_exit()
    role = participant.role
    app = create_app(role, settings)
    log = logging.getLogger(f"saga_streams.{role.name}")
    owned = participant.accounts(settings)
    accounts = AccountStore(app, settings.partitions, owned)
    failure_rate = participant.failure_rate(settings)
    topics = participant.topics()
    commands_topic = declare_topic(app, *topics, partitions=settings.partitions)
    replies_topic = declare_topic(app, REPLY_TOPIC, partitions=settings.partitions)

    def execute_one(event: EventT[bytes], changed: Changed) -> Reply | None:
        """Execute one command on its account and return the reply to send once the
        account is in the changelog. ``changed``: the accounts this batch has changed so
        far, each with the event to store it under; each is stored once, at the end of
        the batch, however many of its commands the batch holds."""
        try:
            command = decode(event.value)
        except MessageError as exc:
            log.warning("⏭️  Skipped a malformed message: %s", exc)
            return None
        kind, effect = topics[event.message.topic]
        if not isinstance(command, Command) or command.kind != kind:
            log.warning("⏭️  Skipped a message that is not a %s command: %r", kind, command)
            return None
        if not accounts.is_open(command.account):
            reply_error: str | None = f"UNKNOWN_ACCOUNT: {command.account}"
            status = "FAILED"
            log.warning("❌ Unknown account %s [saga %s]", command.account, command.saga_id)
        else:
            cached = changed.get(command.account)
            account = cached[0] if cached else accounts.get(command.account)
            fails = should_fail(role.name, command.command_id, failure_rate)
            injected = participant.failure_error if fails else None
            recall = accounts.recall(command.account)
            result = execute(account, command, effect, injected, recall)
            if result.recorded:
                changed[account.account_id] = (account, event)
            reply_error, status = result.error, result.status
            log.info(describe(command, result))
        return Reply(
            command_id=command.command_id,
            saga_id=command.saga_id,
            step=command.step,
            kind=command.kind,
            service=role.name,
            action=command.action,
            status=status,  # type: ignore[arg-type]
            error=reply_error,
        )

    async def execute_commands(stream: faust.StreamT[bytes]) -> None:
        async for events in in_batches(stream):
            replies = []
            changed: Changed = {}
            for event in events:
                with acting_for(event):
                    reply = execute_one(event, changed)
                if reply is not None:
                    replies.append(reply)
            for account, event in changed.values():
                with acting_for(event):  # the account's partition
                    accounts.put(account)
            # The replies go out only once the money movements are durable.
            await accounts.written()
            for reply in replies:
                await replies_topic.send(key=reply.saga_id, value=encode(reply))

    # concurrency=1: one batch at a time, each account read, changed and written in turn.
    app.agent(commands_topic, name=f"{role.name}-execute-commands", concurrency=1)(execute_commands)
    register_account_views(app, accounts, owned, participant.account)
    register_health_view(app, role)
    return app
