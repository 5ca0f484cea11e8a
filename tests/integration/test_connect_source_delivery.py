"""Source task delivery against a real broker, as Kafka Connect's: a RetriableException from
poll() is retried; under errors.tolerance=all a record the broker rejects is skipped and later
offsets commit (KIP-779); KIP-618 transaction boundaries make exactly-once records visible to
read_committed consumers per poll batch or where the connector says; KIP-158 topic creation
groups create missing topics; a standalone restart of a failed connector starts its tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from strom.connect.api import SourceConnector, SourceTask, Task
from strom.connect.data import STRING_SCHEMA, Headers
from strom.connect.errors import RetriableException
from strom.connect.kafka_store import KafkaOffsetBackingStore, ensure_topic
from strom.connect.records import SourceRecord
from strom.connect.worker import Worker, WorkerConfig, WorkerConnector
from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

HERE = "tests.integration.test_connect_source_delivery"
STRING = "org.apache.kafka.connect.storage.StringConverter"


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": STRING, "value.converter": STRING,
             "offset.storage.file.filename": str(tmp_path / "offsets"),
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


class ScriptedSource(SourceConnector):
    """Counts 1..`count` into `topic`, one record per poll (every `interval.ms`); its task's
    first `retriable.polls` polls raise RetriableException; record `big.record` is
    `big.bytes` long; `commit.every`: the connector commits its transaction every N records;
    its start() fails the first `start.failures` times (per connector name)."""

    starts: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        self.props: dict[str, str] = {}

    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.props = dict(props)
        name = props.get("name", "")
        ScriptedSource.starts[name] = ScriptedSource.starts.get(name, 0) + 1
        if ScriptedSource.starts[name] <= int(props.get("start.failures", "0")):
            raise RuntimeError("the source system is down")

    def task_class(self) -> type[Task]:
        return ScriptedTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self.props)]

    def stop(self) -> None:
        pass

    def exactly_once_support(self) -> str | None:
        return "SUPPORTED"

    def can_define_transaction_boundaries(self) -> str:
        return "SUPPORTED"


class ScriptedTask(SourceTask):
    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.topic = props["topic"]
        self.count = int(props.get("count", "1000000"))
        self.interval = int(props.get("interval.ms", "20")) / 1000
        self.retriable = int(props.get("retriable.polls", "0"))
        self.big = int(props.get("big.record", "0"))
        self.big_bytes = int(props.get("big.bytes", "0"))
        self.commit_every = int(props.get("commit.every", "0"))
        assert self.context is not None
        offset = self.context.offset_storage_reader().offset({"p": "0"})
        self.n = int(offset["n"]) if offset else 0

    async def poll(self) -> list[SourceRecord] | None:
        await asyncio.sleep(self.interval)
        if self.retriable > 0:
            self.retriable -= 1
            raise RetriableException("the source system is briefly unavailable")
        if self.n >= self.count:
            return None
        self.n += 1
        value = "x" * self.big_bytes if self.n == self.big else str(self.n)
        record = SourceRecord(topic=self.topic, key_schema=STRING_SCHEMA, key=str(self.n),
                              value_schema=STRING_SCHEMA, value=value,
                              headers=Headers(), source_partition={"p": "0"},
                              source_offset={"n": self.n})
        if self.commit_every and self.n % self.commit_every == 0:
            assert self.context is not None
            transactions = self.context.transaction_context()
            assert transactions is not None
            transactions.commit_transaction(record)
        return [record]

    def stop(self) -> None:
        pass


def config(topic: str, **extra: str) -> dict[str, str]:
    return {"connector.class": f"{HERE}:ScriptedSource", "tasks.max": "1", "topic": topic,
            **extra}


def read(bootstrap: str, topic: str, committed: bool = False,
         timeout: float = 10.0) -> list[str]:
    """Every (committed, with read_committed) value of the topic's partitions, up to their end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed" if committed
                         else "read_uncommitted"})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[str] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(eof) < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(message.partition())
                continue
            eof.discard(message.partition())
            out.append((message.value() or b"").decode())
        return out
    finally:
        consumer.close()


def status(worker: ConnectWorker, name: str) -> tuple[str, list[str]]:
    code, body = worker.request("GET", f"/connectors/{name}/status")
    assert code == 200, body
    return body["connector"]["state"], [t["state"] for t in body["tasks"]]


def source_offset(worker: ConnectWorker, name: str) -> Any:
    code, body = worker.request("GET", f"/connectors/{name}/offsets")
    assert code == 200, body
    return [o["offset"] for o in body["offsets"]]


def test_retriable_poll_errors_are_retried(worker: ConnectWorker,
                                           broker: EmbeddedBroker) -> None:
    name, topic = unique_name("retry"), unique_name("out")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        topic, **{"retriable.polls": "2", "count": "5"})})
    assert code == 201, body
    wait_for(lambda: source_offset(worker, name) == [{"n": 5}], what="the offsets of 5")
    assert status(worker, name) == ("RUNNING", ["RUNNING"])
    assert read(broker.bootstrap_servers, topic) == ["1", "2", "3", "4", "5"]


