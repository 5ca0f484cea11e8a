"""The registry's Kafka I/O, with confluent-kafka (blocking calls; the server runs them in
threads): the `_schemas` topic's creation, its reader, the primary's transactional writer and
the consumer-group election.

- `ensure_topic`: `_schemas` (and the election topic) created when missing: one partition,
  cleanup.policy=compact, the replication factor the cluster allows (up to 3).
- `SchemasReader`: a consumer assigned `_schemas` partition 0 from the beginning, read_committed,
  in a thread of its own; it hands each batch of records, and its position (the next offset to
  read, control records included), to a callback.
- `SchemasWriter`: a transactional producer with a fixed transactional.id (`<group>-writer`):
  a new primary's init_transactions() fences a deposed one, whose commits then fail.
- `Election`: a consumer in the group `<group>` subscribed to the one-partition election
  topic; the member assigned partition 0 is the primary. Each member's client.id carries its
  advertised URL, so any instance learns the primary's URL from DescribeGroups.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

log = logging.getLogger("strom.registry")

RecordBatch = list[tuple[bytes | None, bytes | None, int]]  # key, value, offset


def _conf(client: dict[str, str]) -> dict[str, str | int | float | bool]:
    return dict(client)


class StoreError(Exception):
    """The Kafka store failed (Confluent's 50001)."""


class FencedError(StoreError):
    """Another instance became the primary: this one's writer is fenced."""


def ensure_topic(client: dict[str, str], topic: str, timeout: float = 30.0) -> None:
    """Create `topic` (one compacted partition) unless it exists."""
    admin = AdminClient(_conf(client))
    metadata = admin.list_topics(timeout=timeout)
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    replication = max(1, min(3, len(metadata.brokers)))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=replication,
                  config={"cleanup.policy": "compact"})],
        request_timeout=timeout)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StoreError(f"cannot create topic {topic}: {exc.args[0].str()}") from None


def check_credentials(client: dict[str, str], timeout: float = 3.0) -> bool:
    """Whether the cluster accepts the client settings' SASL credentials (a Metadata request
    after authentication)."""
    admin = AdminClient(_conf(client))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


class SchemasReader:
    """Reads `_schemas` partition 0 from the beginning and keeps tailing it."""

    def __init__(self, client: dict[str, str], topic: str,
                 deliver: Callable[[RecordBatch, int], None]) -> None:
        self._consumer = Consumer({
            **client,
            "group.id": f"strom-registry-reader-{uuid.uuid4().hex[:8]}",  # never joins
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        })
        self._admin = AdminClient(_conf(client))
        self._topic = topic
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strom-registry-reader",
                                        daemon=True)

    def start(self) -> None:
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        self._thread.start()

    def end_offset(self, timeout: float = 10.0) -> int:
        """The partition's last stable offset now (what a read_committed reader reaches)."""
        tp = TopicPartition(self._topic, 0)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets({tp: latest},
                                           isolation_level=IsolationLevel.READ_COMMITTED,
                                           request_timeout=timeout)
        try:
            return int(futures[tp].result().offset)
        except KafkaException as exc:
            raise StoreError(f"listing the offsets of {self._topic}: "
                             f"{exc.args[0].str()}") from None

    def _run(self) -> None:
        tp = [TopicPartition(self._topic, 0)]
        while not self._stop.is_set():
            try:
                # Wait for one message only, then take what else is there without waiting: a
                # write waits for its record read back here, and consume(500, timeout) would
                # hold it for the whole timeout when fewer than 500 arrive (~200 ms a write).
                messages = self._consumer.consume(1, timeout=0.2)
                if messages:
                    messages += self._consumer.consume(500, timeout=0)
                batch: RecordBatch = []
                position = -1
                for m in messages:
                    error = m.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            position = max(position, m.offset() or 0)
                        else:
                            log.warning("reading %s: %s", self._topic, error.str())
                        continue
                    offset = m.offset() or 0
                    batch.append((m.key(), m.value(), offset))
                    position = max(position, offset + 1)
                with contextlib.suppress(KafkaException):
                    current = self._consumer.position(tp)[0].offset
                    if current >= 0:
                        position = max(position, current)
                if batch or position >= 0:
                    self._deliver(batch, position)
            except Exception:
                log.exception("reading %s", self._topic)
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._consumer.close()


