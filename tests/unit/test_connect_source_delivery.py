"""Source task delivery as Kafka Connect's (AbstractWorkerSourceTask, ExactlyOnceWorkerSourceTask,
SourceTaskOffsetCommitter) and the standalone herder's restarts, without a broker: a fake
producer stands in where failures (send errors, transactions) are injected."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar

import confluent_kafka
import pytest

from strom.connect.api import RecordMetadata, SourceConnector, SourceTask, Task
from strom.connect.errors import ConfigException, RetriableException
from strom.connect.herder import StandaloneHerder
from strom.connect.offsets import ConnectorOffsetReader, MemoryOffsetBackingStore
from strom.connect.records import SourceRecord
from strom.connect.standalone import StandaloneRuntime
from strom.connect.states import State
from strom.connect.topic_creation import TopicCreation, validation_errors
from strom.connect.validation import validate_connector_config
from strom.connect.worker import Worker, WorkerConfig, WorkerSourceTask

HERE = "tests.unit.test_connect_source_delivery"
STRING = "org.apache.kafka.connect.storage.StringConverter"
PARTITION = {"p": "0"}


class FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class FakeMessage:
    def __init__(self, topic: str, offset: int) -> None:
        self._topic, self._offset = topic, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


class FakeProducer:
    """Delivers on poll/flush/commit; values in `FAIL` fail as the broker would reject them."""

    instances: ClassVar[list[FakeProducer]] = []
    FAIL: ClassVar[set[bytes]] = set()

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.conf = dict(conf)
        self.pending: list[tuple[str, bytes | None, Callable[..., None] | None]] = []
        self.sent: list[tuple[str, bytes | None]] = []
        self.events: list[tuple[str, ...]] = []
        self.closed = False
        FakeProducer.instances.append(self)

    def produce(self, topic: str, key: Any = None, value: bytes | None = None,
                on_delivery: Callable[..., None] | None = None, **_: Any) -> None:
        self.events.append(("produce", topic, (value or b"").decode()))
        self.pending.append((topic, value, on_delivery))

    def _deliver(self) -> None:
        pending, self.pending = self.pending, []
        for topic, value, callback in pending:
            if value in self.FAIL:
                if callback is not None:
                    callback(FakeError("Broker: Message size too large"), None)
                continue
            self.sent.append((topic, value))
            if callback is not None:
                callback(None, FakeMessage(topic, len(self.sent) - 1))

    def poll(self, timeout: float = 0) -> int:
        self._deliver()
        return 0

    def flush(self, timeout: float = 0) -> int:
        self._deliver()
        return 0

    def init_transactions(self, timeout: float = 0) -> None:
        self.events.append(("init",))

    def begin_transaction(self) -> None:
        self.events.append(("begin",))

    def commit_transaction(self, timeout: float = 0) -> None:
        self._deliver()
        self.events.append(("commit",))

    def abort_transaction(self, timeout: float = 0) -> None:
        self.pending = []
        self.events.append(("abort",))

    def purge(self) -> None:
        self.pending = []

    def close(self) -> None:
        self.closed = True

    def transactions(self) -> list[list[str]]:
        """The values of each committed transaction, in order (offset records as 'offsets:…');
        an aborted one as ['ABORTED', …]."""
        out: list[list[str]] = []
        current: list[str] = []
        for event in self.events:
            if event[0] == "produce":
                current.append(event[2] if event[1] != "offsets" else "offsets:" + event[2])
            elif event[0] == "commit":
                out.append(current)
                current = []
            elif event[0] == "abort":
                out.append(["ABORTED", *current])
                current = []
        return out


@pytest.fixture(autouse=True)
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    FakeProducer.instances = []
    FakeProducer.FAIL = set()


def synchronously(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in its own event loop (no pytest asyncio plugin here)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


def record(n: int, value: str | None = None) -> SourceRecord:
    return SourceRecord(topic="out", value=value if value is not None else f"v{n}",
                        source_partition=PARTITION, source_offset={"n": n})


class ScriptedTask(SourceTask):
    """poll() plays `script`: an exception is raised, a list returned, None means idle."""

    script: ClassVar[list[Any]] = []
    polls: ClassVar[int] = 0
    committed_records: ClassVar[list[tuple[str, RecordMetadata | None]]] = []

    def version(self) -> str:
        return "1"

    def start(self, props: Mapping[str, str]) -> None:
        pass

    async def poll(self) -> list[SourceRecord] | None:
        type(self).polls += 1
        await asyncio.sleep(0.01)
        if not self.script:
            return None
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(self)  # type: ignore[no-any-return]
        return step  # type: ignore[no-any-return]

    def commit_record(self, record: SourceRecord, metadata: RecordMetadata | None) -> None:
        self.committed_records.append((record.value, metadata))

    def stop(self) -> None:
        pass


def scripted(*steps: Any) -> type[ScriptedTask]:
    return type("Task", (ScriptedTask,), {"script": list(steps), "polls": 0,
                                           "committed_records": []})


class TransactionalStore(MemoryOffsetBackingStore):
    def transactional_topic(self) -> str | None:
        return "offsets"


def source_task(task_cls: type[SourceTask], config: Mapping[str, str] | None = None,
                worker_props: Mapping[str, str] | None = None,
                store: MemoryOffsetBackingStore | None = None) -> WorkerSourceTask:
    worker = Worker(WorkerConfig({"offset.flush.interval.ms": "60000", **(worker_props or {})}),
                    store or MemoryOffsetBackingStore())
    connector_config = {"name": "c", "value.converter": STRING, "key.converter": STRING,
                        **(config or {})}
    return WorkerSourceTask(worker, "c", 0, task_cls, connector_config, connector_config)


async def until(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout

    def ok() -> bool:
        try:
            return bool(check())
        except IndexError:  # no producer yet
            return False

    while not ok():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


def committed(task: WorkerSourceTask) -> Mapping[str, Any] | None:
    return ConnectorOffsetReader(task.worker.offsets, "c").offset(PARTITION)


def sent(task: WorkerSourceTask) -> list[str]:
    return [(v or b"").decode() for topic, v in FakeProducer.instances[0].sent if topic == "out"]


# ---------------------------------------------------------------------------------------------
# F4: a RetriableException from poll() is retried


@synchronously
async def test_retriable_poll_errors_are_retried() -> None:
    cls = scripted(RetriableException("connection reset"), RetriableException("again"),
                   [record(1), record(2)])
    task = source_task(cls)
    task.start()
    await until(lambda: sent(task) == ["v1", "v2"], what="the records after the retries")
    assert task.status.state == State.RUNNING
    assert cls.polls >= 3
    await task.stop()
    assert committed(task) == {"n": 2}


# ---------------------------------------------------------------------------------------------
# F9 (KIP-779): a send failure under errors.tolerance=all is skipped


@synchronously
async def test_send_failure_tolerated_under_all_fails_under_none() -> None:
    FakeProducer.FAIL = {b"BIG"}
    cls = scripted([record(1)], [record(2, "BIG")], [record(3)])
    task = source_task(cls, {"errors.tolerance": "all", "errors.log.enable": "true"},
                       {"offset.flush.interval.ms": "20"})
    task.start()
    await until(lambda: committed(task) == {"n": 3}, what="offsets past the failed record")
    assert task.status.state == State.RUNNING
    assert sent(task) == ["v1", "v3"]
    assert (task.errors.record_errors, task.errors.records_skipped) == (1, 1)
    assert task.errors.errors_logged == 1
    assert ("BIG", None) in cls.committed_records
    await task.stop()

    FakeProducer.instances = []
    strict = source_task(scripted([record(1)], [record(2, "BIG")], [record(3)]),
                         worker_props={"offset.flush.interval.ms": "20"})
    strict.start()
    await until(lambda: strict.status.state == State.FAILED, what="the strict task failing")
    assert "Message size too large" in (strict.status.trace or "")
    assert committed(strict) == {"n": 1}  # nothing at or after the failed record


# ---------------------------------------------------------------------------------------------
# F11: what setup created is closed when start() fails


@synchronously
async def test_producer_closed_when_start_fails() -> None:
    class Failing(ScriptedTask):
        def start(self, props: Mapping[str, str]) -> None:
            raise RuntimeError("cannot connect")

    task = source_task(Failing)
    task.start()
    await until(lambda: task.status.state == State.FAILED, what="the task failing")
    assert FakeProducer.instances and FakeProducer.instances[0].closed
    assert task.producer is None


# ---------------------------------------------------------------------------------------------
# M1: a paused task keeps committing what was acknowledged before the pause


@synchronously
async def test_paused_task_commits_acknowledged_offsets() -> None:
    cls = scripted([record(1), record(2)])
    task = source_task(cls, worker_props={"offset.flush.interval.ms": "300"})
    task.start()
    await until(lambda: len(sent(task)) == 2, what="the records sent")
    task.pause()
    assert committed(task) is None
    await until(lambda: committed(task) == {"n": 2}, timeout=3,
                what="the offsets committed while paused")
    assert task.status.state == State.PAUSED
    await task.stop()


# ---------------------------------------------------------------------------------------------
# M2: commit_record() / commit() errors are logged, not fatal


@synchronously
async def test_commit_callback_errors_are_not_fatal() -> None:
    class Throwing(ScriptedTask):
        script: ClassVar[list[Any]] = [[record(1)], [record(2)]]

        def commit_record(self, record: SourceRecord, metadata: RecordMetadata | None) -> None:
            raise RuntimeError("commit_record broke")

        def commit(self) -> None:
            raise RuntimeError("commit broke")

    task = source_task(Throwing, worker_props={"offset.flush.interval.ms": "20"})
    task.start()
    await until(lambda: committed(task) == {"n": 2}, what="offsets committed")
    await asyncio.sleep(0.1)
    assert task.status.state == State.RUNNING
    await task.stop()


# ---------------------------------------------------------------------------------------------
# F14 (KIP-618): transaction boundaries


EOS = {"exactly.once.source.support": "enabled"}


def offsets_of(n: int) -> str:
    return "offsets:" + json.dumps({"n": n}, separators=(",", ":"))


@synchronously
async def test_poll_boundary_commits_each_batch() -> None:
    cls = scripted([record(1), record(2)], [record(3)])
    task = source_task(cls, worker_props=EOS, store=TransactionalStore())
    task.start()
    # default offset.flush.interval.ms is 60 s: each poll batch is its own transaction
    await until(lambda: len(FakeProducer.instances[0].transactions()) == 2, timeout=3,
                what="two transactions")
    assert FakeProducer.instances[0].transactions() == [
        ["v1", "v2", offsets_of(2)], ["v3", offsets_of(3)]]
    assert FakeProducer.instances[0].conf["transactional.id"] == "connect-cluster-c-0"
    await task.stop()


@synchronously
async def test_interval_boundary() -> None:
    cls = scripted([record(1)], [record(2)])
    task = source_task(cls, {"transaction.boundary": "interval",
                             "transaction.boundary.interval.ms": "400"},
                       worker_props=EOS, store=TransactionalStore())
    task.start()
    await until(lambda: not cls.script and len(sent(task)) == 2, what="both polls")
    assert FakeProducer.instances[0].transactions() == []  # both batches in one transaction
    await until(lambda: FakeProducer.instances[0].transactions(), timeout=3,
                what="the transaction committed after the interval")
    assert FakeProducer.instances[0].transactions() == [["v1", "v2", offsets_of(2)]]
    await task.stop()


@synchronously
async def test_connector_boundary() -> None:
    def first(task: SourceTask) -> list[SourceRecord]:
        records = [record(1), record(2), record(3)]
        assert task.context is not None
        context = task.context.transaction_context()
        assert context is not None
        context.commit_transaction(records[1])
        return records

    def second(task: SourceTask) -> list[SourceRecord]:
        assert task.context is not None
        context = task.context.transaction_context()
        assert context is not None
        context.abort_transaction()
        return [record(4)]

    def third(task: SourceTask) -> list[SourceRecord]:
        assert task.context is not None
        context = task.context.transaction_context()
        assert context is not None
        context.commit_transaction()
        return [record(5)]

    cls = scripted(first, second, third)
    task = source_task(cls, {"transaction.boundary": "connector"}, worker_props=EOS,
                       store=TransactionalStore())
    task.start()
    await until(lambda: len(FakeProducer.instances[0].transactions()) == 4, timeout=3,
                what="the connector's transactions")
    assert FakeProducer.instances[0].transactions() == [
        ["v1", "v2", offsets_of(2)],
        ["ABORTED", "v3", "v4"],
        [offsets_of(4)],  # the aborted records' offsets still commit
        ["v5", offsets_of(5)]]
    await task.stop()


@synchronously
async def test_no_transaction_context_without_connector_boundary() -> None:
    seen: list[Any] = []

    def look(task: SourceTask) -> list[SourceRecord]:
        assert task.context is not None
        seen.append(task.context.transaction_context())
        return []

    task = source_task(scripted(look), worker_props=EOS, store=TransactionalStore())
    task.start()
    await until(lambda: seen, what="a poll")
    assert seen == [None]
    await task.stop()


class NoEosConnector(SourceConnector):
    def version(self) -> str:
        return "1"

    def start(self, props: Mapping[str, str]) -> None:
        pass

    def task_class(self) -> type[Task]:
        return ScriptedTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [{}]

    def stop(self) -> None:
        pass


class EosConnector(NoEosConnector):
    def exactly_once_support(self) -> str | None:
        return "SUPPORTED"

    def can_define_transaction_boundaries(self) -> str:
        return "SUPPORTED"


def errors_of(plugin: str, config: Mapping[str, str], exactly_once: bool = True
              ) -> dict[str, list[str]]:
    result = validate_connector_config(f"{HERE}:{plugin}", {"name": "x", **config},
                                       exactly_once)
    return {c["value"]["name"]: c["value"]["errors"] for c in result["configs"]
            if c["value"]["errors"]}


def test_exactly_once_support_required() -> None:
    errors = errors_of("NoEosConnector", {"exactly.once.support": "required"})
    assert "preflight validation of exactly-once" in errors["exactly.once.support"][0]
    assert errors_of("EosConnector", {"exactly.once.support": "required"}) == {}
    assert errors_of("NoEosConnector", {"exactly.once.support": "requested"}) == {}
    errors = errors_of("NoEosConnector", {"transaction.boundary": "connector"})
    assert "connector-defined transaction boundaries" in errors["transaction.boundary"][0]
    assert errors_of("EosConnector", {"transaction.boundary": "connector"}) == {}
    assert "transaction.boundary" in errors_of("EosConnector",
                                               {"transaction.boundary": "sometimes"})
    # a worker without exactly-once source support does not ask the connector (Kafka)
    assert errors_of("NoEosConnector", {"exactly.once.support": "required"}, False) == {}


# ---------------------------------------------------------------------------------------------
# F15 (KIP-158): topic creation groups


def test_topic_creation_groups() -> None:
    creation = TopicCreation.from_config({
        "topic.creation.groups": "compacted,big",
        "topic.creation.default.replication.factor": "-1",
        "topic.creation.default.partitions": "1",
        "topic.creation.default.retention.ms": "1000",
        "topic.creation.compacted.include": "db\\..*,cdc-.*",
        "topic.creation.compacted.exclude": "db\\.tmp.*",
        "topic.creation.compacted.cleanup.policy": "compact",
        "topic.creation.big.include": ".*",
        "topic.creation.big.partitions": "12"})
    group = creation.group_for("db.users")
    assert (group.name, group.partitions, group.replication_factor, group.configs) == (
        "compacted", 1, -1, {"cleanup.policy": "compact"})
    assert creation.group_for("db.tmp1").name == "big"  # excluded from the first group
    assert creation.group_for("db.tmp1").partitions == 12
    no_groups = TopicCreation.from_config({"topic.creation.default.replication.factor": "1",
                                           "topic.creation.default.partitions": "3"})
    assert no_groups.group_for("anything").name == "default"
    errors = validation_errors({"topic.creation.default.replication.factor": "1"})
    assert errors == {"topic.creation.default.partitions": [
        'Missing required configuration "topic.creation.default.partitions" which has no '
        "default value."]}
    assert "topic.creation.default.partitions" in errors_of(
        "NoEosConnector", {"topic.creation.default.replication.factor": "1",
                           "topic.creation.default.partitions": "0"})
    assert validation_errors({"name": "x"}) == {}


# ---------------------------------------------------------------------------------------------
# F16: standalone needs offset.storage.file.filename


def test_standalone_requires_offsets_file() -> None:
    with pytest.raises(ConfigException) as raised:
        StandaloneRuntime({"bootstrap.servers": "localhost:9092"})
    assert str(raised.value) == ('Missing required configuration '
                                 '"offset.storage.file.filename" which has no default value.')


# ---------------------------------------------------------------------------------------------
# F8 / M7: standalone restarts and reconfigurations


class FlakyConnector(NoEosConnector):
    starts: ClassVar[int] = 0
    break_configs: ClassVar[bool] = False

    def start(self, props: Mapping[str, str]) -> None:
        FlakyConnector.starts += 1
        if FlakyConnector.starts == 1:
            raise RuntimeError("database unreachable")

    def task_class(self) -> type[Task]:
        return scripted()

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        if FlakyConnector.break_configs:
            raise RuntimeError("cannot list the tables")
        return [{"task": str(i)} for i in range(max_tasks)]


@pytest.mark.parametrize("only_failed", [False, True])
@synchronously
async def test_restart_of_a_failed_connector_starts_its_tasks(only_failed: bool) -> None:
    FlakyConnector.starts = 0
    FlakyConnector.break_configs = False
    herder = StandaloneHerder(Worker(WorkerConfig({}), MemoryOffsetBackingStore()))
    await herder.put_connector_config("x", {"connector.class": f"{HERE}:FlakyConnector",
                                            "tasks.max": "2"}, False)
    status = await herder.connector_status("x")
    assert status["connector"]["state"] == "FAILED" and status["tasks"] == []
    await herder.restart_connector("x", include_tasks=False, only_failed=only_failed)
    await until(lambda: len(herder.worker.tasks_of("x")) == 2, what="the tasks started")
    status = await herder.connector_status("x")
    assert status["connector"]["state"] == "RUNNING"
    await until(lambda: [t.state for t in herder.worker.tasks_of("x")] == ["RUNNING"] * 2,
                what="the tasks running")
    assert (await herder.connector_info("x")).tasks == [0, 1]
    await herder.stop()


@synchronously
async def test_reconfiguration_errors_fail_the_connector() -> None:
    FlakyConnector.starts = 1  # starts fine
    FlakyConnector.break_configs = False
    herder = StandaloneHerder(Worker(WorkerConfig({}), MemoryOffsetBackingStore()))
    await herder.put_connector_config("x", {"connector.class": f"{HERE}:FlakyConnector"},
                                      False)
    connector = herder.worker.connectors["x"]
    assert connector.status.state == State.RUNNING
    FlakyConnector.break_configs = True
    herder.worker.on_reconfiguration_request("x")
    assert herder._pending  # kept until done
    await until(lambda: connector.status.state == State.FAILED, what="the connector failing")
    assert "cannot list the tables" in (connector.status.trace or "")
    await until(lambda: not herder._pending, what="the reconfiguration finished")
    FlakyConnector.break_configs = False
    await herder.stop()


# ---------------------------------------------------------------------------------------------
# Task reconfigurations: requested from any thread, retried until written


class GrowingConnector(NoEosConnector):
    """A connector whose task count a test changes, then asks for a reconfiguration."""

    count: ClassVar[int] = 1

    def task_class(self) -> type[Task]:
        return scripted()

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [{"task": str(i)} for i in range(GrowingConnector.count)]


def _from_a_thread(call: Callable[[], None]) -> None:
    import threading
    thread = threading.Thread(target=call)
    thread.start()
    thread.join()


@synchronously
async def test_standalone_reconfiguration_requested_from_a_thread() -> None:
    GrowingConnector.count = 1
    herder = StandaloneHerder(Worker(WorkerConfig({}), MemoryOffsetBackingStore()))
    await herder.put_connector_config("x", {"connector.class": f"{HERE}:GrowingConnector",
                                            "tasks.max": "3"}, False)
    await until(lambda: len(herder.worker.tasks_of("x")) == 1, what="one task")
    GrowingConnector.count = 2
    instance = herder.worker.connectors["x"].instance
    assert instance is not None
    # Kafka's connectors watch their source from threads of their own and call this there.
    _from_a_thread(instance.context.request_task_reconfiguration)
    await until(lambda: len(herder.worker.tasks_of("x")) == 2, what="two tasks")
    assert [c["task"] for c in herder.task_config_map["x"]] == ["0", "1"]
    await herder.stop()


@synchronously
async def test_distributed_reconfiguration_is_retried_until_its_configs_are_written() -> None:
    from strom.connect import distributed
    from strom.connect.distributed import DistributedConfig, DistributedHerder
    from strom.connect.kafka_store import KafkaOffsetBackingStore
    from strom.connect.worker import WorkerConnector

    GrowingConnector.count = 1
    client = {"bootstrap.servers": "127.0.0.1:9"}  # never contacted: the writes are replaced
    worker = Worker(WorkerConfig({"bootstrap.servers": "127.0.0.1:9"}),
                    KafkaOffsetBackingStore(client, "offsets"))
    herder = DistributedHerder(worker, DistributedConfig({"group.id": "g"}),
                               KafkaOffsetBackingStore(client, "offsets"))
    written: list[list[dict[str, str]]] = []
    failures = [RuntimeError("writing to connect-configs failed: timed out")] * 2

    async def write(name: str, configs: list[dict[str, str]]) -> None:
        if failures:
            raise failures.pop()
        written.append(configs)
        herder.task_config_map[name] = configs  # as when the commit record is read back

    herder._write_task_configs = write  # type: ignore[method-assign]
    connector = WorkerConnector(worker, "x", GrowingConnector,
                                {"connector.class": f"{HERE}:GrowingConnector",
                                 "tasks.max": "3"})
    worker.connectors["x"] = connector
    assert await connector.start()
    await herder._update_task_configs(connector)  # the first write fails: not raised, kept
    assert written == [] and herder._reconfigure_attempts == {"x": 1}
    first = herder._reconfigure_at["x"]
    assert first > time.monotonic()
    await herder._reconfigure_due()  # not due yet
    assert written == []
    herder._reconfigure_at["x"] = 0.0
    await herder._reconfigure_due()  # fails again: a longer backoff
    assert written == [] and herder._reconfigure_attempts == {"x": 2}
    assert herder._reconfigure_at["x"] - time.monotonic() > distributed.RECONFIGURE_BACKOFF_S
    herder._reconfigure_at["x"] = 0.0
    await herder._reconfigure_due()
    assert [[c["task"] for c in configs] for configs in written] == [["0"]]
    assert herder._reconfigure_at == {} and herder._reconfigure_attempts == {}
    # A request from a connector's own thread: done on the next tick.
    GrowingConnector.count = 2
    assert connector.instance is not None
    _from_a_thread(connector.instance.context.request_task_reconfiguration)
    await until(lambda: "x" in herder._reconfigure_at, what="the request noted")
    await herder._reconfigure_due()
    assert [c["task"] for c in written[-1]] == ["0", "1"]
    await connector.stop()
    for log_ in (herder.config_log, herder.status_log, herder.offset_store):
        log_.stop()
    herder.membership.stop()


@synchronously
async def test_distributed_fences_the_removed_tasks_of_an_exactly_once_source() -> None:
    """KIP-618: before an exactly-once source connector's task count shrinks, the
    transactional ids of the tasks that go are fenced (their producers initialized), then the
    configs written; the tasks that stay are fenced by their own next incarnation."""
    from strom.connect.distributed import DistributedConfig, DistributedHerder
    from strom.connect.kafka_store import KafkaOffsetBackingStore
    from strom.connect.worker import WorkerConnector

    client = {"bootstrap.servers": "127.0.0.1:9"}
    props = {"bootstrap.servers": "127.0.0.1:9", "group.id": "g",
             "exactly.once.source.support": "enabled"}
    worker = Worker(WorkerConfig(props), KafkaOffsetBackingStore(client, "offsets"))
    herder = DistributedHerder(worker, DistributedConfig(props),
                               KafkaOffsetBackingStore(client, "offsets"))
    order: list[str] = []

    async def write(name: str, configs: list[dict[str, str]]) -> None:
        order.append(f"write {len(configs)}")
        herder.task_config_map[name] = configs

    herder._write_task_configs = write  # type: ignore[method-assign]
    GrowingConnector.count = 3
    connector = WorkerConnector(worker, "x", GrowingConnector,
                                {"connector.class": f"{HERE}:GrowingConnector",
                                 "tasks.max": "3"})
    worker.connectors["x"] = connector
    assert await connector.start()

    def fenced() -> list[str]:
        return [p.conf["transactional.id"] for p in FakeProducer.instances
                if p.conf.get("transactional.id") and ("init",) in p.events]

    await herder._update_task_configs(connector)  # 0 -> 3 tasks: nothing to fence
    assert order == ["write 3"] and fenced() == []
    GrowingConnector.count = 1
    FakeProducer.instances = []
    real_write = herder._write_task_configs

    async def write_after_fencing(name: str, configs: list[dict[str, str]]) -> None:
        order.append(f"fenced {fenced()}")
        await real_write(name, configs)

    herder._write_task_configs = write_after_fencing  # type: ignore[method-assign]
    await herder._update_task_configs(connector)  # 3 -> 1: tasks 1 and 2 fenced first
    assert order == ["write 3", "fenced ['g-x-1', 'g-x-2']", "write 1"]
    # Without exactly-once support nothing is fenced.
    worker.config.props["exactly.once.source.support"] = "disabled"
    GrowingConnector.count = 0
    FakeProducer.instances = []
    await herder._update_task_configs(connector)
    assert fenced() == [] and order[-1] == "write 0"
    await connector.stop()
    for log_ in (herder.config_log, herder.status_log, herder.offset_store):
        log_.stop()
    herder.membership.stop()


class ClaimingLog:
    """A stand-in for the config topic's KafkaLog: records the writes; `fence()` makes the
    next transactional write fail as a newer leader's claim would."""

    def __init__(self) -> None:
        self.claimed = False
        self.claims = 0
        self.fenced = False
        self.writes: list[tuple[bool, list[tuple[str, Any]]]] = []

    def claim(self, transactional_id: str) -> None:
        assert transactional_id == "connect-cluster-g"
        self.claimed, self.fenced = True, False
        self.claims += 1

    def release(self) -> None:
        self.claimed = False

    def send(self, records: list[tuple[str, Any]], wait: bool = True,
             transactional: bool = False) -> None:
        from strom.connect.kafka_store import Fenced
        if transactional and (self.fenced or not self.claimed):
            self.claimed = False
            raise Fenced("fenced by a newer claim")
        self.writes.append((transactional, records))

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("eos", [True, False])
@synchronously
async def test_a_fenced_leader_stops_leading_until_it_rejoins(eos: bool) -> None:
    from strom.connect.distributed import DistributedConfig, DistributedHerder
    from strom.connect.kafka_store import KafkaOffsetBackingStore
    from strom.connect.states import Conflict

    client = {"bootstrap.servers": "127.0.0.1:9"}
    props = {"bootstrap.servers": "127.0.0.1:9", "group.id": "g",
             "exactly.once.source.support": "enabled" if eos else "disabled"}
    herder = DistributedHerder(Worker(WorkerConfig(props),
                                      KafkaOffsetBackingStore(client, "offsets")),
                               DistributedConfig(props),
                               KafkaOffsetBackingStore(client, "offsets"))
    real_log, fake = herder.config_log, ClaimingLog()
    herder.config_log = fake  # type: ignore[assignment]
    herder.membership.leader = True
    await herder._write([("target-state-x", {"state": "PAUSED"})])
    assert fake.writes == [(eos, [("target-state-x", {"state": "PAUSED"})])]
    assert fake.claims == (1 if eos else 0)
    fake.fenced = True  # a newer leader claimed the transactional id
    if not eos:  # without exactly-once support the leader's writes are not transactional
        await herder._write([("target-state-x", {"state": "STARTED"})])
        assert herder.is_leader()
        return
    with pytest.raises(Conflict):
        await herder._write([("target-state-x", {"state": "STARTED"})])
    assert not herder.is_leader() and not herder.leading  # forwards writes from now on
    with pytest.raises(Conflict):
        herder._require_leader()
    herder.membership.changes += 1  # it rejoined the group, still (or again) its leader
    assert herder.is_leader()
    await herder._write([("target-state-x", {"state": "STARTED"})])
    assert fake.claims == 2 and fake.writes[-1] == (True, [("target-state-x",
                                                             {"state": "STARTED"})])
    herder.config_log = real_log
    for log_ in (herder.config_log, herder.status_log, herder.offset_store):
        log_.stop()
    herder.membership.stop()