def test_rejected_record_skipped_under_tolerance_all(worker: ConnectWorker,
                                                     broker: EmbeddedBroker) -> None:
    """KIP-779: a record bigger than the topic's max.message.bytes is logged and skipped;
    the records after it are written and their offsets committed. Under none the task fails
    and nothing from the rejected record on is committed."""
    bootstrap = broker.bootstrap_servers
    tolerant, strict = (create_topic(bootstrap, unique_name("small"),
                                     config={"max.message.bytes": "2000"}) for _ in range(2))
    name = unique_name("tolerant")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        tolerant, **{"count": "5", "big.record": "3", "big.bytes": "20000",
                     "interval.ms": "150", "errors.tolerance": "all",
                     "errors.log.enable": "true"})})
    assert code == 201, body
    wait_for(lambda: source_offset(worker, name) == [{"n": 5}], what="the offsets of 5")
    assert status(worker, name) == ("RUNNING", ["RUNNING"])
    assert read(bootstrap, tolerant) == ["1", "2", "4", "5"]

    name = unique_name("strict")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        strict, **{"count": "5", "big.record": "3", "big.bytes": "20000",
                   "interval.ms": "150"})})
    assert code == 201, body
    wait_for(lambda: status(worker, name)[1] == ["FAILED"], what="the strict task failing")
    assert source_offset(worker, name) in ([], [{"n": 1}], [{"n": 2}])
    assert read(bootstrap, strict)[:2] == ["1", "2"]


def test_topic_creation_groups(worker: ConnectWorker, broker: EmbeddedBroker) -> None:
    """KIP-158: a missing topic is created with its group's partitions and topic configs; an
    existing one is left alone."""
    bootstrap = broker.bootstrap_servers
    name, topic = unique_name("create"), unique_name("created")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        topic, **{"count": "3", "topic.creation.default.replication.factor": "1",
                  "topic.creation.default.partitions": "3",
                  "topic.creation.default.cleanup.policy": "compact",
                  "topic.creation.groups": "other",
                  "topic.creation.other.include": "nothing-.*",
                  "topic.creation.other.partitions": "7"})})
    assert code == 201, body
    wait_for(lambda: source_offset(worker, name) == [{"n": 3}], what="the offsets of 3")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["cleanup.policy"].value == "compact"
    assert sorted(read(bootstrap, topic)) == ["1", "2", "3"]

    existing = create_topic(bootstrap, unique_name("existing"), partitions=1)
    name = unique_name("keep")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        existing, **{"count": "2", "topic.creation.default.replication.factor": "1",
                     "topic.creation.default.partitions": "3",
                     "topic.creation.default.cleanup.policy": "compact"})})
    assert code == 201, body
    wait_for(lambda: source_offset(worker, name) == [{"n": 2}], what="the offsets of 2")
    assert len(admin.list_topics(existing, timeout=10).topics[existing].partitions) == 1
    resource = ConfigResource(ConfigResource.Type.TOPIC, existing)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["cleanup.policy"].value == "delete"

    code, body = worker.request("POST", "/connectors", {"name": unique_name("bad"), "config":
                                config(topic, **{"topic.creation.default.partitions": "3"})})
    assert code == 400 and "topic.creation.default.replication.factor" in body["message"]


def test_restart_of_a_failed_connector_starts_its_tasks(worker: ConnectWorker,
                                                        broker: EmbeddedBroker) -> None:
    name, topic = unique_name("flaky"), unique_name("out")
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config(
        topic, **{"count": "3", "start.failures": "1"})})
    assert code == 201, body
    assert status(worker, name) == ("FAILED", [])
    code, _ = worker.request("POST", f"/connectors/{name}/restart")
    assert code in (200, 202, 204)
    wait_for(lambda: status(worker, name) == ("RUNNING", ["RUNNING"]),
             what="the connector and its task running")
    wait_for(lambda: source_offset(worker, name) == [{"n": 3}], what="the offsets of 3")
    assert read(broker.bootstrap_servers, topic) == ["1", "2", "3"]


async def _run_exactly_once(bootstrap: str, name: str, connector_config: dict[str, str],
                            until: Any, timeout: float) -> Any:
    """An exactly-once source task on an in-process worker (offsets topic, transactional
    producer) until `until()` (run in a thread) answers something."""
    group = unique_name("connect")
    offsets_topic = f"{group}-offsets"
    client = {"bootstrap.servers": bootstrap}
    await asyncio.to_thread(ensure_topic, client, offsets_topic, 1, 1)
    store = KafkaOffsetBackingStore(client, offsets_topic)
    await asyncio.to_thread(store.start)
    worker = Worker(WorkerConfig({"bootstrap.servers": bootstrap, "group.id": group,
                                  "exactly.once.source.support": "enabled",
                                  "key.converter": STRING, "value.converter": STRING,
                                  "offset.flush.interval.ms": "60000"}), store)
    connector = WorkerConnector(worker, name, ScriptedSource, {"name": name,
                                                               **connector_config})
    assert await connector.start()
    task = worker.start_task(connector, 0, connector.task_configs()[0], paused=False)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(until)
            if found:
                return found
            assert task.status.state.value in ("RUNNING", "UNASSIGNED"), task.status.trace
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out; task {task.status.state.value}")
    finally:
        await worker.stop_tasks(name)
        await connector.stop()
        await asyncio.to_thread(store.stop)


