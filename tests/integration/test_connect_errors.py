"""KIP-298 error handling in strom.connect: a sink with errors.tolerance=all and a converter
failing on poison records sends them to the dead letter queue with Kafka's __connect.errors.*
headers and keeps going; with errors.tolerance=none the task fails with the trace."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from strom.connect.api import Task
from strom.connect.file import FileStreamSinkConnector, FileStreamSinkTask
from strom.connect.records import SinkRecord
from strom.testing import EmbeddedBroker
from tests.integration.conftest import consume_partitions, produce_all, producer, unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.json.JsonConverter",
             "value.converter.schemas.enable": "false",
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


def sink_config(topic: str, out: Path, **extra: str) -> dict[str, str]:
    return {"connector.class": "FileStreamSink", "tasks.max": "1", "topics": topic,
            "file": str(out), **extra}


POISON = [b"{not json", b'{"unterminated": ']


def produce_mixed(bootstrap: str, topic: str) -> None:
    records = [{"key": b"k1", "value": b'"good-1"'},
               {"key": b"k2", "value": POISON[0], "headers": [("trace-id", b"abc")]},
               {"key": b"k3", "value": b'"good-2"'},
               {"key": b"k4", "value": POISON[1]},
               {"key": b"k5", "value": b'"good-3"'}]
    delivered = produce_all(producer(bootstrap), topic, records)
    assert not delivered.failed


def test_dead_letter_queue(worker: ConnectWorker, broker: EmbeddedBroker,
                           tmp_path: Path) -> None:
    name, topic, dlq = unique_name("dlq"), unique_name("in"), unique_name("dlq-topic")
    out = tmp_path / "sink.txt"
    produce_mixed(broker.bootstrap_servers, topic)
    code, body = worker.request("POST", "/connectors", {"name": name, "config": sink_config(
        topic, out, **{"errors.tolerance": "all", "errors.log.enable": "true",
                       "errors.log.include.messages": "true",
                       "errors.deadletterqueue.topic.name": dlq,
                       "errors.deadletterqueue.topic.replication.factor": "1",
                       "errors.deadletterqueue.context.headers.enable": "true"})})
    assert code == 201, body
    wait_for(lambda: out.exists() and out.read_text().splitlines()
             == ["good-1", "good-2", "good-3"], what="the good records in the sink file")
    messages = consume_partitions(broker.bootstrap_servers, dlq, expected=2)
    assert [m.value() for m in messages] == POISON
    assert [m.key() for m in messages] == [b"k2", b"k4"]
    headers = [dict(m.headers() or []) for m in messages]
    first = headers[0]
    assert first["trace-id"] == b"abc"  # the original headers are kept
    assert first["__connect.errors.topic"] == topic.encode()
    assert first["__connect.errors.partition"] == b"0"
    assert first["__connect.errors.offset"] == b"1"
    assert headers[1]["__connect.errors.offset"] == b"3"
    assert first["__connect.errors.connector.name"] == name.encode()
    assert first["__connect.errors.task.id"] == b"0"
    assert first["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert b"JsonConverter" in first["__connect.errors.class.name"]
    assert first["__connect.errors.exception.class.name"].endswith(b"DataException")
    assert first["__connect.errors.exception.message"]
    assert b"Traceback" in first["__connect.errors.exception.stacktrace"]
    code, status = worker.request("GET", f"/connectors/{name}/status")
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]
    # The group's offsets moved past the poison records too.
    wait_for(lambda: worker.request("GET", f"/connectors/{name}/offsets")[1]["offsets"]
             == [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                  "offset": {"kafka_offset": 5}}], what="committed sink offsets")


def test_tolerance_none_fails_the_task(worker: ConnectWorker, broker: EmbeddedBroker,
                                       tmp_path: Path) -> None:
    name, topic = unique_name("strict"), unique_name("in")
    out = tmp_path / "sink.txt"
    produce_mixed(broker.bootstrap_servers, topic)
    code, _ = worker.request("POST", "/connectors",
                             {"name": name, "config": sink_config(topic, out)})
    assert code == 201

    def failed() -> dict[str, str] | None:
        task = worker.request("GET", f"/connectors/{name}/tasks/0/status")[1]
        return task if task["state"] == "FAILED" else None

    task = wait_for(failed, what="the task failed")
    assert "Tolerance exceeded in error handler" in task["trace"]
    assert "DataException" in task["trace"]
    assert out.read_text().splitlines() == []  # the first batch held the poison record


def test_transform_failures_go_to_the_dlq(worker: ConnectWorker, broker: EmbeddedBroker,
                                          tmp_path: Path) -> None:
    name, topic, dlq = unique_name("xform"), unique_name("in"), unique_name("dlq-topic")
    out = tmp_path / "sink.txt"
    delivered = produce_all(producer(broker.bootstrap_servers), topic,
                            [{"value": b'{"f": "one"}'}, {"value": b'"not a map"'},
                             {"value": b'{"f": "two"}'}])
    assert not delivered.failed
    code, body = worker.request("POST", "/connectors", {"name": name, "config": sink_config(
        topic, out, **{"transforms": "extract",
                       "transforms.extract.type":
                           "org.apache.kafka.connect.transforms.ExtractField$Value",
                       "transforms.extract.field": "f",
                       "errors.tolerance": "all",
                       "errors.deadletterqueue.topic.name": dlq,
                       "errors.deadletterqueue.topic.replication.factor": "1",
                       "errors.deadletterqueue.context.headers.enable": "true"})})
    assert code == 201, body
    wait_for(lambda: out.exists() and out.read_text().splitlines() == ["one", "two"],
             what="the transformed records in the sink file")
    [poison] = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
    headers = dict(poison.headers() or [])
    assert poison.value() == b'"not a map"'
    assert headers["__connect.errors.stage"] == b"TRANSFORMATION"
    assert b"ExtractField" in headers["__connect.errors.class.name"], headers
    assert headers["__connect.errors.offset"] == b"1"


def test_paused_sink_consumes_nothing_until_resumed(worker: ConnectWorker,
                                                    broker: EmbeddedBroker,
                                                    tmp_path: Path) -> None:
    name, topic = unique_name("pause"), unique_name("in")
    out = tmp_path / "sink.txt"
    p = producer(broker.bootstrap_servers)
    assert not produce_all(p, topic, [{"value": b'"first"'}]).failed
    assert worker.request("POST", "/connectors",
                          {"name": name, "config": sink_config(topic, out)})[0] == 201
    wait_for(lambda: out.exists() and out.read_text().splitlines() == ["first"], what="first")
    assert worker.request("PUT", f"/connectors/{name}/pause")[0] == 202
    assert not produce_all(p, topic, [{"value": b'"second"'}]).failed
    import time
    time.sleep(1.5)
    assert out.read_text().splitlines() == ["first"]
    assert worker.request("PUT", f"/connectors/{name}/resume")[0] == 202
    wait_for(lambda: out.read_text().splitlines() == ["first", "second"], what="second")


class RejectingSinkTask(FileStreamSinkTask):
    """A FileStreamSink that reports values starting with "bad" through the errant record
    reporter instead of writing them (as a sink does with rows its system refuses)."""

    def put(self, records: Sequence[SinkRecord]) -> None:
        reporter = self.context.errant_record_reporter()
        assert reporter is not None
        good = []
        for record in records:
            if str(record.value).startswith("bad"):
                reporter.report(record, ValueError(f"refused {record.value}")).result(10)
            else:
                good.append(record)
        super().put(good)


class RejectingSink(FileStreamSinkConnector):
    def task_class(self) -> type[Task]:
        return RejectingSinkTask


def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    delivered = produce_all(producer(bootstrap), topic,
                            [{"key": b"k", "value": value} for value in values])
    assert not delivered.failed


@pytest.mark.parametrize("tolerance", ["none", "all"])
def test_errant_record_reporter_follows_the_tolerance(worker: ConnectWorker,
                                                      broker: EmbeddedBroker, tmp_path: Path,
                                                      tolerance: str) -> None:
    """A record a sink task reports is sent to the dead letter queue under
    errors.tolerance=all; under none the report fails the task, as Kafka's
    WorkerErrantRecordReporter does (it used to go to the queue either way)."""
    name, topic, dlq = unique_name("errant"), unique_name("in"), unique_name("dlq-topic")
    out = tmp_path / "sink.txt"
    produce_values(broker.bootstrap_servers, topic, [b'"good-1"', b'"bad-1"', b'"good-2"'])
    config = sink_config(topic, out, **{
        "connector.class": f"{__name__}:RejectingSink", "errors.tolerance": tolerance,
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true"})
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
    assert code == 201, body
    if tolerance == "all":
        wait_for(lambda: out.exists() and out.read_text().splitlines() == ["good-1", "good-2"],
                 what="the good records in the sink file")
        messages = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
        assert [m.value() for m in messages] == [b'"bad-1"']
        headers = dict(messages[0].headers() or [])
        assert headers["__connect.errors.stage"] == b"TASK_PUT"
        assert headers["__connect.errors.exception.message"] == b"refused bad-1"
        return

    def failed() -> dict[str, str] | None:
        task = worker.request("GET", f"/connectors/{name}/tasks/0/status")[1]
        return task if task["state"] == "FAILED" else None

    task = wait_for(failed, what="the task failed")
    assert "Tolerance exceeded in error handler" in task["trace"]
    assert "refused bad-1" in task["trace"]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    assert dlq not in admin.list_topics(timeout=10).topics  # nothing was sent to the queue
