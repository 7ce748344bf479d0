"""Messages produced straight onto the topics with kcat, as an operator or another team would.

kcat (librdkafka) places a keyed message with its ``consistent_random`` partitioner,
``crc32(key) % partitions``; the project's producers use murmur2 (``partitions.py``). So
a kcat-produced message often lands on a partition its key does not belong to: a
"stray", which the agent that consumes it must forward to the right partition before it
touches any state. These tests compute exactly which messages are strays, and check:

a. transfer requests produced with kcat, under the default failure injection, all end
   within the retry policy's bound, one forward per stray, books consistent;
b. every command and reply produced again with kcat changes no balance and no saga;
c. input that breaks the rules (amounts, workflows, accounts, actions, ids, not JSON)
   moves no money and ends as FAILED sagas or FAILED replies that name the reason;
d. a phantom copy of an account written into its changelog by hand is never read, and
   ``GET /integrity`` and the audit name it.

One broker and one set of workers for the module; the phantom test runs last, since it
leaves the stack with a violation on purpose. Figures for the report are printed
(``pytest -s``) at the end of the module.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from saga_streams.app import REPLY_TOPIC, TIMEOUT_TOPIC, TRANSFER_REQUEST_TOPIC, consumed_topics
from saga_streams.config import load_settings
from saga_streams.http_client import http_json
from saga_streams.local.chaos import _groups_caught_up
from saga_streams.partitions import partition_for
from saga_streams.roles import PARTICIPANTS, ROLES
from saga_streams.saga.policy import RetryPolicy
from saga_streams.saga.state import TERMINAL, epoch_seconds
from saga_streams.workflows import WORKFLOWS
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

PARTITIONS = 4  # TOPIC_PARTITIONS left at its default
#: Short timeouts, so the retry bound is small (1 + 2 + 4 s per action); the failure
#: rates stay at their defaults (A 20%, B 30%, C 10%). B2 and B3 are extra accounts of
#: service B, so commands are keyed by more than the seed's three accounts.
ENV = {"STEP_TIMEOUT": "1", "RETRY_MAX_DELAY": "4", "SERVICE_B_ACCOUNTS": "B2=100,B3=100"}
#: The orchestrator's timer looks for overdue sagas once a second.
TIMER_INTERVAL_S = 1.0
#: Added to every computed bound: starting consumers, the forward's extra hop, a loaded CI.
SCHEDULING_MARGIN_S = 15.0

#: The field of a message's JSON value that names the key it is routed by, per topic.
ROUTING_FIELD = {
    TRANSFER_REQUEST_TOPIC: "saga_id",
    REPLY_TOPIC: "saga_id",
    TIMEOUT_TOPIC: "saga_id",
    **{topic: "account" for p in PARTICIPANTS for topic in consumed_topics(WORKFLOWS)[p]},
}
#: Which role consumes each topic.
CONSUMER = {topic: role for role, topics in consumed_topics(WORKFLOWS).items() for topic in topics}
TAB = "\t"
#: A saga id a request may carry: 1-64 letters, digits, '_', '.', '-', starting with a
#: letter or digit. Any other is logged and skipped.
SAGA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Figures for the final report, filled by the tests, printed when the module ends.
FIGURES: dict[str, Any] = {"strays computed": Counter()}

Move = tuple[str, int, int]  # (topic, partition it was produced on, partition it belongs to)


# -- what kcat does, and what the workers say they did ----------------------------------


def kcat_partition(key: str) -> int:
    """Where kcat's default partitioner puts a message keyed ``key`` (non-empty)."""
    return zlib.crc32(key.encode()) % PARTITIONS


def stray_move(topic: str, key: str, value: str) -> Move | None:
    """The forward the consuming agent must make for this kcat-produced message, or None
    if it lands on its own partition (or is not a message the agent can read at all)."""
    try:
        data = json.loads(value)
    except ValueError:
        return None  # skipped as malformed: nothing to route
    routing = data.get(ROUTING_FIELD[topic]) if isinstance(data, dict) else None
    if not isinstance(routing, str):
        return None
    if topic == TRANSFER_REQUEST_TOPIC and not SAGA_ID.fullmatch(routing):
        return None  # skipped before it is routed: no saga can have such an id
    produced, home = kcat_partition(key), partition_for(routing, PARTITIONS)
    return None if produced == home else (topic, produced, home)


