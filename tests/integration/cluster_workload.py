"""A recorded client workload for the cluster fault tests (test_cluster_moves.py): idempotent
confluent-kafka writers and a confluent-kafka consumer group, each on its own thread, record
what they attempt and observe in a `strom.testing` history; the test injects a fault (a
broker stopped, restarted, paused), stops the writers, lets the group catch up, ends with a
final read of every partition, and hands the history to the checker (docs/testing.md).

Besides the history, each writer keeps what the fault test reports: when each delivery
report came and how long each write took, and the errors its producer saw (delivery errors
and the transient ones librdkafka reports through `error_cb`)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from strom.testing.history import (
    FinalRead,
    Note,
    OffsetsCommitted,
    ProduceAcked,
    ProduceAttempted,
    ProduceUnknown,
    RecordRead,
)
from strom.testing.history_check import Report, check
from strom.testing.history_jsonl import HistoryRecorder
from tests.integration.conftest import DEADLINE_S, consumer
from tests.integration.group_clients import group_consumer


@dataclass
class Timeline:
    """What one writer saw: (monotonic time of the report, seconds since produce()) per
    acknowledged write, (monotonic time, error) per failed delivery report, and per error
    librdkafka reported through `error_cb` (transient: a broker connection lost, ...)."""

    acks: list[tuple[float, float]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    transient: list[tuple[float, str]] = field(default_factory=list)

    def longest_gap(self, since: float = 0.0) -> float:
        """The longest time between two consecutive acknowledgements, the later one after
        `since`."""
        times = sorted(t for t, _ in self.acks)
        return max((b - a for a, b in itertools.pairwise(times) if b >= since), default=0.0)

    def slowest(self, since: float = 0.0) -> float:
        return max((lat for t, lat in self.acks if t >= since), default=0.0)

    def error_window(self) -> float:
        """Seconds from the first error (of either kind) to the last (0 with at most one)."""
        times = sorted(t for t, _ in (*self.errors, *self.transient))
        return times[-1] - times[0] if times else 0.0


class Worker(threading.Thread):
    """A thread that runs `work()` until `stop()`; an exception fails `join_checked()`."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.halt = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def work(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.halt.set()

    def join_checked(self, timeout: float = DEADLINE_S) -> None:
        self.stop()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed") from self.failure


class Writer(Worker):
    """An idempotent (acks=all) producer writing "<name>-<n>" round-robin over the partitions,
    `rate` writes a second, until stopped; then it flushes what is in flight."""

    def __init__(self, name: str, bootstrap: str, topic: str, partitions: int,
                 history: HistoryRecorder, rate: float = 100.0, **extra: Any) -> None:
        super().__init__(name)
        self.topic, self.partitions, self.history, self.rate = topic, partitions, history, rate
        self.timeline = Timeline()
        self.sent = 0
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "linger.ms": 5, "socket.timeout.ms": 10000,
            "enable.idempotence": True, "acks": "all", "message.timeout.ms": 60000,
            "error_cb": self._error, **extra})

    def _error(self, err: KafkaError) -> None:
        self.timeline.transient.append((time.monotonic(), f"{err.name()}: {err.str()}"))

    def work(self) -> None:
        started = time.monotonic()
        while not self.halt.is_set():
            value = f"{self.name}-{self.sent}"
            partition = self.sent % self.partitions
            self.history.record(ProduceAttempted(producer=self.name, topic=self.topic,
                                                 partition=partition, value=value))
            sent_at = time.monotonic()
            self.producer.produce(self.topic, value=value.encode(), partition=partition,
                                  on_delivery=lambda err, msg, t=sent_at: self._report(
                                      err, msg, t))
            self.sent += 1
            self.producer.poll(0)
            pause = started + self.sent / self.rate - time.monotonic()
            if pause > 0:
                self.producer.poll(pause)
        self.producer.flush(DEADLINE_S * 2)

    def _report(self, err: KafkaError | None, msg: Message, sent_at: float) -> None:
        now = time.monotonic()
        value = (msg.value() or b"").decode()
        if err is None:
            self.timeline.acks.append((now, now - sent_at))
            self.history.record(ProduceAcked(producer=self.name, value=value,
                                             topic=msg.topic() or "",
                                             partition=msg.partition(), offset=msg.offset()))
        else:
            self.timeline.errors.append((now, f"delivery: {err.name()}"))
            self.history.record(ProduceUnknown(producer=self.name, value=value,
                                               error=err.name()))


