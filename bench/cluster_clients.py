"""The clients of the cluster benchmark (bench/cluster_bench.py): a steady idempotent
producer whose every delivery report is timed, a consumer group whose every fetched record
is timed, and a read-back that checks what the producer had acknowledged.

They run in threads of the benchmark's process; the benchmark itself kills and restarts
brokers and reads the figures off these objects. librdkafka's own log lines (a broker went
away, a connection was refused) go to a file, not to the progress output.
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

CLIENT_LOG = logging.getLogger("cluster_bench.librdkafka")
SEQ = struct.Struct(">q")  # every value starts with the record's sequence number
DELIVERY_TIMEOUT_MS = 120_000  # librdkafka retries a record this long (idempotent: in order)
POLL_S = 0.1  # a group member's consume() timeout


def log_clients_to(path: Path) -> None:
    """Send librdkafka's log lines (every client has `logger`) to `path`."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    CLIENT_LOG.addHandler(handler)
    CLIENT_LOG.setLevel(logging.DEBUG)
    CLIENT_LOG.propagate = False


def longest_gap(times: list[float]) -> float:
    """The longest time between consecutive points of a sorted list."""
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


# --------------------------------------------------------------------------- producer


@dataclass
class Ack:
    """One successful delivery report."""

    seq: int
    partition: int
    offset: int
    acked_at: float  # perf_counter()


class SteadyProducer:
    """An idempotent acks=all producer sending `rate` records/s in a thread, round robin over
    the partitions (the partition of record seq is seq % partitions), until stopped.

    Every delivery report is kept (`acks`, `failures`). After `mark(t)`, the first delivery
    to each partition of a record *sent* after t is noted in `first_after`: an earlier record
    may still be answered by the broker that was just killed (its answer already on the way),
    a later one cannot, and with idempotence a partition's records are delivered in order,
    so this is when the partition took writes again.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int,
                 size: int) -> None:
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.pad = b"x" * max(0, size - SEQ.size)
        self.acks: list[Ack] = []
        self.failures: list[tuple[int, str]] = []
        self.client_errors: list[str] = []
        self.sent_at: list[float] = []
        self.acked_end: dict[int, int] = {}  # partition -> last acknowledged offset + 1
        self.mark_at: float | None = None
        self.first_after: dict[int, float] = {}
        self._stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "on_delivery": self._on_delivery, "error_cb": self._on_error,
            "logger": CLIENT_LOG})
        self._thread = threading.Thread(target=self._send, name=f"producer-{topic}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        seq = SEQ.unpack_from(msg.value())[0]
        if err is not None:
            self.failures.append((seq, str(err)))
            return
        now = time.perf_counter()
        partition, offset = msg.partition(), msg.offset()
        self.acks.append(Ack(seq, partition, offset, now))
        self.acked_end[partition] = max(self.acked_end.get(partition, 0), offset + 1)
        mark = self.mark_at
        if mark is not None and self.sent_at[seq] > mark and partition not in self.first_after:
            self.first_after[partition] = now

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            self.client_errors.append(str(err))

    def _send(self) -> None:
        begin = time.perf_counter()
        seq = 0
        while not self._stop.is_set():
            delay = begin + seq / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(min(delay, 0.05))
                continue
            self.sent_at.append(time.perf_counter())
            while not self._stop.is_set():
                try:
                    self.producer.produce(self.topic, SEQ.pack(seq) + self.pad,
                                          partition=seq % self.partitions)
                    break
                except BufferError:
                    self.producer.poll(0.005)
            seq += 1
            self.producer.poll(0)

    def mark(self, at: float) -> None:
        self.mark_at = at

    def stop(self, flush_limit_s: float) -> int:
        """Stop sending, wait up to flush_limit_s for the delivery reports; returns how many
        records were still unacknowledged (then purged, so the producer can be dropped)."""
        self._stop.set()
        self._thread.join(5.0)
        left = int(self.producer.flush(flush_limit_s))
        if left:
            self.producer.purge()
            self.producer.poll(0.5)
        return left

    @property
    def sent(self) -> int:
        return len(self.sent_at)

    def caught_up(self) -> bool:
        """Every partition has acknowledged records."""
        return len(self.acked_end) == self.partitions

    def longest_ack_gap(self, since: float, partitions: set[int], until: float) -> float:
        """The longest time, over `partitions`, between consecutive delivery reports in
        [since, until] (the bounds count as reports): how long they went without a write."""
        times: dict[int, list[float]] = defaultdict(list)
        for ack in self.acks:
            if ack.partition in partitions and since <= ack.acked_at <= until:
                times[ack.partition].append(ack.acked_at)
        longest = 0.0
        for partition in partitions:
            longest = max(longest, longest_gap([since, *times[partition], until]))
        return longest


# --------------------------------------------------------------------------- read back


@dataclass
class Verdict:
    """What a read-back of the topic found against the producer's delivery reports."""

    acknowledged: int
    read: int
    missing: int  # acknowledged, not found
    duplicated: int  # sequence numbers found more than once
    misplaced: int  # found elsewhere than the (partition, offset) acknowledged
    unacknowledged_present: int  # found, never acknowledged (failed or purged deliveries)
    complete: bool  # every partition was read up to its high watermark in time
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.complete and not (self.missing or self.duplicated or self.misplaced)