def test_poll_boundary_commits_each_poll(broker: EmbeddedBroker) -> None:
    """KIP-618 transaction.boundary=poll (the default): each poll's record is committed at
    once, not after offset.flush.interval.ms (60 s here)."""
    bootstrap, topic = broker.bootstrap_servers, unique_name("eos")
    started = time.monotonic()

    def visible() -> list[str] | None:
        values = read(bootstrap, topic, committed=True, timeout=3)
        return values if len(values) == 5 else None

    values = asyncio.run(_run_exactly_once(
        bootstrap, unique_name("eos"), config(topic, **{"count": "5", "interval.ms": "50"}),
        visible, timeout=30))
    assert values == ["1", "2", "3", "4", "5"]
    assert time.monotonic() - started < 30


def test_connector_boundary_commits_where_the_connector_says(broker: EmbeddedBroker) -> None:
    """transaction.boundary=connector: the task commits every 3rd record, so a read_committed
    consumer only ever sees multiples of 3 records; the 7th stays in an open transaction."""
    bootstrap, topic = broker.bootstrap_servers, unique_name("eos")
    seen: list[list[str]] = []

    def visible() -> list[str] | None:
        values = read(bootstrap, topic, committed=True, timeout=3)
        seen.append(values)
        everything = read(bootstrap, topic, timeout=3)
        return values if len(values) == 6 and len(everything) == 7 else None

    values = asyncio.run(_run_exactly_once(
        bootstrap, unique_name("eos"),
        config(topic, **{"count": "7", "interval.ms": "50", "commit.every": "3",
                         "transaction.boundary": "connector"}), visible, timeout=30))
    assert values == ["1", "2", "3", "4", "5", "6"]
    assert all(len(v) % 3 == 0 for v in seen), seen


def test_fence_producers_aborts_and_fences_a_zombie(broker: EmbeddedBroker) -> None:
    """strom.connect.kafka_store.fence_producers (what the worker calls before an exactly-once
    source connector's task count shrinks, as Kafka's Admin.fenceProducers): the zombie task's
    open transaction is aborted and its commit fails as fenced."""
    from confluent_kafka import KafkaException, Producer

    from strom.connect.kafka_store import fence_producers
    bootstrap, topic = broker.bootstrap_servers, unique_name("fence")
    create_topic(bootstrap, topic)
    transactional_id = unique_name("connect") + "-x-1"
    zombie = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic, b"from the zombie")
    zombie.flush(10)
    fence_producers({"bootstrap.servers": bootstrap}, [transactional_id])
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(10)
    assert raised.value.args[0].fatal() or raised.value.args[0].txn_requires_abort()
    assert read(bootstrap, topic, committed=True, timeout=3) == []


def test_a_newer_claim_fences_the_config_writes_of_an_older_leader(
        broker: EmbeddedBroker) -> None:
    """Exactly-once source support: the leader writes the config topic in transactions of
    `connect-cluster-<group.id>` (KafkaLog.claim); a newer leader's claim fences the older
    one, whose next write fails (Fenced) and is not seen by read_committed readers."""
    from strom.connect.kafka_store import Fenced, KafkaLog
    bootstrap, topic = broker.bootstrap_servers, unique_name("configs")
    client = {"bootstrap.servers": bootstrap}
    ensure_topic(client, topic, 1, 1)
    seen: list[tuple[str | None, Any]] = []
    old, new, reader = (KafkaLog(client, topic, lambda _: None),
                        KafkaLog(client, topic, lambda _: None),
                        KafkaLog(client, topic, seen.extend))
    transactional_id = f"connect-cluster-{unique_name('group')}"
    try:
        for log_ in (old, new, reader):
            log_.start()
        old.claim(transactional_id)
        old.send([("assignment", {"generation": 1})], transactional=True)
        new.claim(transactional_id)
        with pytest.raises(Fenced):
            old.send([("assignment", {"generation": 2, "leader": "zombie"})],
                     transactional=True)
        assert not old.claimed
        new.send([("assignment", {"generation": 2, "leader": "new"})], transactional=True)
        reader.read_to_end()
        assert seen == [("assignment", {"generation": 1}),
                        ("assignment", {"generation": 2, "leader": "new"})]
    finally:
        for log_ in (old, new, reader):
            log_.stop()
