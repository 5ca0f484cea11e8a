"""strom.connect's REST API against Kafka Connect's: status codes and JSON shapes of each
endpoint class, config validation errors, 404/409, a Kafka UI-style flow, a source task crash
and its restart, and KIP-875 offsets of a stopped connector."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.testing import EmbeddedBroker
from tests.integration.conftest import consume_partitions, unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

SOURCE = "tests.integration.connect_plugins:CountingSource"


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.storage.StringConverter",
             "offset.storage.file.filename": str(tmp_path / "offsets"),
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


def source_config(topic: str, **extra: str) -> dict[str, str]:
    return {"connector.class": SOURCE, "tasks.max": "1", "topic": topic, **extra}


def state(worker: ConnectWorker, name: str) -> tuple[str, list[str]]:
    code, body = worker.request("GET", f"/connectors/{name}/status")
    assert code == 200, body
    return body["connector"]["state"], [t["state"] for t in body["tasks"]]


def test_root_and_plugins(worker: ConnectWorker) -> None:
    code, body = worker.request("GET", "/")
    assert code == 200
    assert set(body) == {"version", "commit", "kafka_cluster_id"}
    assert body["kafka_cluster_id"]
    code, plugins = worker.request("GET", "/connector-plugins")
    assert code == 200
    classes = {p["class"]: p for p in plugins}
    source = classes["org.apache.kafka.connect.file.FileStreamSourceConnector"]
    assert source["type"] == "source" and source["version"]
    assert classes["org.apache.kafka.connect.file.FileStreamSinkConnector"]["type"] == "sink"
    # Each of Kafka's names for the plugin answers.
    for name in ("FileStreamSource", "FileStreamSourceConnector",
                 "org.apache.kafka.connect.file.FileStreamSourceConnector"):
        code, keys = worker.request("GET", f"/connector-plugins/{name}/config")
        assert code == 200, keys
        assert {k["name"] for k in keys} == {"file", "topic", "batch.size"}
        topic_key = next(k for k in keys if k["name"] == "topic")
        assert topic_key["required"] is True and topic_key["type"] == "STRING"
        assert set(topic_key) >= {"name", "type", "required", "default_value", "importance",
                                  "documentation", "group", "width", "display_name",
                                  "dependents", "order"}
    code, everything = worker.request("GET", "/connector-plugins?connectorsOnly=false")
    assert code == 200
    pairs = {(p["class"], p["type"]) for p in everything}
    assert {("org.apache.kafka.connect.json.JsonConverter", "converter"),
            ("org.apache.kafka.connect.storage.SimpleHeaderConverter", "header_converter"),
            ("org.apache.kafka.connect.transforms.InsertField$Value", "transformation"),
            ("org.apache.kafka.connect.transforms.predicates.HasHeaderKey", "predicate"),
            ("org.apache.kafka.connect.file.FileStreamSinkConnector", "sink")} <= pairs
    code, body = worker.request("GET", "/connector-plugins/NoSuchConnector/config")
    assert code == 404 and body["error_code"] == 404


def test_validate(worker: ConnectWorker) -> None:
    code, body = worker.request("PUT", "/connector-plugins/FileStreamSink/config/validate",
                                {"connector.class": "FileStreamSink", "name": "v",
                                 "tasks.max": "zero"})
    assert code == 200, body
    assert body["name"] == "org.apache.kafka.connect.file.FileStreamSinkConnector"
    assert "Common" in body["groups"]
    errors = {c["value"]["name"]: c["value"]["errors"] for c in body["configs"]}
    assert errors["tasks.max"] and "INT" in errors["tasks.max"][0]
    assert errors["topics"] == ["Must configure one of topics or topics.regex"]
    assert body["error_count"] == sum(len(e) for e in errors.values()) >= 3
    entry = next(c for c in body["configs"] if c["value"]["name"] == "file")
    assert set(entry["value"]) == {"name", "value", "recommended_values", "errors", "visible"}
    assert entry["definition"]["name"] == "file"
    code, body = worker.request("PUT", "/connector-plugins/FileStreamSink/config/validate",
                                {"connector.class": "FileStreamSink", "name": "v",
                                 "topics": "a"})
    assert code == 200 and body["error_count"] == 0
    code, body = worker.request("PUT", "/connector-plugins/FileStreamSink/config/validate",
                                {"connector.class": "FileStreamSource", "name": "v"})
    assert code == 400 and "does not match" in body["message"]
    code, body = worker.request("PUT", f"/connector-plugins/{SOURCE}/config/validate",
                                {"name": "v"})
    assert code == 200
    errors = {c["value"]["name"]: c["value"]["errors"] for c in body["configs"]}
    assert errors["topic"], body  # required, no default


def test_kafka_ui_flow(worker: ConnectWorker, broker: EmbeddedBroker) -> None:
    name, topic = unique_name("conn"), unique_name("counted")
    code, body = worker.request("GET", "/connectors")
    assert code == 200 and body == []
    code, body = worker.request("POST", "/connectors",
                                {"name": name, "config": source_config(topic)})
    assert code == 201, body
    assert body["name"] == name and body["type"] == "source"
    assert body["config"]["name"] == name and body["config"]["topic"] == topic
    assert body["tasks"] == [{"connector": name, "task": 0}]
    code, body = worker.request("POST", "/connectors",
                                {"name": name, "config": source_config(topic)})
    assert code == 409 and body == {"error_code": 409,
                                    "message": f"Connector {name} already exists"}
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="running")
    code, listed = worker.request("GET", "/connectors?expand=status&expand=info")
    assert code == 200
    assert listed[name]["status"]["connector"]["state"] == "RUNNING"
    assert listed[name]["info"]["config"]["topic"] == topic
    code, status = worker.request("GET", f"/connectors/{name}/status")
    assert set(status) == {"name", "connector", "tasks", "type"}
    assert set(status["connector"]) == {"state", "worker_id"}
    assert status["tasks"][0]["id"] == 0
    code, info = worker.request("GET", f"/connectors/{name}")
    assert code == 200 and info["tasks"] == [{"connector": name, "task": 0}]
    code, config = worker.request("GET", f"/connectors/{name}/config")
    assert code == 200 and config["connector.class"] == SOURCE
    code, tasks = worker.request("GET", f"/connectors/{name}/tasks")
    assert code == 200 and tasks[0]["id"] == {"connector": name, "task": 0}
    assert tasks[0]["config"]["topic"] == topic
    code, tasks_config = worker.request("GET", f"/connectors/{name}/tasks-config")
    assert code == 200 and tasks_config[f"{name}-0"]["topic"] == topic
    code, task = worker.request("GET", f"/connectors/{name}/tasks/0/status")
    assert code == 200 and task["id"] == 0 and task["state"] == "RUNNING"
    code, _ = worker.request("GET", f"/connectors/{name}/tasks/7/status")
    assert code == 404
    wait_for(lambda: worker.request("GET", f"/connectors/{name}/topics")[1]
             == {name: {"topics": [topic]}}, what="active topics")
    code, _ = worker.request("PUT", f"/connectors/{name}/topics/reset")
    assert code == 202

    code, body = worker.request("PUT", f"/connectors/{name}/pause")
    assert code == 202 and body is None
    assert state(worker, name) == ("PAUSED", ["PAUSED"])
    code, _ = worker.request("PUT", f"/connectors/{name}/resume")
    assert code == 202
    assert state(worker, name) == ("RUNNING", ["RUNNING"])
    code, body = worker.request("POST", f"/connectors/{name}/restart")
    assert code == 204 and body is None
    code, body = worker.request("POST", f"/connectors/{name}/restart?includeTasks=true")
    assert code == 202
    assert body["connector"]["state"] == "RESTARTING"
    assert [t["state"] for t in body["tasks"]] == ["RESTARTING"]
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="restarted")
    code, body = worker.request("POST",
                                f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")
    assert code == 202 and body["connector"]["state"] == "RUNNING"
    code, _ = worker.request("POST", f"/connectors/{name}/tasks/0/restart")
    assert code == 204
    code, _ = worker.request("POST", f"/connectors/{name}/tasks/3/restart")
    assert code == 404
    # The records really reached the topic.
    assert len(consume_partitions(broker.bootstrap_servers, topic, expected=3)) >= 3

    code, config = worker.request("PUT", f"/connectors/{name}/config",
                                  source_config(topic, **{"fail.flag": "/nonexistent"}))
    assert code == 200 and config["config"]["fail.flag"] == "/nonexistent"
    code, body = worker.request("DELETE", f"/connectors/{name}")
    assert code == 204 and body is None
    code, body = worker.request("GET", f"/connectors/{name}")
    assert code == 404 and body == {"error_code": 404, "message": f"Connector {name} not found"}
    for method, path in (("GET", "/status"), ("GET", "/config"), ("PUT", "/pause"),
                         ("POST", "/restart"), ("GET", "/tasks"), ("DELETE", ""),
                         ("GET", "/offsets"), ("GET", "/topics")):
        code, body = worker.request(method, f"/connectors/{name}{path}")
        assert code == 404, (method, path, body)


def test_initial_state(worker: ConnectWorker) -> None:
    name = unique_name("init")
    code, body = worker.request("POST", "/connectors", {
        "name": name, "config": source_config(unique_name("t")), "initial_state": "STOPPED"})
    assert code == 201 and body["tasks"] == []
    assert state(worker, name) == ("STOPPED", [])
    code, body = worker.request("POST", "/connectors", {
        "name": unique_name("init"), "config": source_config("t"), "initial_state": "NAPPING"})
    assert code == 400
    assert worker.request("DELETE", f"/connectors/{name}")[0] == 204


def test_put_config_creates_and_bad_configs(worker: ConnectWorker) -> None:
    name = unique_name("conn")
    code, body = worker.request("PUT", f"/connectors/{name}/config",
                                {"connector.class": "FileStreamSink", "tasks.max": "1"})
    assert code == 400, body
    assert "Must configure one of topics or topics.regex" in body["message"]
    code, body = worker.request("POST", "/connectors",
                                {"name": name, "config": {"tasks.max": "1"}})
    assert code == 400 and body["error_code"] == 400
    code, body = worker.request("POST", "/connectors",
                                {"name": name, "config": {"connector.class": "NoSuchThing"}})
    assert code == 400 and "NoSuchThing" in body["message"]
    code, body = worker.request("PUT", f"/connectors/{name}/config",
                                {"connector.class": "FileStreamSink", "topics": "t",
                                 "file": os.devnull})
    assert code == 201 and body["type"] == "sink" and body["name"] == name
    code, body = worker.request("PUT", f"/connectors/{name}/config",
                                {"connector.class": "FileStreamSink", "topics": "t2",
                                 "file": os.devnull})
    assert code == 200 and body["config"]["topics"] == "t2"
    assert worker.request("DELETE", f"/connectors/{name}")[0] == 204


def test_source_crash_fails_task_and_rest_restarts_it(worker: ConnectWorker,
                                                      tmp_path: Path) -> None:
    name, topic = unique_name("crash"), unique_name("counted")
    flag = tmp_path / "crash"
    code, _ = worker.request("POST", "/connectors", {
        "name": name, "config": source_config(topic, **{"fail.flag": str(flag)})})
    assert code == 201
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="running")
    flag.touch()
    wait_for(lambda: state(worker, name) == ("RUNNING", ["FAILED"]), what="task failed")
    code, task = worker.request("GET", f"/connectors/{name}/tasks/0/status")
    assert task["state"] == "FAILED"
    assert "RuntimeError: the counting source crashed on purpose" in task["trace"]
    assert "Traceback" in task["trace"]
    flag.unlink()
    code, body = worker.request("POST",
                                f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true")
    assert code == 202
    assert body["connector"]["state"] == "RUNNING"
    assert [t["state"] for t in body["tasks"]] == ["RESTARTING"]
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="restarted")
    flag.touch()
    wait_for(lambda: state(worker, name)[1] == ["FAILED"], what="failed again")
    flag.unlink()
    code, _ = worker.request("POST", f"/connectors/{name}/tasks/0/restart")
    assert code == 204
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="task restarted")
    assert "trace" not in worker.request("GET", f"/connectors/{name}/tasks/0/status")[1]


def _offsets(worker: ConnectWorker, name: str) -> Any:
    code, body = worker.request("GET", f"/connectors/{name}/offsets")
    assert code == 200, body
    return body


def test_stop_and_offsets(worker: ConnectWorker) -> None:
    name, topic = unique_name("offs"), unique_name("counted")
    assert worker.request("POST", "/connectors",
                          {"name": name, "config": source_config(topic)})[0] == 201
    wait_for(lambda: _offsets(worker, name)["offsets"], what="committed offsets")
    body = _offsets(worker, name)
    assert body["offsets"][0]["partition"] == {"task": "0"}
    assert body["offsets"][0]["offset"]["n"] >= 1
    patch = {"offsets": [{"partition": {"task": "0"}, "offset": {"n": 1000}}]}
    code, body = worker.request("PATCH", f"/connectors/{name}/offsets", patch)
    assert code == 400 and "STOPPED" in body["message"]
    code, body = worker.request("DELETE", f"/connectors/{name}/offsets")
    assert code == 400
    code, body = worker.request("PUT", f"/connectors/{name}/stop")
    assert code == 204 and body is None
    code, status = worker.request("GET", f"/connectors/{name}/status")
    assert status["connector"]["state"] == "STOPPED" and status["tasks"] == []
    assert worker.request("GET", f"/connectors/{name}/tasks")[1] == []
    code, body = worker.request("PATCH", f"/connectors/{name}/offsets", patch)
    assert code == 200
    assert body == {"message": "The offsets for this connector have been altered successfully"}
    assert _offsets(worker, name) == patch
    code, body = worker.request("DELETE", f"/connectors/{name}/offsets")
    assert code == 200
    assert body == {"message": "The offsets for this connector have been reset successfully"}
    assert _offsets(worker, name) == {"offsets": []}
    assert worker.request("PATCH", f"/connectors/{name}/offsets", patch)[0] == 200
    code, _ = worker.request("PUT", f"/connectors/{name}/resume")
    assert code == 202
    wait_for(lambda: state(worker, name) == ("RUNNING", ["RUNNING"]), what="resumed")
    # The task resumed from the altered offset.
    wait_for(lambda: _offsets(worker, name)["offsets"][0]["offset"]["n"] > 1000,
             what="counting from 1000")
    assert worker.request("PUT", f"/connectors/{name}/stop")[0] == 204
    values = [int(m.value()) for m in consume_partitions(worker.runtime.config.bootstrap_servers,
                                                         topic)]
    assert 1001 in values
    assert worker.request("DELETE", f"/connectors/{name}")[0] == 204


def test_loggers(worker: ConnectWorker) -> None:
    code, body = worker.request("GET", "/admin/loggers")
    assert code == 200 and "level" in body["root"]
    code, body = worker.request("PUT", "/admin/loggers/strom.connect.test",
                                {"level": "DEBUG"})
    assert code == 200 and "strom.connect.test" in body
    code, body = worker.request("GET", "/admin/loggers/strom.connect.test")
    assert code == 200 and body["level"] == "DEBUG"
    code, body = worker.request("GET", "/admin/loggers/no.such.logger.here")
    assert code == 404
    code, body = worker.request("PUT", "/admin/loggers/strom.connect.test", {})
    assert code == 400