def expected_forwards(topic: str, lines: Iterable[str]) -> Counter[Move]:
    moves: Counter[Move] = Counter()
    for line in lines:
        key, _, value = line.partition(TAB)
        move = stray_move(topic, key, value)
        if move is not None:
            moves[move] += 1
    return moves


_FORWARD_LINE = re.compile(
    r"Forwarded (\d+) stray message\(s\) to the partition their key belongs to: (.*)$",
    re.MULTILINE,
)
_MOVE = re.compile(r"(\S+) (\d+)→(\d+) x(\d+)")


def logged_forwards(stack: Stack, name: str) -> Counter[Move]:
    """Every forward a worker has logged since it first started, by (topic, from, to)."""
    moves: Counter[Move] = Counter()
    for line in _FORWARD_LINE.finditer(stack.log(name)):
        found: Counter[Move] = Counter()
        for topic, source, home, count in _MOVE.findall(line.group(2)):
            found[(topic, int(source), int(home))] += int(count)
        assert sum(found.values()) == int(line.group(1)), line.group(0)
        moves += found
    return moves


def all_forwards(stack: Stack) -> dict[str, Counter[Move]]:
    return {role: logged_forwards(stack, role) for role in ROLES}


def forwards_since(stack: Stack, before: dict[str, Counter[Move]]) -> dict[str, Counter[Move]]:
    return {role: moves - before[role] for role, moves in all_forwards(stack).items()}


def by_consumer(moves: Counter[Move]) -> dict[str, Counter[Move]]:
    split: dict[str, Counter[Move]] = {role: Counter() for role in ROLES}
    for move, count in moves.items():
        split[CONSUMER[move[0]]][move] += count
    return split


def produce(stack: Stack, topic: str, lines: list[str]) -> Counter[Move]:
    """Produce ``key<TAB>value`` lines with kcat's default partitioner; return the
    forwards they call for (and count them for the report)."""
    stack.kcat_produce(topic, lines, "-K", TAB)
    moves = expected_forwards(topic, lines)
    FIGURES["strays computed"] += moves
    return moves


def line(key: str, value: dict[str, Any]) -> str:
    return f"{key}{TAB}{json.dumps(value, separators=(',', ':'))}"


def read_lines(stack: Stack, topic: str) -> list[str]:
    """Every message of ``topic`` as ``key<TAB>value`` (JSON values hold no newline)."""
    out = stack.kcat("-t", topic, "-C", "-e", "-q", "-f", "%k\t%s\n")
    return [line for line in out.splitlines() if line]


# -- waiting, always bounded ------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Until ``check()`` holds: asked at most ``timeout`` s, every 0.3 s."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.3) + 1):
        if check():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    raise AssertionError(f"after {timeout:.0f}s, still not true: {what}")


def wait_caught_up(stack: Stack, timeout: float = 45.0) -> None:
    """Until every consumer group has committed up to the end of every topic it reads,
    twice in a row a second apart: a reply produced while the first check ran is seen."""
    deadline = time.monotonic() + timeout
    streak = 0
    for _ in range(int(timeout) + 1):
        streak = (
            streak + 1
            if asyncio.run(_groups_caught_up(load_settings(stack.worker_env()).kafka))
            else 0
        )
        if streak == 2:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    raise AssertionError(f"consumer groups not caught up after {timeout:.0f}s")


