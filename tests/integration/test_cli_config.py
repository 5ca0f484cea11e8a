"""`strom config get|set|delete`, `--output json` and `strom completion` against a real broker."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
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
def topic(broker: EmbeddedBroker, request: pytest.FixtureRequest) -> str:
    """A fresh topic with 2 partitions."""
    name = f"cfg-{request.node.name.split('[')[0].removeprefix('test_')}-{next(_names)}"
    run(broker, "topic", "create", name, "--partitions", "2")
    return name


def run(broker: EmbeddedBroker, *args: str, input: str | None = None,
        code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "-b", broker.bootstrap_servers], input=input)
    assert result.exit_code == code, (
        f"strom {' '.join(args)} exited {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}\nexception: {result.exception!r}")
    return result


def as_json(broker: EmbeddedBroker, *args: str) -> Any:
    return json.loads(run(broker, *args, "--output", "json").stdout)


def configs_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["configs"]}


# --- config get|set|delete ----------------------------------------------------------------

def test_topic_config_set_get_delete(broker: EmbeddedBroker, topic: str) -> None:
    assert "all configs are defaults" in run(broker, "config", "get", "--topic", topic).stdout

    out = run(broker, "config", "set", "--topic", topic, "retention.ms=123456",
              "cleanup.policy=compact").stdout
    assert "retention.ms=123456" in out and f"topic {topic}" in out

    table = run(broker, "config", "get", "--topic", topic).stdout
    line = next(ln for ln in table.splitlines() if "retention.ms" in ln)
    assert "123456" in line and "dynamic_topic" in line

    document = as_json(broker, "config", "get", "--topic", topic)
    assert document["resource_type"] == "topic" and document["resource_name"] == topic
    configs = configs_by_name(document)
    assert set(configs) == {"retention.ms", "cleanup.policy"}
    assert configs["retention.ms"] == {
        "name": "retention.ms", "value": "123456", "source": "dynamic_topic",
        "default": False, "read_only": False, "sensitive": False}

    out = run(broker, "config", "delete", "--topic", topic, "retention.ms").stdout
    assert "deleted retention.ms" in out
    everything = configs_by_name(as_json(broker, "config", "get", "--topic", topic, "--all"))
    retention = everything["retention.ms"]
    assert retention["source"] != "dynamic_topic" and retention["value"] == "604800000"
    assert retention["default"] is True and isinstance(retention["synonyms"], list)
    assert everything["cleanup.policy"]["value"] == "compact"
    assert "retention.ms" not in configs_by_name(as_json(broker, "config", "get", "--topic",
                                                         topic))
    table = run(broker, "config", "get", "--topic", topic, "--all").stdout
    assert "synonyms" in table and "retention.ms" in table


def test_topic_config_errors_are_one_clear_line(broker: EmbeddedBroker, topic: str) -> None:
    invalid = run(broker, "config", "set", "--topic", topic, "retention.ms=soon", code=1)
    message = invalid.stderr.strip()
    assert message.startswith("Error: setting configs of topic") and "\n" not in message
    assert "INVALID_CONFIG" in message and "strom config get --topic" in message
    assert invalid.stdout == ""
    assert "retention.ms" not in configs_by_name(as_json(broker, "config", "get", "--topic",
                                                         topic))

    unknown = run(broker, "config", "set", "--topic", topic, "no.such.config=1", code=1)
    assert "INVALID_CONFIG" in unknown.stderr

    missing = run(broker, "config", "get", "--topic", f"{topic}-missing", code=1)
    assert "does not exist" in missing.stderr and "UNKNOWN_TOPIC_OR_PART" in missing.stderr
    missing = run(broker, "config", "set", "--topic", f"{topic}-missing", "retention.ms=1",
                  code=1)
    assert "does not exist" in missing.stderr

    both = run(broker, "config", "get", "--topic", topic, "--broker", "0", code=2)
    assert "exactly one of --topic NAME or --broker ID" in both.stderr
    bad_pair = run(broker, "config", "set", "--topic", topic, "retention.ms", code=2)
    assert "is not KEY=VALUE" in bad_pair.stderr


def test_broker_configs_are_read_only(broker: EmbeddedBroker) -> None:
    node = str(broker.server.config.node_id)
    document = as_json(broker, "config", "get", "--broker", node, "--all")
    assert document["resource_type"] == "broker" and document["resource_name"] == node
    configs = configs_by_name(document)
    assert configs["node.id"]["value"] == node and configs["node.id"]["read_only"] is True
    assert all(c["read_only"] for c in configs.values())
    assert "node.id" in run(broker, "config", "get", "--broker", node, "--all").stdout

    # strom has no dynamic broker configs: the broker refuses, the CLI says what to do
    refused = run(broker, "config", "set", "--broker", node, "log.retention.ms=1000", code=1)
    assert "INVALID_REQUEST" in refused.stderr and "read-only" in refused.stderr
    refused = run(broker, "config", "delete", "--broker", node, "log.retention.ms", code=1)
    assert "INVALID_REQUEST" in refused.stderr

    absent = run(broker, "config", "get", "--broker", str(int(node) + 7), code=1)
    assert f"broker {int(node) + 7} is not in the cluster (its brokers: {node}" in absent.stderr


# --- --output json ------------------------------------------------------------------------

def test_topic_list_and_describe_json(broker: EmbeddedBroker, topic: str) -> None:
    run(broker, "config", "set", "--topic", topic, "retention.ms=3600000")
    run(broker, "produce", topic, "--partition", "1", "--value", "a", "--value", "b")
    listed = as_json(broker, "topic", "list")
    mine = next(t for t in listed["topics"] if t["name"] == topic)
    assert mine == {"name": topic, "partitions": 2, "internal": False}

    described = as_json(broker, "topic", "describe", topic)
    assert described["name"] == topic and described["internal"] is False
    partitions = {p["partition"]: p for p in described["partitions"]}
    assert set(partitions) == {0, 1}
    assert partitions[1]["low"] == 0 and partitions[1]["high"] == 2
    assert partitions[1]["records"] == 2 and partitions[0]["records"] == 0
    assert isinstance(partitions[0]["replicas"], list) and partitions[0]["leader"] is not None
    assert [c["name"] for c in described["configs"]] == ["retention.ms"]
    assert described["configs"][0]["value"] == "3600000"


def test_produce_from_a_file(broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    source = tmp_path / "records.txt"
    source.write_text("".join(f"k{i}:v{i}\n" for i in range(50)), encoding="utf-8")
    result = run(broker, "produce", topic, "--file", str(source), "--key-separator", ":")
    assert "50" in result.stderr and result.stdout == ""
    described = as_json(broker, "topic", "describe", topic)
    assert sum(p["records"] for p in described["partitions"]) == 50

    both = run(broker, "produce", topic, "--file", str(source), "--value", "x", code=2)
    assert "pass --value or --file, not both" in both.stderr
    missing = run(broker, "produce", topic, "--file", str(tmp_path / "none.txt"), code=2)
    assert "does not exist" in missing.stderr


def test_cluster_json(broker: EmbeddedBroker, topic: str) -> None:
    node = broker.server.config.node_id
    status = as_json(broker, "cluster", "status")
    assert status["controller"] == node and status["partitions"] >= 2
    assert [b["broker"] for b in status["brokers"]] == [node]
    assert status["brokers"][0]["controller"] is True
    assert isinstance(status["brokers"][0]["port"], int)
    brokers = as_json(broker, "cluster", "brokers")["brokers"]
    assert [(b["broker"], b["port"]) for b in brokers] == [(node, broker.port)]
    placement = as_json(broker, "cluster", "placement", topic)["partitions"]
    assert placement == [
        {"topic": topic, "partition": p, "leader": node, "replicas": [node], "in_sync": [node]}
        for p in (0, 1)]
    leases = as_json(broker, "cluster", "leases", topic)
    assert [(p["partition"], p["leader"], p["moving_to"]) for p in leases["partitions"]] == [
        (0, node, None), (1, node, None)]
    assert leases["brokers"][0]["leads"] >= 2


def test_quota_and_user_lists_json(broker: EmbeddedBroker) -> None:
    run(broker, "quota", "set", "--user", "json-alice", "--producer-byte-rate", "1048576")
    quotas = as_json(broker, "quota", "list")["quotas"]
    assert {"entity": {"user": "json-alice"}, "values": {"producer_byte_rate": 1048576}} in quotas
    assert as_json(broker, "user", "list") == {"users": []}


# --- completion ---------------------------------------------------------------------------

@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "_strom_completion()"), ("zsh", "#compdef strom"),
    ("fish", "function _strom_completion")])
def test_completion_prints_the_script(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert marker in result.stdout and "_STROM_COMPLETE" in result.stdout


def test_completion_completes_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_STROM_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "strom con")
    monkeypatch.setenv("COMP_CWORD", "1")
    result = CliRunner().invoke(cli, [], prog_name="strom")
    assert "plain,config" in result.stdout and "plain,consume" in result.stdout
