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
from saga_streams.agents.strays import StrayForwarder
from saga_streams.app import REPLY_TOPIC, create_app, declare_topic, settings_or_exit
from saga_streams.faults import should_fail
from saga_streams.messages import ACTION, Command, MessageError, Reply, decode, encode
from saga_streams.money import format_dollars
from saga_streams.roles import Participant
from saga_streams.rules import command_refusal
from saga_streams.tables.accounts import AccountStore
from saga_streams.web.accounts import register_account_views
from saga_streams.web.health import register_health_view
from saga_streams.web.integrity import register_integrity_view

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
    strays = StrayForwarder(app, topics, settings.partitions, log)

    def read(event: EventT[bytes]) -> Command | None:
        """The command in ``event``, or None (logged) for anything else on the topics."""
        try:
            command = decode(event.value)
        except MessageError as exc:
            log.warning("⏭️  Skipped a malformed message: %s", exc)
            return None
        kind = topics[event.message.topic][0]
        if not isinstance(command, Command) or command.kind != kind:
            log.warning("⏭️  Skipped a message that is not a %s command: %r", kind, command)
            return None
        return command

    def execute_one(command: Command, event: EventT[bytes], changed: Changed) -> Reply:
        """Execute one command on its account and return the reply to send once the
        account is in the changelog. ``changed``: the accounts this batch has changed so
        far, each with the event to store it under; each is stored once, at the end of
        the batch, however many of its commands the batch holds."""
        topic = event.message.topic
        _, action, effect = topics[topic]
        refusal = command_refusal(command, topic, action, owned)
        if refusal is not None:
            # Never applied, never recorded: the reply repeats the command's account and
            # amount, so no saga takes it for the answer to a command of its own.
            log.warning("❌ Refused %s: %s [saga %s]", command.command_id, refusal, command.saga_id)
            return Reply.for_command(command, role.name, "FAILED", refusal)
        cached = changed.get(command.account)
        account = cached[0] if cached else accounts.get(command.account)
        fails = should_fail(role.name, command.command_id, failure_rate)
        injected = participant.failure_error if fails else None
        recall = accounts.recall(command.account)
        result = execute(account, command, effect, injected, recall)
        if result.recorded:
            changed[account.account_id] = (account, event)
        log.info(describe(command, result))
        return Reply.for_command(command, role.name, result.status, result.error)

    async def execute_commands(stream: faust.StreamT[bytes]) -> None:
        async for events in in_batches(stream):
            replies = []
            changed: Changed = {}
            for event in events:
                command = read(event)
                if command is None or await strays.forward_if_stray(event, command.account):
                    continue
                with acting_for(event):
                    replies.append(execute_one(command, event, changed))
            await strays.flush()
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
    register_integrity_view(app, accounts.table, AccountStore.owner_of)
    return app
