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
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from strom.testing.history import (
    FinalRead,
    Isolation,
    Note,
    OffsetsCommitted,
    ProduceAcked,
    ProduceAttempted,
    ProduceUnknown,
    RecordRead,
    Transformed,
    TxnAborted,
    TxnBegun,
    TxnCommitted,
    TxnCommitUnknown,
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


class TxnWriter(Worker):
    """A transactional producer: transactions of `size` writes "<name>-<n>" round-robin over
    the partitions, every fourth one aborted, until stopped. A commit that fails retriably is
    retried; one that needs an abort is aborted; a fatal error (the outcome unknown) makes a
    new producer, whose init_transactions settles the old transaction. `commits` keeps the
    seconds each commit_transaction took and `failures` the errors seen."""

    def __init__(self, name: str, bootstrap: str, transactional_id: str, topic: str,
                 partitions: int, history: HistoryRecorder, size: int = 6) -> None:
        super().__init__(name)
        self.bootstrap, self.transactional_id = bootstrap, transactional_id
        self.topic, self.partitions, self.history, self.size = topic, partitions, history, size
        self.sent = 0
        self.transactions = 0
        self.commits: list[tuple[float, float]] = []  # (monotonic time, seconds it took)
        self.failures: list[tuple[float, str]] = []
        self._failed_sends = 0

    def _producer(self) -> Producer:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                      "socket.timeout.ms": 10000, "message.timeout.ms": 60000,
                      "transactional.id": self.transactional_id,
                      "transaction.timeout.ms": 60000})
        p.init_transactions(DEADLINE_S)
        return p

    def work(self) -> None:
        p = self._producer()
        while not self.halt.is_set():
            txn = f"{self.name}-txn{self.transactions}"
            self.transactions += 1
            p.begin_transaction()
            self.history.record(TxnBegun(producer=self.name, txn=txn))
            self._failed_sends = 0
            for _ in range(self.size):
                value, partition = f"{self.name}-{self.sent}", self.sent % self.partitions
                self.sent += 1
                self.history.record(ProduceAttempted(producer=self.name, topic=self.topic,
                                                     partition=partition, value=value,
                                                     txn=txn))
                p.produce(self.topic, value=value.encode(), partition=partition,
                          on_delivery=self._report)
            p.flush(DEADLINE_S * 2)
            commit = self.transactions % 4 != 0 and self._failed_sends == 0
            if not self._end(p, txn, commit):
                self.history.record(Note(text=f"{self.name}: a new producer after {txn}"))
                p = self._producer()
            time.sleep(0.05)

    def _end(self, p: Producer, txn: str, commit: bool) -> bool:
        """Ends the transaction; False if the producer is unusable now (fatal)."""
        for _ in range(5):
            started = time.monotonic()
            try:
                if commit:
                    p.commit_transaction(DEADLINE_S)
                    self.commits.append((time.monotonic(), time.monotonic() - started))
                    self.history.record(TxnCommitted(producer=self.name, txn=txn))
                else:
                    p.abort_transaction(DEADLINE_S)
                    self.history.record(TxnAborted(producer=self.name, txn=txn))
                return True
            except KafkaException as exc:
                err = exc.args[0]
                self.failures.append((time.monotonic(), f"{txn}: {err.name()}: {err.str()}"))
                if err.fatal():
                    if commit:
                        self.history.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                                             error=err.name()))
                    return False
                if err.txn_requires_abort():
                    commit = False
                elif not err.retriable():
                    if commit:
                        self.history.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                                             error=err.name()))
                    return False
        return False

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        value = (msg.value() or b"").decode()
        if err is None:
            self.history.record(ProduceAcked(producer=self.name, value=value,
                                             topic=msg.topic() or "",
                                             partition=msg.partition(), offset=msg.offset()))
        else:
            self._failed_sends += 1
            self.failures.append((time.monotonic(), f"delivery: {err.name()}"))
            self.history.record(ProduceUnknown(producer=self.name, value=value,
                                               error=err.name()))