def integrity(stack: Stack, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """``GET /integrity`` of a worker (503 while it rebalances: asked again, bounded)."""
    answer: list[Any] = []

    def ask() -> bool:
        try:
            status, body = http_json("GET", stack.url(name, "/integrity"))
        except OSError:
            return False
        answer[:] = [status, body]
        return status == 200

    wait_until(f"GET /integrity answers 200 on {name} (last: {answer})", ask, timeout)
    body: dict[str, Any] = answer[1]
    return body


def assert_no_phantom(stack: Stack) -> None:
    for role in ROLES:
        assert integrity(stack, role)["misplaced"] == [], role


def balances(stack: Stack) -> dict[str, int]:
    return dict(stack.audit().balances)


def retry_bound_s(policy: RetryPolicy, steps: int) -> float:
    """The longest a saga of ``steps`` steps can take under ``policy`` with every process
    up: each action sent ``max_attempts`` times, each wait as long as the policy allows,
    then each step compensated; every wait can be noticed up to a timer tick late."""
    action_s = sum(
        policy.delay_ms(attempt) / 1000 + TIMER_INTERVAL_S
        for attempt in range(1, policy.max_attempts + 1)
    )
    compensation_s = policy.delay_ms(1) / 1000 + TIMER_INTERVAL_S
    return steps * (action_s + compensation_s)


def now_ms() -> int:
    return int(time.time() * 1000)


def request(saga_id: str, amount_cents: int, **fields: Any) -> dict[str, Any]:
    return {
        "saga_id": saga_id,
        "workflow": "transfer",
        "amount_cents": amount_cents,
        "requested_at": now_ms(),
        "from_account": "A",
        "to_account": "B",
        "type": "TransferRequested",
        **fields,
    }


def command(
    command_id: str, action: str, account: str, amount_cents: int, **fields: Any
) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "saga_id": command_id.rsplit("-", 1)[0],
        "step": 1,
        "kind": "ACTION",
        "action": action,
        "account": account,
        "amount_cents": amount_cents,
        "issued_at": now_ms(),
        "attempt": 1,
        "undoes": None,
        "type": "Command",
        **fields,
    }


# -- the stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    began = time.monotonic()
    stack = Stack(tmp_path_factory.mktemp("kafka-input"), ENV)
    try:
        stack.start()
        yield stack
        logged: Counter[Move] = Counter()
        for moves in all_forwards(stack).values():
            logged += moves
        computed: Counter[Move] = FIGURES["strays computed"]
        print(
            "\n=== kafka input: figures ===\n"
            f"stray messages forwarded, all tests: {sum(logged.values())} logged by the "
            f"workers, {sum(computed.values())} computed from kcat's partitioner\n"
            f"longest stray request to terminal: {FIGURES.get('longest stray saga s')} s "
            f"(saga {FIGURES.get('longest stray saga')}; retry bound "
            f"{FIGURES.get('retry bound s')} s)\n"
            f"phantom audit:\n{FIGURES.get('phantom audit')}\n"
            f"module wall time: {time.monotonic() - began:.1f} s"
        )
    finally:
        stack.close()


# -- a. the issue's reproduction ----------------------------------------------------------


def pick_saga_ids(strays: int, at_home: int) -> list[str]:
    """Saga ids that kcat puts on another partition than their own, and some it does not."""
    chosen: dict[bool, list[str]] = {True: [], False: []}
    wanted = {True: strays, False: at_home}
    for number in range(1000):
        saga_id = f"kin-{number:03d}"
        stray = kcat_partition(saga_id) != partition_for(saga_id, PARTITIONS)
        if len(chosen[stray]) < wanted[stray]:
            chosen[stray].append(saga_id)
    assert all(len(chosen[k]) == wanted[k] for k in chosen)
    return sorted(chosen[True] + chosen[False])


def kcat_requests(ids: list[str]) -> dict[str, dict[str, Any]]:
    """A request per saga id: amounts all different, a third with a fee, payees spread
    over service B's accounts."""
    return {
        saga_id: request(
            saga_id,
            1000 + 111 * number,
            workflow="transfer-with-fee" if number % 3 == 0 else "transfer",
            to_account=("B", "B2", "B3")[number % 3],
        )
        for number, saga_id in enumerate(ids)
    }


def assert_placed_by_kcat(stack: Stack, ids: list[str], stray_ids: set[str]) -> None:
    """Each request is where kcat put it (crc32), and a stray also where it belongs."""
    placed: dict[str, list[int]] = {}
    out = stack.kcat("-t", TRANSFER_REQUEST_TOPIC, "-C", "-e", "-q", "-f", "%p\t%k\n")
    for row in out.splitlines():
        partition, _, key = row.partition(TAB)
        placed.setdefault(key, []).append(int(partition))
    for saga_id in ids:
        copies = [kcat_partition(saga_id)]
        if saga_id in stray_ids:
            copies.append(partition_for(saga_id, PARTITIONS))
        assert sorted(placed[saga_id]) == sorted(copies), saga_id


