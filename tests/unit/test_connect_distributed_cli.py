"""`strom connect` in distributed mode: argument handling, and the worker id other workers
forward to."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from strom.cli.connect import connect
from strom.connect.distributed import DistributedConfig, DistributedRuntime


def test_distributed_needs_a_group_id() -> None:
    result = CliRunner().invoke(connect, ["--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "--group-id" in result.output


def test_distributed_takes_one_properties_file(tmp_path: Path) -> None:
    paths = []
    for name in ("a.properties", "b.properties"):
        (tmp_path / name).write_text("group.id=g\n")
        paths.append(str(tmp_path / name))
    result = CliRunner().invoke(connect, paths)
    assert result.exit_code == 2
    assert "one WORKER.properties" in result.output


def test_worker_ids() -> None:
    props = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}
    explicit = DistributedRuntime({**props, "listeners": "http://10.0.0.5:8084"})
    assert explicit.config.worker_id == "10.0.0.5:8084"
    wildcard = DistributedRuntime({**props, "listeners": "http://0.0.0.0:8083"})
    assert wildcard.config.worker_id == f"{socket.gethostname()}:8083"
    advertised = DistributedRuntime({**props, "listeners": "http://:8083",
                                     "rest.advertised.host.name": "w1",
                                     "rest.advertised.port": "9000"})
    assert advertised.config.worker_id == "w1:9000"


def test_distributed_config_defaults_are_kafkas() -> None:
    config = DistributedConfig({})
    assert (config.group_id, config.config_topic, config.offset_topic, config.status_topic) == (
        "connect-cluster", "connect-configs", "connect-offsets", "connect-status")
    assert (config.offset_partitions, config.status_partitions) == (25, 5)
    assert config.rebalance_delay_s == 300.0
    assert config.replication("config") == -1