# A transactional call that has not returned after this long is taken as hung:
# librdkafka's send_offsets_to_transaction can hang past its timeout when the broker that
# coordinates the group left the Metadata broker list meanwhile (its handle decommissioned),
# as a broker stopping and starting again does: confluentinc/librdkafka#5511 and #5456.
STUCK_S: Final = 10.0


class Stuck(Exception):
    """A client call did not return in time (it is left running on its thread)."""


def bounded(call: Callable[[], None], timeout_s: float = STUCK_S) -> None:
    """Runs `call` on a thread of its own; raises Stuck if it has not returned after
    `timeout_s`, and what it raised otherwise."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=run, name="bounded-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise Stuck(f"no answer after {timeout_s} s")
    if outcome[0] is not None:
        raise outcome[0]


class CtpWorker(Worker):
    """Consume-transform-produce: a read_committed group member of `source` and a
    transactional producer; each polled batch becomes one transaction of outputs
    ("<input>@<txn>", same partition, in `sink`) with the batch's offsets sent to it. A
    transaction that cannot commit is aborted and the member rewound to its committed
    offsets; a fatal error, or a call hung in librdkafka (STUCK_S), makes a new producer
    (whose init_transactions aborts the old one's transaction). `done` holds the inputs whose
    outputs committed; `stuck` counts the hung calls."""

    def __init__(self, name: str, bootstrap: str, transactional_id: str, group: str,
                 source: str, sink: str, history: HistoryRecorder) -> None:
        super().__init__(name)
        self.bootstrap, self.transactional_id = bootstrap, transactional_id
        self.source, self.sink, self.history = source, sink, history
        self.done: set[str] = set()
        self.failures: list[str] = []
        self.transactions = 0
        self.stuck = 0
        self._replace: str | None = None  # why the producer must be replaced
        self._abandoned: list[Producer] = []  # hung producers, kept alive for their threads
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100,
            "socket.timeout.ms": 10000})

    def _producer(self) -> Producer:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                      "socket.timeout.ms": 10000, "message.timeout.ms": 60000,
                      "transactional.id": self.transactional_id})
        p.init_transactions(DEADLINE_S)
        return p

    def work(self) -> None:
        c = self.consumer
        c.subscribe([self.source])
        p = self._producer()
        try:
            while not self.halt.is_set():
                batch = [m for m in c.consume(50, 0.2) if m.error() is None]
                if not batch or self._transform(p, batch):
                    continue
                self._rewind()
                if self._replace is not None:
                    self._abandoned.append(p)
                    p = self._producer()
                    if self._replace.startswith("abort "):  # init_transactions aborted it
                        self.history.record(TxnAborted(producer=self.name,
                                                       txn=self._replace[len("abort "):]))
                    self._replace = None
        finally:
            c.close()

    def _transform(self, p: Producer, batch: Sequence[Message]) -> bool:
        """One transaction for `batch`; False if it was aborted (or its outcome unknown)."""
        txn = f"{self.name}-txn{self.transactions}"
        self.transactions += 1
        try:
            p.begin_transaction()
            self.history.record(TxnBegun(producer=self.name, txn=txn))
            self._produce(p, txn, batch)
            ends: dict[int, int] = {}
            for m in batch:
                ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
            offsets = [TopicPartition(self.source, part, end) for part, end in ends.items()]
            try:
                bounded(lambda: p.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), DEADLINE_S))
            except Stuck:
                self._hung(txn, "send_offsets_to_transaction", f"abort {txn}")
                return False
            if not self._commit(p, txn):
                return False
        except KafkaException as exc:
            self._failed(p, txn, exc.args[0])
            return False
        except Stuck:
            self._hung(txn, "commit_transaction", "unknown")
            self.history.record(TxnCommitUnknown(producer=self.name, txn=txn, error="hung"))
            return False
        self.done.update((m.value() or b"").decode() for m in batch)
        return True

    def _produce(self, p: Producer, txn: str, batch: Sequence[Message]) -> None:
        for m in batch:
            value = (m.value() or b"").decode()
            output = f"{value}@{txn}"
            self.history.record(ProduceAttempted(producer=self.name, topic=self.sink,
                                                 partition=m.partition(), value=output,
                                                 txn=txn))
            self.history.record(Transformed(worker=self.name, txn=txn, input_value=value,
                                            output_value=output))
            p.produce(self.sink, value=output.encode(), partition=m.partition())

    def _hung(self, txn: str, call: str, replace: str) -> None:
        self.stuck += 1
        self.failures.append(f"{txn}: {call} hung")
        self.history.record(Note(text=f"{self.name}: {call} of {txn} hung"))
        self._replace = replace

    def _failed(self, p: Producer, txn: str, err: KafkaError) -> None:
        self.failures.append(f"{txn}: {err.name()}")
        if err.fatal():
            self.history.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                                 error=err.name()))
            self._replace = "fatal"
            return
        try:
            bounded(lambda: p.abort_transaction(DEADLINE_S))
        except (KafkaException, Stuck) as exc:
            self.failures.append(f"{txn}: abort failed: {exc}")
            self._replace = f"abort {txn}"
            return
        self.history.record(TxnAborted(producer=self.name, txn=txn))

    def _commit(self, p: Producer, txn: str) -> bool:
        """Commits, retrying retriable errors; False (recorded as unknown, the producer to be
        replaced) if they persist. Raises what needs an abort."""
        for _ in range(5):
            try:
                bounded(lambda: p.commit_transaction(DEADLINE_S))
                self.history.record(TxnCommitted(producer=self.name, txn=txn))
                return True
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                self.failures.append(f"{txn}: commit retried: {exc.args[0].name()}")
        self.history.record(TxnCommitUnknown(producer=self.name, txn=txn, error="retries"))
        self._replace = "unknown"
        return False

    def _rewind(self) -> None:
        """Back to the committed offsets: the aborted batch is read again."""
        assignment = self.consumer.assignment()
        for tp in self.consumer.committed(assignment, timeout=DEADLINE_S):
            with contextlib.suppress(KafkaException):
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))


class GroupReader(Worker):
    """A classic-protocol group member reading `topic` from the earliest offset, committing
    synchronously after each batch it polled; records what it read and every commit that was
    acknowledged. Commit errors while the group or its coordinator moves are counted."""

    def __init__(self, name: str, bootstrap: str, topic: str, group: str,
                 history: HistoryRecorder, isolation: Isolation = "read_uncommitted",
                 protocol: str = "classic") -> None:
        super().__init__(name)
        self.topic, self.group, self.history = topic, group, history
        self.isolation: Isolation = isolation
        self.commit_errors: list[str] = []
        self.events: list[tuple[float, str, tuple[int, ...]]] = []  # assign/revoke/lost
        self.read = 0
        if protocol == "classic":
            self.consumer: Consumer = group_consumer(
                bootstrap, group, session_timeout_ms=6000, client_id=name,
                isolation_level=isolation)
        else:  # KIP-848: no session or heartbeat settings on the client
            self.consumer = Consumer({
                "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol,
                "client.id": name, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                "socket.timeout.ms": 10000, "isolation.level": isolation})

    def _record(self, kind: str) -> Any:
        def callback(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self.events.append((time.monotonic(), kind,
                                tuple(sorted(tp.partition for tp in partitions))))
        return callback

    def work(self) -> None:
        c = self.consumer
        c.subscribe([self.topic], on_assign=self._record("assign"),
                    on_revoke=self._record("revoke"), on_lost=self._record("lost"))
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
                        offset=msg.offset(), value=(msg.value() or b"").decode(),
                        isolation=self.isolation))
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


def final_read(bootstrap: str, topic: str, partitions: int, history: HistoryRecorder,
               isolation: Isolation = "read_uncommitted") -> None:
    """Reads every partition from 0 to its end (the high watermark; read_committed stops at
    the last stable offset, which is the same once no transaction is open) with a fresh
    consumer, recording each record and then the final read."""
    c = consumer(bootstrap, client_id="final", isolation_level=isolation)
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        left = set(range(partitions))
        deadline = time.monotonic() + DEADLINE_S
        while left:
            assert time.monotonic() < deadline, f"final read stuck on partitions {left}"
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(msg.error())
                if msg.offset() >= ends[msg.partition()]:
                    left.discard(msg.partition())
                continue
            history.record(RecordRead(consumer="final", topic=topic,
                                      partition=msg.partition(), offset=msg.offset(),
                                      value=(msg.value() or b"").decode(),
                                      isolation=isolation))
        for p, end in ends.items():
            history.record(FinalRead(consumer="final", topic=topic, partition=p,
                                     end_offset=end, isolation=isolation))
    finally:
        c.close()


class Workload:
    """Writers and group readers over one topic, recorded in one history."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, group: str,
                 writers: int = 2, readers: int = 2, rate: float = 100.0,
                 transactional_ids: Sequence[str] = (), protocol: str = "classic") -> None:
        """With `transactional_ids`, a TxnWriter each too, and the group and the final read
        are read_committed."""
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.history = HistoryRecorder()
        self.isolation: Isolation = ("read_committed" if transactional_ids
                                     else "read_uncommitted")
        self.writers = [Writer(f"w{i}", bootstrap, topic, partitions, self.history, rate)
                        for i in range(writers)]
        self.txn_writers = [TxnWriter(f"t{i}", bootstrap, tid, topic, partitions,
                                      self.history)
                            for i, tid in enumerate(transactional_ids)]
        self.readers = [GroupReader(f"r{i}", bootstrap, topic, group, self.history,
                                    self.isolation, protocol)
                        for i in range(readers)]

    def workers(self) -> tuple[Worker, ...]:
        return (*self.readers, *self.writers, *self.txn_writers)

    def start(self) -> Workload:
        for worker in self.workers():
            worker.start()
        return self

    def note(self, text: str) -> None:
        self.history.record(Note(text=text))

    def acked(self) -> int:
        return sum(len(w.timeline.acks) for w in self.writers)

    def check_running(self) -> None:
        for worker in self.workers():
            if worker.failure is not None:
                raise AssertionError(f"{worker.name} failed") from worker.failure

    def stop_writers(self) -> None:
        for w in (*self.writers, *self.txn_writers):
            w.stop()
        for w in (*self.writers, *self.txn_writers):
            w.join_checked(DEADLINE_S * 3)

    def acked_values(self) -> set[str]:
        """The values the group must read: acknowledged outside a transaction, or written
        in a transaction that committed."""
        events = self.history.events
        committed = {e.txn for e in events if isinstance(e, TxnCommitted)}
        in_txn = {e.value: e.txn for e in events
                  if isinstance(e, ProduceAttempted) and e.txn is not None}
        return {e.value for e in events if isinstance(e, ProduceAcked)
                and (e.value not in in_txn or in_txn[e.value] in committed)}

    def group_read_values(self) -> set[str]:
        return {e.value for e in self.history.events
                if isinstance(e, RecordRead) and e.consumer != "final"}

    def group_rereads(self) -> int:
        """Records the group read more than once (after a rebalance, from the last commit)."""
        seen = Counter((e.partition, e.offset) for e in self.history.events
                       if isinstance(e, RecordRead) and e.consumer != "final")
        return sum(n - 1 for n in seen.values())

    def rebalances(self) -> list[str]:
        """Each member's assignment changes after the first assignment, in order."""
        return [f"{r.name} {kind} {parts}" for r in self.readers
                for _, kind, parts in r.events[1:]]

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
        final_read(self.bootstrap, self.topic, self.partitions, self.history,
                   self.isolation)
        return check(self.history.events)

    def close(self) -> None:
        """Teardown after a failure: stops every thread, whatever state it is in."""
        for worker in self.workers():
            worker.stop()
        for worker in self.workers():
            with contextlib.suppress(RuntimeError):
                worker.join(DEADLINE_S)


def errors_of(writers: Iterable[Writer]) -> list[str]:
    """The failed delivery reports of `writers`."""
    return [f"{w.name}: {e}" for w in writers for _, e in w.timeline.errors]