def assert_sagas_as_requested(
    sagas: dict[str, dict[str, Any]], sent: dict[str, dict[str, Any]], bound: float
) -> dict[str, float]:
    """Each saga is the request it came from, ended without an error within ``bound``
    seconds; returns how long each took."""
    durations = {}
    for saga_id, saga in sagas.items():
        value = sent[saga_id]
        assert (saga["workflow"], saga["from_account"], saga["to_account"]) == (
            value["workflow"],
            value["from_account"],
            value["to_account"],
        ), saga
        assert round(saga["amount"] * 100) == value["amount_cents"]
        assert saga["error"] is None, saga
        durations[saga_id] = epoch_seconds(saga["updated_at"]) - epoch_seconds(saga["created_at"])
        assert durations[saga_id] <= bound, (saga_id, durations[saga_id], bound)
    return durations


def test_requests_produced_with_kcat_all_end_within_the_retry_bound(stack: Stack) -> None:
    policy = load_settings(stack.worker_env()).retry_policy
    before = all_forwards(stack)
    ids = pick_saga_ids(strays=8, at_home=4)
    sent = kcat_requests(ids)
    lines = [line(saga_id, value) for saga_id, value in sent.items()]
    expected = produce(stack, TRANSFER_REQUEST_TOPIC, lines)
    stray_ids = {
        saga_id for saga_id in ids if kcat_partition(saga_id) != partition_for(saga_id, PARTITIONS)
    }
    assert stray_ids, "the test needs strays"
    assert sum(expected.values()) == len(stray_ids) == 8

    steps = max(len(WORKFLOWS[value["workflow"]].steps) for value in sent.values())
    bound = retry_bound_s(policy, steps)
    FIGURES["retry bound s"] = bound
    sagas = stack.wait_terminal(ids, timeout=bound + SCHEDULING_MARGIN_S)

    assert_placed_by_kcat(stack, ids, stray_ids)
    durations = assert_sagas_as_requested(sagas, sent, bound)
    longest = max(stray_ids, key=durations.__getitem__)
    FIGURES["longest stray saga s"] = round(durations[longest], 3)
    FIGURES["longest stray saga"] = longest

    forwarded = forwards_since(stack, before)
    assert forwarded == by_consumer(expected), forwarded
    stack.assert_invariants()
    assert_no_phantom(stack)
    statuses = Counter(s["status"] for s in sagas.values())
    print(
        f"\n(a) {len(ids)} requests, {len(stray_ids)} strays; statuses {dict(statuses)}; "
        f"longest stray saga {durations[longest]:.3f} s ({longest}); bound {bound:.0f} s"
    )


# -- b. replays ---------------------------------------------------------------------------


def ensure_history(stack: Stack) -> None:
    """A test run alone: a few transfers first, so there is something on the topics."""
    if not any(s["error"] is None for s in stack.all_sagas()):
        ids = [stack.transfer(a, workflow="transfer-with-fee")[1]["saga_id"] for a in (10, 20.5)]
        stack.wait_terminal(ids)


