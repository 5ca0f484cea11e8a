"""Sink task delivery against a real broker and librdkafka's group consumer: the revoked
partitions' offsets are committed before another member gets them (Kafka's
onPartitionsRevoked), a batch refused with a RetriableException is redelivered whole and once
while the paused consumer keeps polling, and topics.regex matches whole topic names."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTP

from strom.connect.api import SinkTask, Task
from strom.connect.errors import RetriableException
from strom.connect.records import SinkRecord
from strom.testing import EmbeddedBroker
from tests.integration.conftest import produce_all, producer, unique_name
from tests.integration.connect_plugins import MemorySink
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

RECEIVED: dict[str, list[tuple[str, int, int]]] = {}


class RecordingSink(MemorySink):
    """One RecordingSinkTask."""

    def task_class(self) -> type[Task]:
        return RecordingSinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self.props)]


class RecordingSinkTask(SinkTask):
    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.name = props["name"]

    def put(self, records: Sequence[SinkRecord]) -> Any:
        RECEIVED.setdefault(self.name, []).extend(
            (r.topic, r.kafka_partition, r.kafka_offset or 0) for r in records)

    def stop(self) -> None:
        pass


class FlakySinkTask(RecordingSinkTask):
    """Refuses its first puts with a RetriableException (as a sink whose database is down)."""

    def start(self, props: Mapping[str, str]) -> None:
        super().start(props)
        self.refusals = int(props.get("refusals", "0"))

    def put(self, records: Sequence[SinkRecord]) -> Any:
        if self.refusals > 0:
            self.refusals -= 1
            assert self.context is not None
            self.context.timeout(300)
            raise RetriableException("the database is down")
        return super().put(records)


class FlakySink(RecordingSink):
    def task_class(self) -> type[Task]:
        return FlakySinkTask


SINK = f"{__name__}:RecordingSink"
FLAKY = f"{__name__}:FlakySink"


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def worker(broker: EmbeddedBroker) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.storage.StringConverter",
             # No periodic commit in these tests: what is committed is what the rebalance did.
             "offset.flush.interval.ms": "600000",
             "consumer.session.timeout.ms": "6000",
             "consumer.heartbeat.interval.ms": "500"}
    with ConnectWorker(props) as running:
        yield running


def produce(broker: EmbeddedBroker, topic: str, partitions: int, count: int) -> None:
    records = [{"value": f"{topic}-{n}".encode(), "partition": p}
               for p in range(partitions) for n in range(count)]
    assert not produce_all(producer(broker.bootstrap_servers), topic, records).failed


def test_revoked_partitions_are_committed_before_another_member_gets_them(
        worker: ConnectWorker, broker: EmbeddedBroker,
        new_topic: Callable[..., str]) -> None:
    name, topic = unique_name("revoke"), new_topic(partitions=2)
    produce(broker, topic, 2, 3)
    code, body = worker.request("POST", "/connectors", {"name": name, "config": {
        "connector.class": SINK, "tasks.max": "1", "topics": topic}})
    assert code == 201, body
    wait_for(lambda: len(RECEIVED.get(name, [])) == 6, what="the records put")
    # Another member joins the connector's group: the task's partitions are revoked (and
    # half of them reassigned to the newcomer), which must find them committed.
    other = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                      "group.id": f"connect-{name}", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                      "heartbeat.interval.ms": 500})
    got: list[Any] = []
    try:
        other.subscribe([topic])
        deadline = time.monotonic() + 15
        while not other.assignment() and time.monotonic() < deadline:
            message = other.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message)
        assert other.assignment(), "the other member got no partition"
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            message = other.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message)
        committed = other.committed([KafkaTP(topic, 0), KafkaTP(topic, 1)], timeout=10)
    finally:
        other.close()
    assert [m.value() for m in got] == []  # nothing the sink had put is delivered again
    assert [p.offset for p in committed] == [3, 3]
    assert len(RECEIVED[name]) == 6
    code, status = worker.request("GET", f"/connectors/{name}/status")
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status


def test_topics_regex_matches_whole_topic_names(worker: ConnectWorker, broker: EmbeddedBroker,
                                                new_topic: Callable[..., str]) -> None:
    name = unique_name("regex")
    topic = new_topic(prefix="rx")
    longer = new_topic(prefix=topic)  # the regex's match followed by more
    produce(broker, topic, 1, 2)
    produce(broker, longer, 1, 2)
    code, body = worker.request("POST", "/connectors", {"name": name, "config": {
        "connector.class": SINK, "tasks.max": "1", "topics.regex": topic}})
    assert code == 201, body
    wait_for(lambda: len(RECEIVED.get(name, [])) >= 2, what="the records put")
    time.sleep(1.5)
    assert sorted(RECEIVED[name]) == [(topic, 0, 0), (topic, 0, 1)]


def test_a_batch_refused_with_a_retriable_error_is_redelivered_whole_and_once(
        worker: ConnectWorker, broker: EmbeddedBroker,
        new_topic: Callable[..., str]) -> None:
    name, topic = unique_name("flaky"), new_topic(partitions=2)
    produce(broker, topic, 2, 50)
    code, body = worker.request("POST", "/connectors", {"name": name, "config": {
        "connector.class": FLAKY, "tasks.max": "1", "topics": topic, "refusals": "3",
        "consumer.override.max.poll.records": "20"}})
    assert code == 201, body
    wait_for(lambda: len(RECEIVED.get(name, [])) >= 100, what="the records put")
    time.sleep(1)
    received = RECEIVED[name]
    for partition in (0, 1):
        assert [o for _, p, o in received if p == partition] == list(range(50))
    code, status = worker.request("GET", f"/connectors/{name}/status")
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status
