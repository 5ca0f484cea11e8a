"""The client commands (`strom topic|produce|consume`) against a real in-process broker."""

from __future__ import annotations

import base64
import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from strom.cli.main import cli
from strom.testing import EmbeddedBroker

_names = itertools.count()


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A fresh topic name per test (not created)."""
    return f"cli-{request.node.name.split('[')[0].removeprefix('test_')}-{next(_names)}"


def run(broker: EmbeddedBroker, *args: str, input: str | None = None,
        code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "-b", broker.bootstrap_servers], input=input)
    assert result.exit_code == code, (
        f"strom {' '.join(args)} exited {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}\nexception: {result.exception!r}")
    return result


def create(broker: EmbeddedBroker, name: str, partitions: int = 1, *extra: str) -> None:
    run(broker, "topic", "create", name, "--partitions", str(partitions), *extra)


def consume_lines(broker: EmbeddedBroker, name: str, *args: str) -> list[str]:
    result = run(broker, "consume", name, "--exit-at-end", "--timeout", "10", *args)
    return result.stdout.splitlines()


def consume_json(broker: EmbeddedBroker, name: str, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in consume_lines(broker, name, "--format", "json", *args)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- topics -------------------------------------------------------------------------------

def test_create_list_describe_delete(broker: EmbeddedBroker, topic: str) -> None:
    out = run(broker, "topic", "create", topic, "--partitions", "3", "--replication-factor",
              "1", "--config", "retention.ms=3600000").stdout
    assert f"created topic {topic} with 3 partitions" in out

    listing = run(broker, "topic", "list").stdout
    row = next(line for line in listing.splitlines() if f" {topic} " in line)
    assert "3" in row and "no" in row
    assert topic in run(broker, "topic", "list", "--names-only").stdout.splitlines()

    described = run(broker, "topic", "describe", topic).stdout
    assert f"Topic: {topic}" in described and "partitions: 3" in described
    assert "retention.ms" in described and "3600000" in described
    assert "dynamic_topic" in described

    failed = run(broker, "topic", "create", topic, code=1)
    assert f"topic {topic} already exists" in failed.stderr and "--if-not-exists" in failed.stderr
    assert "already exists" in run(broker, "topic", "create", topic, "--if-not-exists").stderr

    assert f"deleted topic {topic}" in run(broker, "topic", "delete", topic).stdout
    assert topic not in run(broker, "topic", "list", "--names-only").stdout.splitlines()
    missing = run(broker, "topic", "delete", topic, code=1)
    assert f"topic {topic} does not exist" in missing.stderr
    run(broker, "topic", "delete", topic, "--if-exists")


def test_describe_shows_watermarks(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 2)
    run(broker, "produce", topic, "--partition", "1", "--value", "a", "--value", "b")
    described = run(broker, "topic", "describe", topic).stdout
    rows = [line for line in described.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in line.strip("│").split("│")] for line in rows]
    by_partition = {c[0]: c for c in cells if c[0].isdigit()}
    # partition, leader, replicas, isr, low, high, records
    assert by_partition["0"][4:] == ["0", "0", "0"]
    assert by_partition["1"][4:] == ["0", "2", "2"]
    assert by_partition["1"][1] == by_partition["1"][2] == by_partition["1"][3]


def test_alter_partitions_and_configs(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    out = run(broker, "topic", "alter", topic, "--partitions", "3",
              "--config", "retention.ms=7200000", "--config", "cleanup.policy=compact").stdout
    assert "now has 3 partitions (was 1)" in out
    described = run(broker, "topic", "describe", topic).stdout
    assert "partitions: 3" in described
    assert "7200000" in described and "compact" in described

    run(broker, "topic", "alter", topic, "--delete-config", "cleanup.policy")
    described = run(broker, "topic", "describe", topic).stdout
    assert "7200000" in described and "compact" not in described
    assert "cleanup.policy" in run(broker, "topic", "describe", topic, "--all-configs").stdout

    shrink = run(broker, "topic", "alter", topic, "--partitions", "2", code=1)
    assert "cannot remove partitions" in shrink.stderr
    assert "nothing to change" in run(broker, "topic", "alter", topic, code=2).stderr


def test_invalid_config_is_reported(broker: EmbeddedBroker, topic: str) -> None:
    failed = run(broker, "topic", "create", topic, "--config", "retention.ms=soon", code=1)
    assert f"creating topic {topic} failed" in failed.stderr
    assert "--config" in run(broker, "topic", "create", topic, "--config", "novalue",
                             code=2).stderr


# --- produce and consume ------------------------------------------------------------------

def test_text_round_trip_from_stdin(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    produced = run(broker, "produce", topic, input="one\ntwo\n\nfour\n")
    assert f"produced 4 records to {topic} (partition 0: offsets 0-3)" in produced.stderr
    consumed = run(broker, "consume", topic, "--exit-at-end", "--timeout", "10")
    assert consumed.stdout.splitlines() == ["one", "two", "", "four"]
    assert f"consumed 4 records from {topic}" in consumed.stderr


def test_keys_headers_and_offsets_in_text(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    run(broker, "produce", topic, "--key-separator", ":", "-H", "source=cli", "-H", "n=1",
        "--value", "k1:v1", "--value", "k2:v:2")
    assert consume_lines(broker, topic) == ["v1", "v:2"]
    assert consume_lines(broker, topic, "--print-key") == ["k1\tv1", "k2\tv:2"]
    assert consume_lines(broker, topic, "--print-offset", "--print-headers", "--print-key",
                         "-K", "|") == ["0:0|source=cli,n=1|k1|v1", "0:1|source=cli,n=1|k2|v:2"]


def test_keys_choose_partitions(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 4)
    lines = "".join(f"user{i % 5}={i}\n" for i in range(40))
    run(broker, "produce", topic, "-K", "=", input=lines)
    records = consume_json(broker, topic)
    assert len(records) == 40
    partitions_of_key: dict[str, set[int]] = {}
    for record in records:
        partitions_of_key.setdefault(record["key"], set()).add(record["partition"])
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    for partition in {r["partition"] for r in records}:
        values = [int(r["value"]) for r in records if r["partition"] == partition]
        assert values == sorted(values)


def test_json_round_trip(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 2)
    binary = bytes(range(250, 256)) + b"\x00"
    lines = [
        {"key": "a", "value": "plain", "headers": {"h": "1", "dup": ["x", "y"]},
         "partition": 1, "timestamp": 1_700_000_000_000},
        {"key": None, "value": {"base64": base64.b64encode(binary).decode()}, "partition": 1},
        {"key": {"base64": base64.b64encode(b"\xff").decode()}, "value": None, "partition": 0},
        {"value": {"nested": [1, 2]}, "headers": [["a", "b"], ["a", None]], "partition": 0},
    ]
    input_text = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    produced = run(broker, "produce", topic, "--format", "json", input=input_text)
    assert "produced 4 records" in produced.stderr

    records = sorted(consume_json(broker, topic), key=lambda r: (r["partition"], r["offset"]))
    assert [(r["topic"], r["partition"], r["offset"]) for r in records] == [
        (topic, 0, 0), (topic, 0, 1), (topic, 1, 0), (topic, 1, 1)]
    tombstone, nested, plain, raw = records
    assert tombstone["key"] == {"base64": "/w=="} and tombstone["value"] is None
    assert nested["key"] is None and nested["value"] == '{"nested":[1,2]}'
    assert nested["headers"] == {"a": ["b", None]}
    assert plain["key"] == "a" and plain["value"] == "plain"
    assert plain["headers"] == {"h": "1", "dup": ["x", "y"]}
    assert plain["timestamp"] == 1_700_000_000_000
    assert raw["value"] == {"base64": base64.b64encode(binary).decode()}
    assert isinstance(raw["timestamp"], int) and raw["timestamp"] > 1_700_000_000_000


def test_consume_json_replays_into_produce(broker: EmbeddedBroker, topic: str) -> None:
    copy = f"{topic}-copy"
    create(broker, topic, 2)
    create(broker, copy, 2)
    run(broker, "produce", topic, "-K", ",", "-H", "x=y", input="a,1\nb,2\nc,3\n")
    dump = run(broker, "consume", topic, "--format", "json", "-e", "-t", "10").stdout
    run(broker, "produce", copy, "--format", "json", input=dump)

    def strip(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["partition"], r["offset"], r["key"], r["value"], r["timestamp"],
                       json.dumps(r["headers"])) for r in records)

    assert strip(consume_json(broker, copy)) == strip(consume_json(broker, topic))


def test_binary_values_in_text_are_escaped(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    payload = base64.b64encode(b"ok\xff").decode()
    run(broker, "produce", topic, "--format", "json", "--value",
        json.dumps({"value": {"base64": payload}}))
    assert consume_lines(broker, topic) == ["ok\\xff"]


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_and_compression(broker: EmbeddedBroker, topic: str, acks: str,
                              compression: str) -> None:
    create(broker, topic, 1)
    values = [f"value-{i}-" + "x" * 50 for i in range(20)]
    produced = run(broker, "produce", topic, "--acks", acks, "--compression", compression,
                   input="\n".join(values) + "\n")
    assert "produced 20 records" in produced.stderr
    if acks == "0":
        assert "offsets not reported" in produced.stderr
    else:
        assert "offsets 0-19" in produced.stderr
    assert consume_lines(broker, topic) == values


def test_offset_specs(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    base = 1_600_000_000_000
    lines = [json.dumps({"value": str(i), "timestamp": base + i * 1000}) for i in range(10)]
    run(broker, "produce", topic, "--format", "json", input="\n".join(lines))
    everything = [str(i) for i in range(10)]
    assert consume_lines(broker, topic, "--offset", "beginning") == everything
    assert consume_lines(broker, topic, "--offset", "7") == ["7", "8", "9"]
    assert consume_lines(broker, topic, "--offset", "-3") == ["7", "8", "9"]
    assert consume_lines(broker, topic, "--offset", "-30") == everything
    assert consume_lines(broker, topic, "--offset", "99") == []
    assert consume_lines(broker, topic, "--offset", "end") == []
    assert consume_lines(broker, topic, "--offset", f"@{base + 4500}") == ["5", "6", "7", "8",
                                                                           "9"]
    assert consume_lines(broker, topic, "--offset", f"@{base + 99_000}") == []
    assert consume_lines(broker, topic, "--offset", "2", "--count", "3") == ["2", "3", "4"]
    bad = run(broker, "consume", topic, "--offset", "yesterday", code=2)
    assert "beginning, end, N, -N or @TIMESTAMP_MS" in bad.stderr


def test_partition_selection(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 3)
    for partition in range(3):
        run(broker, "produce", topic, "--partition", str(partition), "--value", f"p{partition}")
    assert consume_lines(broker, topic, "--partition", "2") == ["p2"]
    assert sorted(consume_lines(broker, topic, "-p", "0", "-p", "1")) == ["p0", "p1"]
    assert sorted(consume_lines(broker, topic)) == ["p0", "p1", "p2"]


def test_idle_timeout_stops_consume(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    run(broker, "produce", topic, "--value", "only")
    result = run(broker, "consume", topic, "--timeout", "1")
    assert result.stdout.splitlines() == ["only"]
    assert "consumed 1 record from" in result.stderr
    assert run(broker, "consume", topic, "-t", "1", "-q").stderr == ""


# --- errors -------------------------------------------------------------------------------

def test_unknown_topic(broker: EmbeddedBroker, topic: str) -> None:
    hint = f"topic {topic} does not exist (create it with `strom topic create {topic}`)"
    for command in (["consume", topic, "-e"], ["produce", topic, "--value", "x"],
                    ["topic", "describe", topic], ["topic", "alter", topic, "--partitions", "2"]):
        assert hint in run(broker, *command, code=1).stderr
    # listing metadata for the check must not have auto-created the topic
    assert topic not in run(broker, "topic", "list", "--names-only").stdout.splitlines()


def test_unknown_partition(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 2)
    for command in (["consume", topic, "-p", "5", "-e"],
                    ["produce", topic, "-p", "2", "--value", "x"]):
        failed = run(broker, *command, code=1)
        assert f"topic {topic} has no partition" in failed.stderr
        assert "--partitions N" in failed.stderr
    failed = run(broker, "produce", topic, "--format", "json", code=1,
                 input='{"value": "a", "partition": 0}\n{"value": "b", "partition": 9}\n')
    assert "record 2" in failed.stderr and "no partition 9" in failed.stderr
    assert "produced 1 record " in failed.stderr


def test_bad_input_lines(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    failed = run(broker, "produce", topic, "--format", "json", input='{"value": "ok"}\nnot json\n',
                 code=1)
    assert "record 2: invalid JSON" in failed.stderr and "produced 1 record" in failed.stderr
    failed = run(broker, "produce", topic, "--format", "json", input='{"valu": "typo"}\n',
                 code=1)
    assert "unknown field(s) valu" in failed.stderr
    failed = run(broker, "produce", topic, "-K", ":", input="k:v\nno separator\n", code=1)
    assert "record 2: no key separator ':'" in failed.stderr
    assert consume_lines(broker, topic) == ["ok", "v"]


@pytest.mark.parametrize("command", [
    ["topic", "list"], ["topic", "create", "t"], ["topic", "describe", "t"],
    ["topic", "delete", "t"], ["produce", "t", "--value", "x"], ["consume", "t", "-e"],
])
def test_unreachable_broker(command: list[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(cli, [*command, "-b", address, "--request-timeout", "1"])
    assert result.exit_code == 1, result.output
    assert f"cannot reach a broker at {address}" in result.stderr
    assert "is `strom serve` running?" in result.stderr


def test_bootstrap_from_environment(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    result = CliRunner(env={"STROM_BOOTSTRAP": broker.bootstrap_servers}).invoke(
        cli, ["topic", "list", "--names-only"])
    assert result.exit_code == 0 and topic in result.stdout.splitlines()


def test_command_config_is_passed_to_the_client(broker: EmbeddedBroker, topic: str) -> None:
    create(broker, topic, 1)
    run(broker, "produce", topic, "-X", "client.id=strom-test", "--value", "x")
    failed = run(broker, "topic", "list", "-X", "no.such.setting=1", code=1)
    assert "no.such.setting" in failed.stderr
    assert "KEY=VALUE" in run(broker, "topic", "list", "-X", "oops", code=2).stderr