def test_commands_and_replies_produced_again_with_kcat_change_nothing(stack: Stack) -> None:
    ensure_history(stack)
    wait_caught_up(stack)
    sagas_before = {s["saga_id"]: s for s in stack.all_sagas()}
    assert all(s["status"] in TERMINAL for s in sagas_before.values())
    balances_before = balances(stack)
    answered_before = {p: _answered_again(stack, p) for p in PARTICIPANTS}
    before = all_forwards(stack)

    expected: Counter[Move] = Counter()
    replayed: Counter[str] = Counter()  # participant -> commands produced again
    topics = [t for p in PARTICIPANTS for t in consumed_topics(WORKFLOWS)[p]] + [REPLY_TOPIC]
    for topic in topics:
        lines = read_lines(stack, topic)
        if lines:
            expected += produce(stack, topic, lines)
            replayed[CONSUMER[topic]] += len(lines)
    assert replayed["orchestrator"] and replayed["service-a"], f"nothing to replay: {replayed}"
    wait_caught_up(stack)

    assert balances(stack) == balances_before
    assert {s["saga_id"]: s for s in stack.all_sagas()} == sagas_before
    stack.assert_invariants()
    assert_no_phantom(stack)
    forwarded = forwards_since(stack, before)
    assert forwarded == by_consumer(expected), forwarded
    for participant in PARTICIPANTS:
        again = _answered_again(stack, participant) - answered_before[participant]
        assert again == replayed[participant], (participant, again, replayed[participant])
    print(
        f"\n(b) replayed {sum(replayed.values())} messages {dict(replayed)}; "
        f"forwarded {sum(expected.values())} strays "
        f"{ {role: sum(m.values()) for role, m in forwarded.items()} }"
    )


def _answered_again(stack: Stack, participant: str) -> int:
    """Commands a participant answered again, changing nothing: from its ledger, or,
    past the ledger window (accounts.py), an action refused for its age and a
    compensation voided after its action's entry expired."""
    log = stack.log(participant)
    answered = log.count("🔁 ALREADY ANSWERED") + log.count(": the action was refused [saga")
    return answered + log.count("Error: EXPIRED: ") + log.count("past the ledger window")


# -- c. input that breaks the rules -------------------------------------------------------


#: A message that breaks a rule, and the reason it must be refused with.
Refusal = tuple[dict[str, Any], str]


def refused_requests() -> dict[str, Refusal]:
    """Transfer requests that break the HTTP door's rules, by saga id."""
    return {
        # It used to move $50 from B to A.
        "kin-neg": (request("kin-neg", -5000), "amount must be greater than 0"),
        "kin-zero": (request("kin-zero", 0), "amount must be greater than 0"),
        "kin-huge": (request("kin-huge", 100_000_000_001), "amount must be at most"),
        "kin-wf": (request("kin-wf", 100, workflow="teleport"), "unknown workflow 'teleport'"),
        "kin-from": (request("kin-from", 100, from_account="Z9"), "unknown from_account 'Z9'"),
        "kin-to": (request("kin-to", 100, to_account="A"), "unknown to_account 'A'"),
        "kin-time": (request("kin-time", 100, requested_at=-1), "requested_at must be"),
    }


def bad_commands() -> dict[str, list[Refusal]]:
    """Commands a participant must refuse, by the topic they are produced on."""
    return {
        # It used to raise A's balance by $1000.
        "service-a-deduct": [
            (command("kin-c1-1", "deduct", "A", -100_000), "INVALID_AMOUNT: "),
            (command("kin-c2-1", "deduct", "Z9", 100), "UNKNOWN_ACCOUNT: Z9"),
            (command("kin-c3-1", "add", "A", 100), "UNKNOWN_ACTION: service-a-deduct"),
        ],
        "service-a-refund": [
            (
                command("kin-c4-1-undo", "refund", "A", 100, kind="COMPENSATION"),
                "INVALID_COMMAND: ",
            ),
        ],
        "service-b-add": [
            (command("kin-c5-1", "add", "B", 0, step=2), "INVALID_AMOUNT: "),
            (command("kin-c6-1", "add", "B3", 100_000_000_001, step=2), "INVALID_AMOUNT: "),
            (command("kin-c7-1", "add", "A", 100, step=2), "UNKNOWN_ACCOUNT: A"),
        ],
        "service-c-collect": [
            (command("kin-c8-1", "collect", "B", 100, step=3), "UNKNOWN_ACCOUNT: B"),
        ],
    }


def produce_bad_input(
    stack: Stack, requests: dict[str, Refusal], commands: dict[str, list[Refusal]]
) -> Counter[Move]:
    """Produce the requests and the commands, each topic with a line that is not JSON;
    return the forwards they call for."""
    lines = [line(saga_id, value) for saga_id, (value, _) in requests.items()]
    lines.append(f"kin-junk{TAB}this is not JSON")
    expected = produce(stack, TRANSFER_REQUEST_TOPIC, lines)
    for topic, refusals in commands.items():
        lines = [line(value["account"], value) for value, _ in refusals]
        if topic == "service-a-deduct":
            lines.append(f"A{TAB}{{not json")
        expected += produce(stack, topic, lines)
    return expected