def read_all(bootstrap: str, topic: str, partitions: int, limit_s: float
             ) -> tuple[dict[int, list[tuple[int, int]]], bool]:
    """Every record of the topic: partition -> [(offset, seq)], and whether every partition
    was read to the high watermark it had when the read began."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cluster-bench-verify",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "logger": CLIENT_LOG})
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    deadline = time.perf_counter() + limit_s
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        done = {p for p, end in ends.items() if end == 0}
        while len(done) < partitions and time.perf_counter() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is not None:
                    continue
                partition, offset = msg.partition(), msg.offset()
                found[partition].append((offset, SEQ.unpack_from(msg.value())[0]))
                if offset + 1 >= ends[partition]:
                    done.add(partition)
    finally:
        consumer.close()
    return found, len(done) == partitions


def verify(bootstrap: str, producer: SteadyProducer, limit_s: float) -> Verdict:
    """Read the topic back and compare it with the acknowledged records."""
    found, complete = read_all(bootstrap, producer.topic, producer.partitions, limit_s)
    where: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for partition, records in found.items():
        for offset, seq in records:
            where[seq].append((partition, offset))
    acked = {ack.seq: (ack.partition, ack.offset) for ack in producer.acks}
    missing = [seq for seq in acked if seq not in where]
    duplicated = [seq for seq, places in where.items() if len(places) > 1]
    misplaced = [seq for seq, place in acked.items()
                 if seq in where and where[seq][0] != place]
    examples = ([f"seq {s} acknowledged at {acked[s]} not found" for s in missing[:3]]
                + [f"seq {s} found at {where[s]}" for s in duplicated[:3]]
                + [f"seq {s} acknowledged at {acked[s]}, found at {where[s]}"
                   for s in misplaced[:3]])
    return Verdict(len(acked), sum(len(r) for r in found.values()), len(missing),
                   len(duplicated), len(misplaced), len(set(where) - set(acked)), complete,
                   examples)


# --------------------------------------------------------------------------- group


class GroupWatch:
    """What the members of one group consumed, and when (shared by the member threads).

    After `mark(first_seq)` (at the kill), `recovered[p]` is the first time partition p gave
    the group a record with sequence number >= first_seq: one the producer sent after the
    kill, so past the partition's end offset at the kill (a partition's records are stored
    in the order sent). Offsets alone cannot tell: the consumers may already hold records
    the producer has not yet seen acknowledged, and a fetch answered by the killed broker
    just before it died may still arrive after the kill."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.offsets: dict[int, list[int]] = defaultdict(list)
        self.progress: dict[int, list[tuple[float, int]]] = defaultdict(list)
        self.owned: dict[int, set[int]] = defaultdict(set)
        self.events: list[tuple[float, int, str, int]] = []  # (time, member, kind, count)
        self.errors: list[str] = []
        self.first_seq: int | None = None
        self.recovered: dict[int, float] = {}
        self.lock = threading.Lock()

    def consumed(self, partition: int, records: list[tuple[int, int]], now: float) -> None:
        """Records (offset, seq) of one partition, consumed at `now`."""
        with self.lock:
            self.offsets[partition].extend(offset for offset, _ in records)
            self.progress[partition].append((now, max(offset for offset, _ in records)))
            if (self.first_seq is not None and partition not in self.recovered
                    and max(seq for _, seq in records) >= self.first_seq):
                self.recovered[partition] = now

    def rebalanced(self, member: int, kind: str, partitions: list[int]) -> None:
        with self.lock:
            self.events.append((time.perf_counter(), member, kind, len(partitions)))
            if kind == "assign":
                self.owned[member].update(partitions)
            else:
                self.owned[member].difference_update(partitions)

    def spread(self, members: int) -> bool:
        """Each of `members` members owns a partition, and each partition one member: a
        KIP-848 group hands the first member everything, the others theirs a heartbeat or
        two later."""
        with self.lock:
            owned = [self.owned[m] for m in range(members)]
            return (all(owned) and sum(map(len, owned)) == self.partitions
                    and set().union(*owned) == set(range(self.partitions)))

    def mark(self, first_seq: int) -> None:
        with self.lock:
            self.first_seq = first_seq

    def caught_up(self, ends: dict[int, int]) -> bool:
        """Every partition consumed up to (at least) these end offsets - 1."""
        with self.lock:
            return all(self.progress[p] and self.progress[p][-1][1] + 1 >= end
                       for p, end in ends.items())

    def longest_stall(self, since: float, until: float) -> float:
        """The longest time any partition went without a consumed record in [since, until]."""
        with self.lock:
            longest = 0.0
            for partition in range(self.partitions):
                times = [t for t, _ in self.progress[partition] if since <= t <= until]
                longest = max(longest, longest_gap([since, *times, until]))
            return longest

    def holes_and_repeats(self) -> tuple[int, int]:
        """Offsets between a partition's first and last consumed one that no member consumed
        (lost to the group), and records consumed more than once (at-least-once repeats)."""
        with self.lock:
            holes = repeats = 0
            for offsets in self.offsets.values():
                counts = Counter(offsets)
                repeats += sum(n - 1 for n in counts.values())
                holes += (max(counts) - min(counts) + 1) - len(counts)
            return holes, repeats