class SchemasWriter:
    """The primary's transactional producer to `_schemas`."""

    def __init__(self, client: dict[str, str], topic: str, transactional_id: str,
                 timeout: float = 30.0) -> None:
        self._producer = Producer({
            **client,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "transaction.timeout.ms": 60000,
            "linger.ms": 0,
        })
        self._topic = topic
        self._timeout = timeout
        self.fenced = False
        try:
            self._producer.init_transactions(timeout)  # fences the previous primary's writer
        except KafkaException as exc:
            raise StoreError(f"cannot start the writer: {exc.args[0].str()}") from None

    def write(self, records: Sequence[tuple[bytes, bytes | None]]) -> int:
        """Append the records in one transaction; the offset of the last one."""
        if self.fenced:
            raise FencedError("this instance's writer was fenced by a newer primary")
        offsets: list[int] = []
        failures: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(err.str())
            else:
                offsets.append(msg.offset() or 0)

        try:
            self._producer.begin_transaction()
            for key, value in records:
                self._producer.produce(self._topic, value=value, key=key, partition=0,
                                       on_delivery=delivered)
            self._producer.commit_transaction(self._timeout)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal() or error.code() in (KafkaError.PRODUCER_FENCED,
                                                 KafkaError._FENCED):
                self.fenced = True
                raise FencedError(f"writing to {self._topic}: {error.str()}") from None
            if error.txn_requires_abort():
                with contextlib.suppress(KafkaException):
                    self._producer.abort_transaction(self._timeout)
            raise StoreError(f"writing to {self._topic}: {error.str()}") from None
        self._producer.poll(0)
        if failures or len(offsets) != len(records):
            raise StoreError(f"writing to {self._topic}: {failures}")
        return max(offsets)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.flush(1)


@dataclass(frozen=True, slots=True)
class Member:
    """A group member: its advertised URL (its client.id) and whether it holds partition 0."""

    url: str
    primary: bool


class Election:
    """The consumer-group election: the member assigned the election topic's partition 0 is the
    primary. `on_change(role)` is called from the election thread: "primary" or "follower" on
    each assignment (and "follower" when the membership is lost), "paused" when a rebalance
    revokes the assignment."""

    def __init__(self, client: dict[str, str], topic: str, group_id: str, url: str,
                 on_change: Callable[[str], None], session_timeout_ms: int = 10000) -> None:
        self._client = client
        self._topic = topic
        self._group = group_id
        self._on_change = on_change
        self._consumer = Consumer({
            **client,
            "group.id": group_id,
            "client.id": url,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(100, session_timeout_ms // 5),
            "partition.assignment.strategy": "range",
        })
        self._admin = AdminClient(_conf(client))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strom-registry-election",
                                        daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._lost)
        self._thread.start()

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        primary = any(p.topic == self._topic and p.partition == 0 for p in partitions)
        self._on_change("primary" if primary else "follower")

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_change("paused")

    def _lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_change("follower")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consumer.poll(0.2)  # heartbeats and rebalance callbacks; no records read
            except Exception:
                log.exception("election")
                self._stop.wait(0.5)

    def members(self, timeout: float = 5.0) -> list[Member]:
        """The group's members as DescribeGroups shows them."""
        futures = self._admin.describe_consumer_groups([self._group], request_timeout=timeout)
        try:
            description = futures[self._group].result()
        except KafkaException as exc:
            raise StoreError(f"describing group {self._group}: {exc.args[0].str()}") from None
        out = []
        for m in description.members:
            parts = m.assignment.topic_partitions if m.assignment else []
            out.append(Member(m.client_id, any(p.topic == self._topic and p.partition == 0
                                               for p in parts)))
        return out

    def primary_url(self, timeout: float = 5.0) -> str | None:
        """The primary's advertised URL, None when no member holds partition 0."""
        return next((m.url for m in self.members(timeout) if m.primary), None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._consumer.close()  # leaves the group: a follower takes over at once