def wait_replies(stack: Stack, wanted: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """The reply to each of the ``wanted`` command ids, each seen only once or the same."""
    replies: dict[str, dict[str, Any]] = {}

    def all_replied() -> bool:
        for reply in stack.topic_messages(REPLY_TOPIC):
            if reply["command_id"] in wanted:
                assert reply["command_id"] not in replies or replies[reply["command_id"]] == reply
                replies[reply["command_id"]] = reply
        return set(replies) == wanted

    wait_until("every bad command is answered", all_replied, timeout)
    return replies


def assert_requests_refused(
    stack: Stack, sagas: dict[str, dict[str, Any]], requests: dict[str, Refusal]
) -> None:
    """Each refused request is a FAILED saga naming the reason, no step started; the
    line that is not JSON starts none."""
    for saga_id, (value, reason) in requests.items():
        saga = sagas[saga_id]
        assert saga["status"] == "FAILED", saga
        assert reason in (saga["error"] or ""), (saga_id, saga["error"], reason)
        workflow = WORKFLOWS.get(value["workflow"])
        assert len(saga["steps"]) == (len(workflow.steps) if workflow else 0), saga
        assert {step["outcome"] for step in saga["steps"]} <= {"NOT_STARTED"}, saga
        assert f"🚫 SAGA REFUSED: {saga_id}" in stack.log("orchestrator")
    assert "kin-junk" not in {s["saga_id"] for s in stack.all_sagas()}
    assert "⏭️  Skipped a malformed message: not JSON" in stack.log("orchestrator")
    assert "⏭️  Skipped a malformed message: not JSON" in stack.log("service-a")


def assert_commands_refused(
    stack: Stack, replies: dict[str, dict[str, Any]], commands: dict[str, list[Refusal]]
) -> None:
    """Each bad command is answered FAILED with the reason, by the participant it was
    sent to, about that very command, and never recorded in a ledger."""
    for topic, refusals in commands.items():
        for value, error in refusals:
            reply = replies[value["command_id"]]
            assert reply["status"] == "FAILED", reply
            assert reply["error"].startswith(error), (reply, error)
            assert reply["service"] == CONSUMER[topic]
            for field in ("saga_id", "step", "kind", "action", "account", "amount_cents"):
                assert reply[field] == value[field], (field, reply, value)
            assert f"❌ Refused {value['command_id']}: {error}" in stack.log(CONSUMER[topic])
    # Never applied, never recorded: not one of them is answered from a ledger later.
    for participant in PARTICIPANTS:
        assert "kin-c" not in _ledger_lines(stack, participant)


def test_bad_input_produced_with_kcat_moves_no_money(stack: Stack) -> None:
    wait_caught_up(stack)
    balances_before = balances(stack)
    before = all_forwards(stack)
    requests, commands = refused_requests(), bad_commands()
    expected = produce_bad_input(stack, requests, commands)

    sagas = stack.wait_terminal(requests, timeout=30)
    wanted = {value["command_id"] for refusals in commands.values() for value, _ in refusals}
    replies = wait_replies(stack, wanted)
    wait_caught_up(stack)

    assert balances(stack) == balances_before
    assert_requests_refused(stack, sagas, requests)
    assert_commands_refused(stack, replies, commands)
    stack.assert_invariants()
    assert_no_phantom(stack)
    forwarded = forwards_since(stack, before)
    assert forwarded == by_consumer(expected), forwarded
    print(
        f"\n(c) {len(requests)} refused requests, {len(wanted)} refused commands; "
        f"forwarded {sum(expected.values())} strays"
    )


def _ledger_lines(stack: Stack, participant: str) -> str:
    """The changelog values of a participant's accounts, where its ledger is written."""
    return stack.kcat(
        "-t", f"{ROLES[participant].app_id}-accounts-changelog", "-C", "-e", "-q", "-f", "%s\n"
    )


def test_request_with_an_invalid_saga_id_starts_no_saga(stack: Stack) -> None:
    """A saga id that is not an identifier is logged and skipped: no saga, readable or not."""
    wait_caught_up(stack)
    balances_before = balances(stack)
    sagas_before = stack.all_sagas()
    before = all_forwards(stack)
    bad_ids = ["../x", "-x", "x" * 65, "a/b", ""]
    # Some would be strays, were they routed.
    assert any(kcat_partition(i) != partition_for(i, PARTITIONS) for i in bad_ids if i)
    lines = [line(saga_id or "kin-empty", request(saga_id, 100)) for saga_id in bad_ids]
    assert produce(stack, TRANSFER_REQUEST_TOPIC, lines) == Counter()
    wait_caught_up(stack)
    assert balances(stack) == balances_before
    assert stack.all_sagas() == sagas_before
    log = stack.log("orchestrator")
    for saga_id in bad_ids:
        assert re.search(rf"WARNING.*Skipped .*{re.escape(repr(saga_id))}", log), saga_id
    # Skipped before routing: not forwarded, whatever partition kcat chose.
    assert forwards_since(stack, before) == by_consumer(Counter())


# -- d. a phantom account in the changelog ------------------------------------------------


def test_phantom_account_in_the_changelog_is_never_read_and_is_reported(stack: Stack) -> None:
    ensure_history(stack)  # account A has a record in its changelog
    wait_caught_up(stack)
    true_balance = stack.balance_cents("service-a")
    balances_before = balances(stack)
    changelog = f"{ROLES['service-a'].app_id}-accounts-changelog"
    rows = stack.kcat("-t", changelog, "-C", "-e", "-q", "-f", "%p|%k|%s\n").splitlines()
    home = partition_for("A", PARTITIONS)
    # The key is the account id as JSON (in quotes); the value the account, ledger included.
    latest = [value for p, key, value in (r.split("|", 2) for r in rows) if key == '"A"']
    assert latest, rows[:5]
    assert {int(r.split("|", 1)[0]) for r in rows if r.split("|")[1] == '"A"'} == {home}
    account = json.loads(latest[-1])
    assert account["balance_cents"] == true_balance
    copy_on, richer_on = [p for p in range(PARTITIONS) if p != home][:2]
    richer = {**account, "balance_cents": account["balance_cents"] + 777_77}
    stack.kcat_produce(changelog, [f'"A"{TAB}{latest[-1]}'], "-K", TAB, "-p", str(copy_on))
    stack.kcat_produce(changelog, [line('"A"', richer)], "-K", TAB, "-p", str(richer_on))

    stack.restart("service-a")  # recovers its table from the changelog, phantoms too

    assert stack.balance_cents("service-a") == true_balance
    found = integrity(stack, "service-a")
    assert found["table"] == "accounts", found
    [item] = [item for item in found["misplaced"] if item["key"] == "A"]
    assert item["partition"] == home
    assert {home, copy_on, richer_on} <= set(item["held_in"]), item
    for role in ROLES:
        if role != "service-a":
            assert integrity(stack, role)["misplaced"] == [], role

    report = stack.audit()
    FIGURES["phantom audit"] = report.render()
    print("\n(d) " + report.render())
    assert not report.ok
    first, second, third = sorted({home, copy_on, richer_on})
    held = f"{first}, {second} and {third}"
    assert report.violations == [
        f"partitioning: account A held in partitions {held} (it belongs in {home}; service-a)"
    ], report.render()
    assert report.balances == balances_before

    # The agent, too, reads A in its own partition: a transfer moves the true balance.
    status, body = stack.transfer(5)
    assert status == 202, body
    saga = stack.wait_terminal([body["saga_id"]], timeout=60)[body["saga_id"]]
    moved = 5_00 if saga["status"] == "COMPLETED" else 0
    assert stack.balance_cents("service-a") == true_balance - moved, saga
    after = stack.audit()
    assert [v for v in after.violations if not v.startswith("partitioning:")] == [], after.render()
