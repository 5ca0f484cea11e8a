"""Sink task delivery as Kafka Connect's WorkerSinkTask (offsets committed only for records put
and accepted by preCommit, retriable put failures, rebalances, stop, the errant record reporter),
without a broker: a fake consumer plays the partitions' logs and the group's rebalances."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ClassVar

import confluent_kafka
import pytest

from strom.connect.api import SinkTask, TopicPartition
from strom.connect.converters.simple import StringConverter
from strom.connect.errors import ConnectException, RetriableException
from strom.connect.offsets import MemoryOffsetBackingStore
from strom.connect.records import SinkRecord
from strom.connect.states import State
from strom.connect.worker import Worker, WorkerConfig, WorkerSinkTask

STRING = "org.apache.kafka.connect.storage.StringConverter"
TP0 = TopicPartition("in", 0)
TP1 = TopicPartition("in", 1)

# What happened, in order: ("put", [(partition, offset)...]), ("commit", {tp: offset}),
# ("open"/"close", [tp...]), ("stop",).
EVENTS: list[tuple[Any, ...]] = []


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        self._topic, self._partition, self._offset, self._value = (topic, partition, offset,
                                                                   value)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


class FakeConsumer:
    """A group member over in-memory logs: `rebalances` (("assign"|"revoke", [tp...])) are
    played at the start of the next consume(), as librdkafka calls the rebalance callbacks
    from within it; messages come from the assigned, unpaused partitions' positions."""

    instances: ClassVar[list[FakeConsumer]] = []
    logs: ClassVar[dict[TopicPartition, list[bytes]]] = {}

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.conf = dict(conf)
        self.subscribed: list[str] = []
        self.on_assign: Callable[..., None] | None = None
        self.on_revoke: Callable[..., None] | None = None
        self.rebalances: list[tuple[str, list[TopicPartition]]] = []
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.consume_sizes: list[int] = []
        self.closed = False
        self.lock = threading.Lock()
        FakeConsumer.instances.append(self)

    def subscribe(self, topics: list[str], on_assign: Callable[..., None],
                  on_revoke: Callable[..., None], **_: Any) -> None:
        self.subscribed = topics
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self.consume_sizes.append(num_messages)
        while self.rebalances:
            kind, parts = self.rebalances.pop(0)
            kafka_parts = [confluent_kafka.TopicPartition(tp.topic, tp.partition)
                           for tp in parts]
            if kind == "assign":
                self.assigned.update(parts)
                for tp in parts:
                    self.positions[tp] = self.committed.get(tp, 0)
                assert self.on_assign is not None
                self.on_assign(self, kafka_parts)
            else:
                assert self.on_revoke is not None
                self.on_revoke(self, kafka_parts)
                self.assigned.difference_update(parts)
                self.paused.difference_update(parts)  # as Kafka's consumer forgets it
        out: list[FakeMessage] = []
        with self.lock:
            for tp in sorted(self.assigned - self.paused):
                log = self.logs.get(tp, [])
                while self.positions[tp] < len(log) and len(out) < num_messages:
                    offset = self.positions[tp]
                    out.append(FakeMessage(tp.topic, tp.partition, offset, log[offset]))
                    self.positions[tp] = offset + 1
        if not out:
            threading.Event().wait(min(timeout, 0.02))
        return out

    def commit(self, offsets: list[Any], asynchronous: bool = True) -> None:
        done = {TopicPartition(p.topic, p.partition): p.offset for p in offsets}
        EVENTS.append(("commit", done))
        self.committed.update(done)

    def seek(self, part: Any) -> None:
        with self.lock:
            self.positions[TopicPartition(part.topic, part.partition)] = part.offset

    def pause(self, parts: list[Any]) -> None:
        self.paused.update(TopicPartition(p.topic, p.partition) for p in parts)

    def resume(self, parts: list[Any]) -> None:
        self.paused.difference_update(TopicPartition(p.topic, p.partition) for p in parts)

    def position(self, parts: list[Any]) -> list[Any]:
        return [confluent_kafka.TopicPartition(p.topic, p.partition, -1) for p in parts]

    def get_watermark_offsets(self, part: Any, **_: Any) -> tuple[int, int]:
        return (0, len(self.logs.get(TopicPartition(part.topic, part.partition), [])))

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    FakeConsumer.instances = []
    FakeConsumer.logs = {TP0: [f"a{n}".encode() for n in range(5)],
                         TP1: [f"b{n}".encode() for n in range(3)]}
    EVENTS.clear()