class GroupMember:
    """One consumer of the group, polling in its own thread until stopped."""

    def __init__(self, index: int, config: dict[str, Any], topic: str,
                 watch: GroupWatch) -> None:
        self.index, self.config, self.topic, self.watch = index, config, topic, watch
        self._stop = threading.Event()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        consumer = Consumer(self.config | {"logger": CLIENT_LOG})
        watch, index = self.watch, self.index

        def on_assign(_c: Any, tps: list[TopicPartition]) -> None:
            watch.rebalanced(index, "assign", [tp.partition for tp in tps])

        def on_revoke(_c: Any, tps: list[TopicPartition]) -> None:
            watch.rebalanced(index, "revoke", [tp.partition for tp in tps])

        def on_lost(_c: Any, tps: list[TopicPartition]) -> None:
            watch.rebalanced(index, "lost", [tp.partition for tp in tps])

        try:
            consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke,
                               on_lost=on_lost)
            while not self._stop.is_set():
                self._poll(consumer)
        except Exception as exc:  # the figure fails, the run goes on
            watch.errors.append(f"member {index}: {type(exc).__name__}: {exc}")
        finally:
            consumer.close()
            self.closed.set()

    def _poll(self, consumer: Consumer) -> None:
        batch = consumer.consume(500, POLL_S)
        now = time.perf_counter()
        by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for msg in batch:
            err = msg.error()
            if err is None:
                by_partition[msg.partition()].append((msg.offset(),
                                                      SEQ.unpack_from(msg.value())[0]))
            elif err.code() != KafkaError._PARTITION_EOF:
                self.watch.errors.append(f"member {self.index}: {err}")
        for partition, records in by_partition.items():
            self.watch.consumed(partition, records, now)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        """True once the member's consumer is closed."""
        return self.closed.wait(timeout_s)
