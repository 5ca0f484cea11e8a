"""The workload's group consumers: read_committed members of one consumer group subscribed to
the workload's topic, recording every record they poll (`RecordRead`) and committing their
positions every `commit_interval_s` synchronously, recording each partition's commit the
coordinator acknowledged (`OffsetsCommitted`) and nothing of a commit whose answer was lost.

What they read feeds the aborted-read check (read_committed never sees an aborted or open
transaction's values), the duplicate and offset checks (a value at one position only), and
their commits the check that a group's offsets never go backwards. Each member commits only
partitions assigned to it, from positions it reached in the current assignment.
"""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from strom.testing.history import Note, OffsetsCommitted, RecordRead
from strom.testing.workload_outcomes import describe_error
from strom.testing.workload_worker import Worker, WorkloadContext

POLL_BATCH: Final = 500
POLL_TIMEOUT_S: Final = 0.2
CONSUMER_SETTINGS: Final[dict[str, Any]] = {
    "isolation.level": "read_committed", "enable.auto.commit": False,
    "auto.offset.reset": "earliest", "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 100,
    # A member whose worker was abandoned (stuck in a call, never polling again) leaves the
    # group after this, so that its replacement is not kept waiting in a rebalance.
    "max.poll.interval.ms": 60_000,
}


class GroupMember:
    """A consumer in a group, driven on its owner's thread (the owner's name, busy marks and
    history): subscription bookkeeping (what is assigned, the next offset reached in each
    assigned partition) and fatal errors."""

    def __init__(self, owner: Worker, *, topic: str, group: str) -> None:
        self.owner = owner
        self.topic = topic
        self.group = group
        self.consumer: Consumer | None = None
        self.fatal: KafkaError | None = None
        self.assigned: set[int] = set()
        self.positions: dict[int, int] = {}  # partition -> next offset, this assignment

    def open(self) -> Consumer:
        self.consumer = Consumer(self.owner.ctx.client_config(
            self.owner.name, **CONSUMER_SETTINGS, **{"group.id": self.group},
            error_cb=self._on_error))
        self.consumer.subscribe([self.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        return self.consumer

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() and self.fatal is None:
            self.fatal = err
            self.owner.record(Note(text=f"workload: {self.owner.name} fatal consumer error "
                                        f"{describe_error(err)}"))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {tp.partition for tp in partitions}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.discard(tp.partition)
            self.positions.pop(tp.partition, None)

    def poll(self, batch: int) -> list[Message]:
        """Up to `batch` records (errors other than fatal ones are the client's to retry)."""
        consumer = self.consumer
        assert consumer is not None
        with self.owner.busy("consume"):
            messages = consumer.consume(num_messages=batch, timeout=POLL_TIMEOUT_S)
        return [m for m in messages if m.error() is None]

    def record_read(self, msg: Message) -> RecordRead:
        """Records `msg` as read; moves the partition's position on if it is assigned."""
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        read = RecordRead(consumer=self.owner.name, topic=self.topic, partition=partition,
                          offset=offset, value=(msg.value() or b"").decode(),
                          isolation="read_committed")
        self.owner.record(read)
        self.owner.ctx.counters.add("read")
        if partition in self.assigned:
            self.positions[partition] = offset + 1
        return read

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with self.owner.busy("close consumer"):
                consumer.close()


class GroupReaderWorker(Worker):
    """A read_committed group member that reads and commits (see the module's docstring)."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, topic: str,
                 group: str, commit_interval_s: float = 1.0) -> None:
        super().__init__(ctx, slot, generation)
        self.member = GroupMember(self, topic=topic, group=group)
        self.commit_interval_s = commit_interval_s
        self.committed: dict[int, int] = {}

    def run(self) -> None:
        self.member.open()
        next_commit = time.monotonic() + self.commit_interval_s
        while self.running() and self.member.fatal is None:
            for msg in self.member.poll(POLL_BATCH):
                self.member.record_read(msg)
            if time.monotonic() >= next_commit:
                self.commit()
                next_commit = time.monotonic() + self.commit_interval_s

    def commit(self) -> None:
        m = self.member
        assert m.consumer is not None
        offsets = [TopicPartition(m.topic, p, offset) for p, offset in m.positions.items()
                   if p in m.assigned and offset > self.committed.get(p, -1)]
        if not offsets:
            return
        try:
            with self.busy("commit"):
                result = m.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException:
            return  # refused, or no answer: not recorded
        for tp in result or ():
            if tp.error is None and tp.offset >= 0:
                self.committed[tp.partition] = tp.offset
                self.record(OffsetsCommitted(group=m.group, consumer=self.name, topic=m.topic,
                                             partition=tp.partition, offset=tp.offset))

    def close(self) -> None:
        self.member.close()