class GroupReader(Worker):
    """A classic-protocol group member reading `topic` from the earliest offset, committing
    synchronously after each batch it polled; records what it read and every commit that was
    acknowledged. Commit errors while the group or its coordinator moves are counted."""

    def __init__(self, name: str, bootstrap: str, topic: str, group: str,
                 history: HistoryRecorder) -> None:
        super().__init__(name)
        self.topic, self.group, self.history = topic, group, history
        self.commit_errors: list[str] = []
        self.read = 0
        self.consumer: Consumer = group_consumer(bootstrap, group, session_timeout_ms=6000,
                                                 client_id=name)

    def work(self) -> None:
        c = self.consumer
        c.subscribe([self.topic])
        try:
            while not self.halt.is_set():
                batch = c.consume(100, 0.1)
                for msg in batch:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            self.commit_errors.append(f"consume: {msg.error().name()}")
                        continue
                    self.read += 1
                    self.history.record(RecordRead(
                        consumer=self.name, topic=self.topic, partition=msg.partition(),
                        offset=msg.offset(), value=(msg.value() or b"").decode()))
                if batch:
                    self._commit()
        finally:
            c.close()

    def _commit(self) -> None:
        try:
            done = self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            self.commit_errors.append(exc.args[0].name())
            return
        for tp in done or ():
            if tp.error is None and tp.offset >= 0:
                self.history.record(OffsetsCommitted(group=self.group, consumer=self.name,
                                                     topic=tp.topic, partition=tp.partition,
                                                     offset=tp.offset))


def final_read(bootstrap: str, topic: str, partitions: int, history: HistoryRecorder) -> None:
    """Reads every partition from 0 to its high watermark with a fresh consumer, recording
    each record and then the final read."""
    c = consumer(bootstrap, client_id="final")
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + DEADLINE_S
        while left:
            assert time.monotonic() < deadline, f"final read stuck on partitions {left}"
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            p = msg.partition()
            history.record(RecordRead(consumer="final", topic=topic, partition=p,
                                      offset=msg.offset(),
                                      value=(msg.value() or b"").decode()))
            if msg.offset() + 1 >= ends[p]:
                left.discard(p)
        for p, end in ends.items():
            history.record(FinalRead(consumer="final", topic=topic, partition=p,
                                     end_offset=end))
    finally:
        c.close()


class Workload:
    """Writers and group readers over one topic, recorded in one history."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, group: str,
                 writers: int = 2, readers: int = 2, rate: float = 100.0) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.history = HistoryRecorder()
        self.writers = [Writer(f"w{i}", bootstrap, topic, partitions, self.history, rate)
                        for i in range(writers)]
        self.readers = [GroupReader(f"r{i}", bootstrap, topic, group, self.history)
                        for i in range(readers)]

    def start(self) -> Workload:
        for worker in (*self.readers, *self.writers):
            worker.start()
        return self

    def note(self, text: str) -> None:
        self.history.record(Note(text=text))

    def acked(self) -> int:
        return sum(len(w.timeline.acks) for w in self.writers)

    def check_running(self) -> None:
        for worker in (*self.writers, *self.readers):
            if worker.failure is not None:
                raise AssertionError(f"{worker.name} failed") from worker.failure

    def stop_writers(self) -> None:
        for w in self.writers:
            w.join_checked(DEADLINE_S * 3)

    def acked_values(self) -> set[str]:
        return {e.value for e in self.history.events if isinstance(e, ProduceAcked)}

    def group_read_values(self) -> set[str]:
        return {e.value for e in self.history.events
                if isinstance(e, RecordRead) and e.consumer != "final"}

    def wait_group_caught_up(self) -> None:
        """Until the group has read every acknowledged write."""
        deadline = time.monotonic() + DEADLINE_S * 2
        wanted = self.acked_values()
        while not wanted <= self.group_read_values():
            self.check_running()
            missing = len(wanted - self.group_read_values())
            assert time.monotonic() < deadline, f"the group never read {missing} writes"
            time.sleep(0.2)

    def finish(self) -> Report:
        """Stops everything, reads every partition, and checks the history."""
        self.stop_writers()
        self.wait_group_caught_up()
        for r in self.readers:
            r.join_checked()
        final_read(self.bootstrap, self.topic, self.partitions, self.history)
        return check(self.history.events)

    def close(self) -> None:
        """Teardown after a failure: stops every thread, whatever state it is in."""
        for worker in (*self.writers, *self.readers):
            worker.stop()
        for worker in (*self.writers, *self.readers):
            with contextlib.suppress(RuntimeError):
                worker.join(DEADLINE_S)


def errors_of(writers: Iterable[Writer]) -> list[str]:
    """The failed delivery reports of `writers`."""
    return [f"{w.name}: {e}" for w in writers for _, e in w.timeline.errors]