def synchronously(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in its own event loop (no pytest asyncio plugin here)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


async def until(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


class RecordingTask(SinkTask):
    """Records what it is given; `put_errors` are raised by the next puts, in turn."""

    put_errors: ClassVar[list[BaseException]] = []
    puts: ClassVar[list[list[SinkRecord]]] = []

    def version(self) -> str:
        return "1"

    def start(self, props: Mapping[str, str]) -> None:
        pass

    def put(self, records: Sequence[SinkRecord]) -> None:
        if self.put_errors:
            raise self.put_errors.pop(0)
        self.puts.append(list(records))
        EVENTS.append(("put", [(r.kafka_partition, r.kafka_offset) for r in records]))

    def open(self, partitions: Sequence[TopicPartition]) -> None:
        EVENTS.append(("open", sorted(partitions)))

    def close(self, partitions: Sequence[TopicPartition]) -> None:
        EVENTS.append(("close", sorted(partitions)))

    def stop(self) -> None:
        EVENTS.append(("stop",))


def recording(**attributes: Any) -> type[RecordingTask]:
    return type("Task", (RecordingTask,), {"put_errors": [], "puts": [], **attributes})


def sink_task(task_cls: type[SinkTask], config: Mapping[str, str] | None = None,
              worker_props: Mapping[str, str] | None = None) -> WorkerSinkTask:
    worker = Worker(WorkerConfig({"offset.flush.interval.ms": "60000", **(worker_props or {})}),
                    MemoryOffsetBackingStore())
    connector_config = {"name": "c", "topics": "in", "value.converter": STRING,
                        "key.converter": STRING, **(config or {})}
    return WorkerSinkTask(worker, "c", 0, task_cls, connector_config, connector_config)


async def started(task: WorkerSinkTask, *parts: TopicPartition) -> FakeConsumer:
    task.start()
    await until(lambda: FakeConsumer.instances, what="the consumer")
    consumer = FakeConsumer.instances[0]
    consumer.rebalances.append(("assign", list(parts or (TP0,))))
    return consumer


def commits() -> list[dict[TopicPartition, int]]:
    return [event[1] for event in EVENTS if event[0] == "commit"]


def put_offsets() -> list[tuple[int, int]]:
    return [position for event in EVENTS if event[0] == "put" for position in event[1]]


# ---------------------------------------------------------------------------------------------
# put(): offsets move only past records put


@synchronously
async def test_failed_put_commits_nothing_of_its_batch() -> None:
    cls = recording(put_errors=[ConnectException("the sink is broken")])
    task = sink_task(cls)
    await started(task)
    await until(lambda: task.status.state == State.FAILED, what="the task failing")
    await task.stop()
    assert "the sink is broken" in (task.status.trace or "")
    assert all(TP0 not in commit for commit in commits()), commits()
    assert ("stop",) in EVENTS


@synchronously
async def test_retriable_put_redelivers_the_same_batch() -> None:
    cls = recording(put_errors=[RetriableException("busy"), RetriableException("busy")])
    task = sink_task(cls)
    await started(task)
    await until(lambda: cls.puts, what="the batch put after the retries")
    assert put_offsets() == [(0, n) for n in range(5)]
    assert task.status.state == State.RUNNING
    await task.stop()
    assert commits() == [{TP0: 5}]
    assert EVENTS[-3:] == [("commit", {TP0: 5}), ("close", [TP0]), ("stop",)]


@synchronously
async def test_stop_during_a_retry_back_off_is_prompt_and_commits_nothing_unput() -> None:
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []
        attempts = 0

        def put(self, records: Sequence[SinkRecord]) -> None:
            assert self.context is not None
            type(self).attempts += 1
            self.context.timeout(60_000)
            raise RetriableException("the database is down")

    task = sink_task(Task)
    await started(task)
    await until(lambda: Task.attempts, what="a put")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await task.stop()
    assert loop.time() - began < 2
    assert task.status.state != State.FAILED, task.status.trace
    assert all(TP0 not in commit for commit in commits()), commits()
    assert ("stop",) in EVENTS


# ---------------------------------------------------------------------------------------------
# Rebalances


@synchronously
async def test_revoked_partitions_are_committed_before_they_are_closed() -> None:
    cls = recording()
    task = sink_task(cls)
    consumer = await started(task, TP0, TP1)
    await until(lambda: len(put_offsets()) == 8, what="both partitions put")
    consumer.rebalances.append(("revoke", [TP1]))
    await until(lambda: ("close", [TP1]) in EVENTS, what="TP1 closed")
    close = EVENTS.index(("close", [TP1]))
    assert EVENTS[close - 1] == ("commit", {TP1: 3})
    assert consumer.committed == {TP1: 3}
    await task.stop()
    assert commits()[-1] == {TP0: 5}
    assert task.status.state != State.FAILED, task.status.trace



@synchronously
async def test_offsets_a_task_sets_when_it_opens_a_partition_apply_before_any_put() -> None:
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []

        def open(self, partitions: Sequence[TopicPartition]) -> None:
            assert self.context is not None
            self.context.offset(TP0, 3)  # as a sink keeping its offsets elsewhere does

    task = sink_task(Task)
    await started(task)
    await until(lambda: len(put_offsets()) >= 2, what="the records after offset 3")
    await asyncio.sleep(0.1)
    await task.stop()
    assert put_offsets() == [(0, 3), (0, 4)]
    assert commits()[-1] == {TP0: 5}


# ---------------------------------------------------------------------------------------------
# KIP-610: the errant record reporter


@synchronously
async def test_errant_reports_complete_before_the_offsets_covering_them_are_committed() -> None:
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []

        def put(self, records: Sequence[SinkRecord]) -> None:
            assert self.context is not None
            reporter = self.context.errant_record_reporter()
            assert reporter is not None
            for record in records:  # not waiting for the reports, as Kafka allows
                reporter.report(record, ValueError(f"bad {record.value}"))
            self.context.request_commit()

    async def slow_dead_letter_queue(context: Any) -> None:
        await asyncio.sleep(0.3)
        EVENTS.append(("reported", context.offset))

    task = sink_task(Task, {"errors.tolerance": "all", "errors.log.enable": "true"})
    task.errors.reporters.append(slow_dead_letter_queue)
    await started(task)
    await until(lambda: commits(), what="a commit")
    first_commit = EVENTS.index(("commit", {TP0: 5}))
    assert [e for e in EVENTS[:first_commit] if e[0] == "reported"] == [
        ("reported", n) for n in range(5)]
    await task.stop()


@synchronously
async def test_a_task_swallowing_the_reporters_failure_still_fails() -> None:
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []

        def put(self, records: Sequence[SinkRecord]) -> None:
            assert self.context is not None
            reporter = self.context.errant_record_reporter()
            assert reporter is not None
            # errors.tolerance=none: the report fails; the task carries on
            with contextlib.suppress(Exception):
                reporter.report(records[0], ValueError("bad"))

    task = sink_task(Task)
    await started(task)
    await until(lambda: task.status.state == State.FAILED, what="the task failing")
    await task.stop()
    assert "Tolerance exceeded" in (task.status.trace or "")
    assert all(TP0 not in commit for commit in commits()), commits()


# ---------------------------------------------------------------------------------------------
# The consumer


@synchronously
async def test_topics_regex_subscribes_to_whole_topic_names_only() -> None:
    task = sink_task(recording(), {"topics": "", "topics.regex": "in|out"})
    await started(task)
    await task.stop()
    [pattern] = FakeConsumer.instances[0].subscribed
    for topic in ("in", "out"):
        assert re.match(pattern, topic), pattern
    for topic in ("input", "in-dlq", "xout", "outer"):
        assert not re.match(pattern, topic), (pattern, topic)


@synchronously
async def test_max_poll_records_bounds_the_batches() -> None:
    cls = recording()
    task = sink_task(cls, {"consumer.override.max.poll.records": "2"})
    await started(task)
    await until(lambda: len(put_offsets()) == 5, what="the records")
    await task.stop()
    consumer = FakeConsumer.instances[0]
    assert "max.poll.records" not in consumer.conf  # not a librdkafka setting
    assert set(consumer.consume_sizes) == {2}
    assert [len(batch) for batch in cls.puts] == [2, 2, 1]


@synchronously
async def test_the_consumer_is_polled_while_a_batch_waits_for_redelivery() -> None:
    """Kafka pauses the partitions and keeps polling while it retries a batch: the group
    membership holds, and a partition revoked meanwhile leaves the batch (its next owner gets
    those records)."""
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []
        attempts = 0

        def put(self, records: Sequence[SinkRecord]) -> None:
            assert self.context is not None
            type(self).attempts += 1
            if type(self).attempts <= 4:
                self.context.timeout(200)
                raise RetriableException("busy")
            super().put(records)

    task = sink_task(Task)
    consumer = await started(task, TP0, TP1)
    await until(lambda: Task.attempts >= 1, what="a first put")
    polls = len(consumer.consume_sizes)
    consumer.rebalances.append(("revoke", [TP1]))
    await until(lambda: Task.puts, what="the batch put after the retries")
    assert len(consumer.consume_sizes) > polls + 2
    assert ("close", [TP1]) in EVENTS
    assert put_offsets() == [(0, n) for n in range(5)]  # TP1's records left with it
    await task.stop()
    assert commits()[-1] == {TP0: 5}
    assert consumer.paused == set()  # resumed once the batch went through


# ---------------------------------------------------------------------------------------------
# KIP-298: retried conversions


class UnavailableConverter(StringConverter):
    """Fails on value a2 with a RetriableException (as a converter whose registry is down)."""

    attempts = 0

    def to_connect_data(self, topic: str, value: bytes | None, headers: Any = None) -> Any:
        if value == b"a2":
            type(self).attempts += 1
            raise RetriableException("the schema registry is unavailable")
        return super().to_connect_data(topic, value, headers)


@synchronously
async def test_stop_interrupts_a_retried_conversion_and_abandons_its_batch() -> None:
    UnavailableConverter.attempts = 0
    cls = recording()
    task = sink_task(cls, {"errors.retry.timeout": "-1", "errors.retry.delay.max.ms": "60000",
                           "value.converter": f"{__name__}.UnavailableConverter"})
    await started(task)
    await until(lambda: UnavailableConverter.attempts >= 2, what="conversion retries")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await task.stop()
    assert loop.time() - began < 2
    assert task.status.state != State.FAILED, task.status.trace
    assert cls.puts == []
    assert all(TP0 not in commit for commit in commits()), commits()
    assert ("stop",) in EVENTS


@synchronously
async def test_a_failing_pre_commit_rewinds_to_the_last_commit_and_the_task_goes_on() -> None:
    """Kafka's commitOffsets: preCommit (flush) failing commits nothing and rewinds the
    consumer to the last committed offsets, so the records are redelivered; the task lives."""
    class Task(RecordingTask):
        put_errors: ClassVar[list[BaseException]] = []
        puts: ClassVar[list[list[SinkRecord]]] = []
        failures = 1

        def put(self, records: Sequence[SinkRecord]) -> None:
            super().put(records)
            assert self.context is not None
            self.context.request_commit()

        def flush(self, current_offsets: Mapping[TopicPartition, int]) -> None:
            if type(self).failures:
                type(self).failures -= 1
                raise OSError("the disk is full")

    task = sink_task(Task)
    await started(task)
    await until(lambda: commits(), what="a commit after the failed one")
    assert task.status.state == State.RUNNING, task.status.trace
    assert put_offsets() == [(0, n) for n in range(5)] * 2
    assert commits() == [{TP0: 5}]
    await task.stop()
