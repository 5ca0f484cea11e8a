"""`strom group list|describe|delete|reset-offsets` against a real in-process broker.

The groups are made the way applications make them: confluent-kafka consumers that subscribe,
join, consume and commit synchronously.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    create_topic,
    produce_all,
    producer,
    unique_name,
)

T0 = 1_700_000_000_000  # the records' timestamps: T0, T0 + 1 s, T0 + 2 s, ...


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"group.initial.rebalance.delay.ms": "0"}


def run(broker: EmbeddedBroker, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "-b", broker.bootstrap_servers])
    assert result.exit_code == code, (
        f"strom {' '.join(args)} exited {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}\nexception: {result.exception!r}")
    return result


def cells(output: str, first: str) -> list[list[str]]:
    """The rows of the printed tables whose first cell is `first`."""
    rows = []
    for line in output.splitlines():
        parts = [c.strip() for c in line.split("│")]
        if len(parts) > 2 and parts[1] == first:
            rows.append(parts[1:-1])
    return rows


def offsets_of(output: str, topic: str) -> dict[int, list[str]]:
    """partition -> the rest of its row in a describe or reset-offsets table."""
    return {int(r[1]): r[2:] for r in cells(output, topic)}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- making groups ------------------------------------------------------------------------

def group_consumer(bootstrap: str, group: str, **extra: Any) -> Consumer:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "group.id": group,
                            "enable.auto.commit": False, "auto.offset.reset": "earliest",
                            "session.timeout.ms": 10000, "fetch.wait.max.ms": 100,
                            "socket.timeout.ms": 10000}
    conf.update(extra)
    return Consumer(conf)


def read(c: Consumer, count: int) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(messages) < count:
        assert time.monotonic() < deadline, f"read {len(messages)} of {count} records"
        msg = c.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        assert error is None or error.code() == KafkaError._PARTITION_EOF, error
        if error is None:
            messages.append(msg)
    return messages


def consume_and_commit(bootstrap: str, group: str, topic: str, count: int,
                       commits: dict[int, int]) -> None:
    """A member of `group` reads `count` records, commits `commits` synchronously, leaves."""
    c = group_consumer(bootstrap, group)
    try:
        c.subscribe([topic])
        read(c, count)
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in commits.items()],
                 asynchronous=False)
    finally:
        c.close()


def first_offsets(bootstrap: str, group: str, topic: str, count: int) -> dict[int, int]:
    """Where a new member of `group` starts reading in each partition (it reads `count`
    records; with no committed offset it would start at the end and read none)."""
    c = group_consumer(bootstrap, group, **{"auto.offset.reset": "latest"})
    try:
        c.subscribe([topic])
        firsts: dict[int, int] = {}
        for msg in read(c, count):
            firsts.setdefault(msg.partition() or 0, msg.offset() or 0)
        return firsts
    finally:
        c.close()


def produce_to(bootstrap: str, topic: str, partition: int, count: int, start: int = 0) -> None:
    """`count` records into `partition`, timestamped T0 + i seconds for i from `start`."""
    records = [{"partition": partition, "value": f"v{i}".encode(), "timestamp": T0 + i * 1000}
               for i in range(start, start + count)]
    delivered = produce_all(producer(bootstrap), topic, records)
    assert not delivered.failed


@pytest.fixture
def committed_group(broker: EmbeddedBroker) -> Iterator[tuple[str, str]]:
    """(group, topic): 2 partitions with 7 and 5 records; the group committed 3 and 5, so
    partition 0 lags by 4 and partition 1 by 0; no member left."""
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("grp"), partitions=2)
    produce_to(bootstrap, topic, 0, 5)
    produce_to(bootstrap, topic, 1, 5)
    group = unique_name("g")
    consume_and_commit(bootstrap, group, topic, 10, {0: 3, 1: 5})
    produce_to(bootstrap, topic, 0, 2, start=5)
    yield group, topic


def committed(broker: EmbeddedBroker, group: str, topic: str) -> dict[int, str]:
    described = run(broker, "group", "describe", group).stdout
    return {p: rest[0] for p, rest in offsets_of(described, topic).items()}


def reset(broker: EmbeddedBroker, group: str, *args: str, code: int = 0) -> Result:
    return run(broker, "group", "reset-offsets", group, *args, code=code)


# --- list and describe --------------------------------------------------------------------

def test_list_shows_the_empty_group(broker: EmbeddedBroker,
                                    committed_group: tuple[str, str]) -> None:
    group, _ = committed_group
    listed = cells(run(broker, "group", "list").stdout, group)
    assert listed == [[group, "classic", "Empty", "consumer"]]
    assert group in run(broker, "group", "list", "--names-only").stdout.splitlines()
    assert cells(run(broker, "group", "list", "--state", "Empty").stdout, group)
    assert cells(run(broker, "group", "list", "--state", "stable,dead").stdout, group) == []


def test_list_by_type(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, _ = committed_group
    assert cells(run(broker, "group", "list", "--type", "classic").stdout, group)
    assert cells(run(broker, "group", "list", "--type", "consumer").stdout, group) == []


def test_list_rejects_an_unknown_state(broker: EmbeddedBroker) -> None:
    failed = run(broker, "group", "list", "--state", "sleepy", code=2)
    assert "'sleepy' is not one of Empty, Stable" in failed.stderr


def test_describe_shows_offsets_and_lag(broker: EmbeddedBroker,
                                        committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    described = run(broker, "group", "describe", group).stdout
    assert f"Group: {group}  state: Empty  type: classic  protocol type: consumer" in described
    assert "No active members." in described
    # committed, log end, lag, member
    assert offsets_of(described, topic) == {0: ["3", "7", "4", "-"], 1: ["5", "5", "0", "-"]}


def test_list_and_describe_json(broker: EmbeddedBroker,
                                committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    listed = json.loads(run(broker, "group", "list", "--output", "json").stdout)
    assert [g for g in listed["groups"] if g["group"] == group] == [
        {"group": group, "type": "classic", "state": "Empty", "protocol_type": "consumer"}]
    # --names-only is a table shortcut: with --output json the document is printed
    assert json.loads(run(broker, "group", "list", "--names-only", "--output", "json").stdout
                      ) == listed

    described = json.loads(run(broker, "group", "describe", group, "--output", "json").stdout)
    [one] = described["groups"]
    assert (one["group"], one["state"], one["type"], one["members"]) == (
        group, "Empty", "classic", [])
    assert one["coordinator"]["id"] >= 0 and isinstance(one["coordinator"]["port"], int)
    assert [o for o in one["offsets"] if o["topic"] == topic] == [
        {"topic": topic, "partition": 0, "committed_offset": 3, "log_end_offset": 7, "lag": 4,
         "member": None},
        {"topic": topic, "partition": 1, "committed_offset": 5, "log_end_offset": 5, "lag": 0,
         "member": None}]

    missing = run(broker, "group", "describe", group, f"{group}-none", "--output", "json",
                  code=1)
    assert [g["group"] for g in json.loads(missing.stdout)["groups"]] == [group]
    assert f"{group}-none" in missing.stderr


def test_describe_an_active_group(broker: EmbeddedBroker,
                                  committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    c = group_consumer(broker.bootstrap_servers, group, **{"client.id": "cli-test-client"})
    try:
        c.subscribe([topic])
        read(c, 4)  # the 4 records after the committed offsets: the member is assigned both
        described = run(broker, "group", "describe", group).stdout
        as_json = run(broker, "group", "describe", group, "--output", "json").stdout
    finally:
        c.close()
    assert "state: Stable" in described and "assignor: range" in described
    members = [r for r in ([c.strip() for c in line.split("│")[1:-1]]
                           for line in described.splitlines())
               if len(r) == 5 and r[2] == "cli-test-client"]
    assert len(members) == 1, described
    member_id, instance_id, client_id, _host, assigned = members[0]
    assert (instance_id, client_id, assigned) == ("-", "cli-test-client", f"{topic}:0,1")
    [shown] = json.loads(as_json)["groups"]
    [member] = shown["members"]
    assert (member["member_id"], member["instance_id"], member["client_id"]) == (
        member_id, None, "cli-test-client")
    assert member["assigned_partitions"] == [{"topic": topic, "partition": 0},
                                             {"topic": topic, "partition": 1}]
    assert {o["partition"]: o["member"] for o in shown["offsets"]} == {0: member_id,
                                                                       1: member_id}
    rows = offsets_of(described, topic)
    assert rows[0][3] == member_id and rows[1][3] == member_id


def test_describe_an_unknown_group(broker: EmbeddedBroker) -> None:
    failed = run(broker, "group", "describe", unique_name("nope"), code=1)
    assert "does not exist (see `strom group list`)" in failed.stderr


def test_describe_several_groups(broker: EmbeddedBroker,
                                 committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    missing = unique_name("nope")
    failed = run(broker, "group", "describe", group, missing, code=1)
    assert offsets_of(failed.stdout, topic)[0][:3] == ["3", "7", "4"]
    assert f"group {missing} does not exist" in failed.stderr


def test_a_simple_group(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    """Offsets committed by an assign()-only consumer: a group with no protocol type."""
    _, topic = committed_group
    group = unique_name("simple")
    c = group_consumer(broker.bootstrap_servers, group)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        read(c, 2)
        c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    finally:
        c.close()
    assert cells(run(broker, "group", "list").stdout, group) == [
        [group, "classic", "Empty", "-"]]
    assert offsets_of(run(broker, "group", "describe", group).stdout, topic) == {
        0: ["2", "7", "5", "-"]}


# --- reset-offsets ------------------------------------------------------------------------

def test_reset_to_earliest(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    dry = reset(broker, group, "--topic", topic, "--to-earliest")
    assert offsets_of(dry.stdout, topic) == {0: ["3", "0"], 1: ["5", "0"]}
    assert "dry run" in dry.stderr and "--execute" in dry.stderr
    assert committed(broker, group, topic) == {0: "3", 1: "5"}

    done = reset(broker, group, "--topic", topic, "--to-earliest", "--execute")
    assert offsets_of(done.stdout, topic) == {0: ["3", "0"], 1: ["5", "0"]}
    assert "committed 2 offset(s)" in done.stderr
    assert committed(broker, group, topic) == {0: "0", 1: "0"}
    assert first_offsets(broker.bootstrap_servers, group, topic, 12) == {0: 0, 1: 0}


def test_reset_to_latest(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    reset(broker, group, "--all-topics", "--to-latest", "--execute")
    assert committed(broker, group, topic) == {0: "7", 1: "5"}


def test_reset_json_and_batched_commits(broker: EmbeddedBroker,
                                        committed_group: tuple[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    group, topic = committed_group
    dry = reset(broker, group, "--topic", topic, "--to-latest", "--output", "json")
    assert json.loads(dry.stdout) == {"group": group, "dry_run": True, "offsets": [
        {"topic": topic, "partition": 0, "old_offset": 3, "new_offset": 7},
        {"topic": topic, "partition": 1, "old_offset": 5, "new_offset": 5}]}
    assert "dry run" in dry.stderr

    monkeypatch.setattr("strom.cli.group_offsets.COMMIT_BATCH", 1)  # one request a partition
    done = reset(broker, group, "--topic", topic, "--to-earliest", "--execute", "--output",
                 "json")
    assert json.loads(done.stdout)["dry_run"] is False
    assert "committed 2 offset(s)" in done.stderr
    assert committed(broker, group, topic) == {0: "0", 1: "0"}


def test_reset_shift_by(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    reset(broker, group, "--topic", topic, "--shift-by", "-2", "--execute")
    assert committed(broker, group, topic) == {0: "1", 1: "3"}
    assert first_offsets(broker.bootstrap_servers, group, topic, 8) == {0: 1, 1: 3}
    # clamped into [log start, log end]
    planned = reset(broker, group, "--topic", topic, "--shift-by", "-100").stdout
    assert offsets_of(planned, topic) == {0: ["1", "0"], 1: ["3", "0"]}
    planned = reset(broker, group, "--topic", topic, "--shift-by", "100").stdout
    assert offsets_of(planned, topic) == {0: ["1", "7"], 1: ["3", "5"]}


def test_reset_one_partition_to_an_offset(broker: EmbeddedBroker,
                                          committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    done = reset(broker, group, "--topic", f"{topic}:0", "--to-offset", "6", "--execute")
    assert offsets_of(done.stdout, topic) == {0: ["3", "6"]}
    assert committed(broker, group, topic) == {0: "6", 1: "5"}
    planned = reset(broker, group, "--topic", f"{topic}:0,1", "--to-offset", "99").stdout
    assert offsets_of(planned, topic) == {0: ["6", "7"], 1: ["5", "5"]}


def test_reset_to_datetime(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    moment = datetime.fromtimestamp((T0 + 2500) / 1000, tz=UTC).isoformat()
    done = reset(broker, group, "--topic", topic, "--to-datetime", moment, "--execute")
    # the first records at or after T0 + 2.5 s are offsets 3
    assert offsets_of(done.stdout, topic) == {0: ["3", "3"], 1: ["5", "3"]}
    assert first_offsets(broker.bootstrap_servers, group, topic, 6) == {0: 3, 1: 3}
    # no record that new: the log end
    later = reset(broker, group, "--topic", topic, "--to-datetime", "2999-01-01T00:00:00")
    assert offsets_of(later.stdout, topic) == {0: ["3", "7"], 1: ["3", "5"]}
    by_ms = reset(broker, group, "--topic", topic, "--to-timestamp", str(T0 + 6000))
    assert offsets_of(by_ms.stdout, topic) == {0: ["3", "6"], 1: ["3", "5"]}


def test_reset_refuses_an_active_group(broker: EmbeddedBroker,
                                       committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    c = group_consumer(broker.bootstrap_servers, group)
    try:
        c.subscribe([topic])
        read(c, 4)
        failed = reset(broker, group, "--topic", topic, "--to-earliest", "--execute", code=1)
        assert "has active members" in failed.stderr
        dry = reset(broker, group, "--topic", topic, "--to-earliest")
        assert "has active members" in dry.stderr
    finally:
        c.close()
    assert committed(broker, group, topic) == {0: "3", 1: "5"}


@pytest.mark.parametrize(("args", "message"), [
    (["--topic", "t"], "pass exactly one of --to-earliest"),
    (["--topic", "t", "--to-earliest", "--to-offset", "3"], "pass exactly one of"),
    (["--to-earliest"], "pass --topic"),
    (["--topic", "t:x", "--to-earliest"], "is not TOPIC or TOPIC:PARTITION"),
    (["--topic", "t", "--to-datetime", "yesterday"], "is not an ISO 8601 date-time"),
])
def test_reset_usage_errors(broker: EmbeddedBroker, args: list[str], message: str) -> None:
    failed = reset(broker, "g", *args, code=2)
    assert message in failed.stderr


def test_reset_errors(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    missing_topic = unique_name("none")
    failed = reset(broker, group, "--topic", missing_topic, "--to-earliest", code=1)
    assert f"topic {missing_topic} does not exist" in failed.stderr
    failed = reset(broker, group, "--topic", f"{topic}:7", "--to-earliest", code=1)
    assert f"topic {topic} has no partition 7" in failed.stderr
    fresh = unique_name("fresh")
    failed = reset(broker, fresh, "--topic", topic, "--shift-by", "1", code=1)
    assert "no committed offset" in failed.stderr
    failed = reset(broker, fresh, "--all-topics", "--to-earliest", code=1)
    assert f"group {fresh} has no committed offsets" in failed.stderr


def test_reset_creates_offsets_of_a_new_group(broker: EmbeddedBroker,
                                              committed_group: tuple[str, str]) -> None:
    _, topic = committed_group
    fresh = unique_name("fresh")
    done = reset(broker, fresh, "--topic", topic, "--to-offset", "2", "--execute")
    assert "does not exist yet" in done.stderr
    assert committed(broker, fresh, topic) == {0: "2", 1: "2"}


# --- delete -------------------------------------------------------------------------------

def test_delete(broker: EmbeddedBroker, committed_group: tuple[str, str]) -> None:
    group, _ = committed_group
    assert run(broker, "group", "delete", group).stdout == f"deleted group {group}\n"
    assert cells(run(broker, "group", "list").stdout, group) == []
    failed = run(broker, "group", "describe", group, code=1)
    assert f"group {group} does not exist" in failed.stderr
    failed = run(broker, "group", "delete", group, code=1)
    assert f"group {group} does not exist" in failed.stderr
    skipped = run(broker, "group", "delete", group, "--if-exists")
    assert f"group {group} does not exist" in skipped.stderr


def test_delete_refuses_an_active_group(broker: EmbeddedBroker,
                                        committed_group: tuple[str, str]) -> None:
    group, topic = committed_group
    c = group_consumer(broker.bootstrap_servers, group)
    try:
        c.subscribe([topic])
        read(c, 4)
        failed = run(broker, "group", "delete", group, code=1)
    finally:
        c.close()
    assert f"group {group} still has active members; stop them first" in failed.stderr
    assert cells(run(broker, "group", "list").stdout, group)


# --- unreachable --------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["group", "list"], ["group", "describe", "g"], ["group", "delete", "g"],
    ["group", "reset-offsets", "g", "--topic", "t", "--to-earliest"],
])
def test_unreachable_broker(command: Sequence[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(cli, [*command, "-b", address, "--request-timeout", "1"])
    assert result.exit_code == 1, result.output
    assert f"cannot reach a broker at {address}" in result.stderr
