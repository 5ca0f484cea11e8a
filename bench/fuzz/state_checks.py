"""State checks at the end of a run, over the raw protocol.

* `__consumer_offsets` and `__transaction_state` exist with the broker's configured partition
  counts and cleanup.policy=compact;
* InitProducerId works for transactional ids on different `__transaction_state` partitions, and
  groups on different `__consumer_offsets` partitions can join, sync, commit and fetch;
* every other topic is deletable: DeleteTopics answers 0 for it and Metadata no longer lists
  it, also after a restart of the broker (when the run owns it);
* an internal topic cannot be deleted (checked last: a broker that accepts it is broken after).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Final

from kio.schema.errors import ErrorCode

from bench.fuzz import calls, wire
from bench.fuzz.clients import CheckFailed
from bench.fuzz.findings import Check, pretty_hex, run_check
from bench.fuzz.wire import Client
from strom.coordinator.hashing import partition_for

OFFSETS: Final = "__consumer_offsets"
TXN_STATE: Final = "__transaction_state"
INTERNAL: Final = frozenset({OFFSETS, TXN_STATE, "__share_group_state"})
PARTITION_KEYS: Final = {OFFSETS: "offsets.topic.num.partitions",
                         TXN_STATE: "transaction.state.log.num.partitions"}
IDS: Final = 8


def ids_on_distinct_partitions(prefix: str, partitions: int, count: int) -> list[str]:
    """`count` ids that Kafka's hash puts on `count` different partitions."""
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < min(count, partitions):
        candidate = f"{prefix}-{i}"
        chosen.setdefault(partition_for(candidate, partitions), candidate)
        i += 1
    return list(chosen.values())


def internal_topics(client: Client, expected: dict[str, int]) -> str:
    """Both internal topics exist with the expected partition counts and are compacted."""
    found = calls.metadata(client, list(expected))
    problems = []
    for name, partitions in expected.items():
        entry = found.get(name)
        if entry is None or entry.error_code != ErrorCode.none:
            problems.append(f"{name} missing ({None if entry is None else entry.error_code})")
            continue
        if len(entry.partitions) != partitions:
            problems.append(f"{name} has {len(entry.partitions)} partitions, not {partitions}")
        policy = calls.configs(client, calls.TOPIC_RESOURCE, name, ["cleanup.policy"])
        if policy.get("cleanup.policy") != "compact":
            problems.append(f"{name} cleanup.policy={policy.get('cleanup.policy')}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return ", ".join(f"{n}: {p} partitions" for n, p in expected.items())


def transactional_ids(client: Client, partitions: int, prefix: str) -> str:
    ids = ids_on_distinct_partitions(prefix, partitions, IDS)
    for transactional_id in ids:
        calls.init_producer_id(client, transactional_id)
    return f"{len(ids)} ids on partitions {sorted(partition_for(i, partitions) for i in ids)}"


def groups(address: tuple[str, int], partitions: int, topic: str, prefix: str) -> str:
    """Groups on distinct partitions, concurrently (a new group may wait for its first
    rebalance delay)."""
    ids = ids_on_distinct_partitions(prefix, partitions, IDS)

    def one(group: str) -> None:
        with Client(address) as client:
            calls.group_commit_and_fetch(client, group, topic, 42)

    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        failures = []
        for group, future in zip(ids, [pool.submit(one, g) for g in ids], strict=True):
            try:
                future.result(timeout=60)
            except Exception as exc:  # collected, reported together
                failures.append(f"{group} (partition {partition_for(group, partitions)}): "
                                f"{exc}")
    if failures:
        raise CheckFailed("; ".join(failures))
    return f"{len(ids)} groups on partitions {sorted(partition_for(g, partitions) for g in ids)}"


def delete_all(client: Client, exclude: set[str]) -> tuple[Check, list[str]]:
    """DeleteTopics for every non-internal topic not in `exclude`; each must answer 0 and be
    gone from Metadata. Returns the check and the topics it tried to delete."""
    names = sorted(n for n, t in calls.metadata(client, None).items()
                   if n not in INTERNAL and n not in exclude and not t.is_internal)
    problems: list[str] = []
    frame: str | None = None
    for name in names:  # one by one: a failure is then that topic's
        answer = calls.delete_topics(client, [name]).get(name)
        if answer != ErrorCode.none:
            problems.append(f"{_short(name)}: {_code(answer)}")
            frame = frame or pretty_hex(wire.encode_frame(calls.delete_topics_request([name]),
                                                          1))
    left = sorted(set(names) & set(calls.metadata(client, None)))
    problems += [f"{_short(n)} still listed by Metadata" for n in left]
    check = Check(f"every topic deletable ({len(names)} topics)", not problems,
                  "; ".join(problems[:10]) or f"{len(names)} deleted", frame=frame)
    return check, names


def stay_deleted(client: Client, names: list[str]) -> str:
    back = sorted(set(names) & set(calls.metadata(client, None)))
    if back:
        raise CheckFailed(f"{len(back)} deleted topics are back: "
                          f"{', '.join(_short(n) for n in back[:5])}")
    return f"none of {len(names)} came back"


def internal_not_deletable(client: Client, expected: dict[str, int]) -> Check:
    answers = calls.delete_topics(client, [OFFSETS])
    check = Check(f"DeleteTopics on {OFFSETS} refused", answers.get(OFFSETS) not in (
        ErrorCode.none, None), f"answered {_code(answers.get(OFFSETS))}",
        frame=pretty_hex(wire.encode_frame(calls.delete_topics_request([OFFSETS]), 1)))
    if check.ok:
        after = run_check("internal topics intact", lambda: internal_topics(client, expected))
        if not after.ok:
            check.ok, check.detail = False, f"{check.detail}, then {after.detail}"
    return check


def _short(name: str) -> str:
    return name if len(name) <= 40 else f"{name[:12]}…({len(name)} chars)"


def _code(code: int | None) -> str:
    if code is None:
        return "no result for it"
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def run(address: tuple[str, int], expected: dict[str, int], exclude: set[str],
        restart: Callable[[], None] | None, tag: str) -> list[Check]:
    """All state checks in order; `restart` restarts the broker (None: not ours to restart)."""
    checks: list[Check] = []
    topic = f"fuzz-state-{tag}"
    with Client(address) as client:
        created = calls.create_topics(client, [topic], 1)
        if created.get(topic) != ErrorCode.none:
            checks.append(Check(f"create {topic}", False, f"answered {created}"))
        checks.append(run_check("InitProducerId on many partitions", lambda: transactional_ids(
            client, expected[TXN_STATE], f"fuzz-state-tx-{tag}")))
        checks.append(run_check("groups on many partitions", lambda: groups(
            address, expected[OFFSETS], topic, f"fuzz-state-g-{tag}")))
        checks.append(run_check("internal topics intact", lambda: internal_topics(
            client, expected)))
        try:
            deletable, names = delete_all(client, exclude)
        except (OSError, CheckFailed, wire.Closed) as exc:
            deletable, names = Check("every topic deletable", False, repr(exc)), []
        checks.append(deletable)
    if restart is not None:
        checks.append(run_check("broker restarts", lambda: restart() or "restarted"))
    with Client(address) as client:
        if restart is not None:
            checks.append(run_check("deleted topics stay deleted after restart",
                                    lambda: stay_deleted(client, names)))
            checks.append(run_check("internal topics intact after restart",
                                    lambda: internal_topics(client, expected)))
        checks.append(internal_not_deletable(client, expected))
    return checks
