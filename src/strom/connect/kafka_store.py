"""The distributed worker's Kafka-backed stores (confluent-kafka, blocking calls in threads).

- `KafkaLog`: one compacted topic read from the beginning by a consumer assigned all its
  partitions (no group), in a thread of its own, handing each record to a callback; a producer
  writes to it; `read_to_end()` waits until every record written before the call has been
  handed over (Kafka's KafkaBasedLog.readToEnd).
- `KafkaOffsetBackingStore`: source offsets in `offset.storage.topic`, Kafka Connect's record
  format (key `["<connector>", {partition}]`, value the offset JSON, null once reset), keys
  partitioned with murmur2 as Java's producer does, so a Java worker reads the same partition.
- `ensure_topic`: the internal topics created compacted when missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from strom.connect.offsets import OffsetBackingStore

log = logging.getLogger(__name__)

Record = tuple[str | None, Any]  # key, decoded JSON value (None: a tombstone)


def ensure_topic(client: dict[str, Any], topic: str, partitions: int, replication: int,
                 timeout: float = 30.0) -> None:
    """Create `topic` (compacted) unless it exists; replication -1: what the cluster allows
    (up to 3)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient(client)
    metadata = admin.list_topics(timeout=timeout)
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    if replication <= 0:
        replication = max(1, min(3, len(metadata.brokers)))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                  config={"cleanup.policy": "compact"})], request_timeout=timeout)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {topic}: {exc.args[0].str()}") from None


def encode(value: Any) -> bytes | None:
    return None if value is None else json.dumps(value, separators=(",", ":")).encode()


def _initialized_producer(settings: dict[str, Any], transactional_id: str, timeout: float,
                          doing: str) -> Any:
    """A producer of `transactional_id` whose transactions are initialized: the id's epoch
    bumped, the previous producer of the id fenced and its open transaction aborted."""
    from confluent_kafka import KafkaException, Producer
    producer = Producer({**settings, "transactional.id": transactional_id,
                         "enable.idempotence": True})
    try:
        producer.init_transactions(timeout)
    except KafkaException as exc:
        raise RuntimeError(f"{doing}: {exc.args[0].str()}") from None
    return producer


def fence_producers(client: dict[str, Any], transactional_ids: list[str],
                    timeout: float = 30.0) -> None:
    """Fence the producers of these transactional ids, as Kafka's Admin.fenceProducers (which
    KIP-618's leader calls before an exactly-once source connector's task configs change), so
    a zombie still holding an older epoch can neither commit nor write."""
    for transactional_id in transactional_ids:
        _initialized_producer(client, transactional_id, timeout,
                              f"fencing the producers of {transactional_id}").flush(0)


class Fenced(RuntimeError):
    """A transactional write failed because a newer producer of the same transactional id
    (the next leader's) fenced this one."""


class KafkaLog:
    """A compacted topic read whole and tailed; `deliver(records)` is called from the reader
    thread with each batch in offset order (per partition)."""

    def __init__(self, client: dict[str, Any], topic: str,
                 deliver: Callable[[list[Record]], None]) -> None:
        from confluent_kafka import Consumer, Producer
        self.client = client
        self.topic = topic
        self._deliver = deliver
        self._consumer = Consumer({**client, "group.id": f"strom-connect-log-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                                   "isolation.level": "read_committed"})
        self._producer = Producer({**client, "acks": "all", "linger.ms": 0,
                                   "enable.idempotence": True, "partitioner": "murmur2_random"})
        self._positions: dict[int, int] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"connect-log-{topic}",
                                        daemon=True)
        self.partitions: list[int] = []
        self._admin: Any = None
        self._transactional: Any = None  # the producer of `claim`, while it holds the claim

    def start(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        deadline = time.monotonic() + 30
        while True:  # a topic just created may take a moment to show its partitions
            metadata = self._consumer.list_topics(self.topic, timeout=10)
            found = metadata.topics.get(self.topic)
            if found is not None and found.error is None and found.partitions:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {self.topic} has no partitions")
            time.sleep(0.2)
        self.partitions = sorted(found.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                               for p in self.partitions])
        self._thread.start()
        self.read_to_end()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._consumer.consume(500, timeout=0.1)
                batch: list[Record] = []
                positions: dict[int, int] = {}
                for m in messages:
                    if m.error() is not None:
                        continue
                    raw_key, raw_value = m.key(), m.value()
                    key = raw_key.decode() if raw_key is not None else None
                    partition = m.partition() or 0
                    positions[partition] = (m.offset() or 0) + 1
                    try:
                        value = json.loads(raw_value) if raw_value is not None else None
                    except ValueError:  # not a tombstone: skipped
                        log.warning("%s: skipping a record that is not JSON at %d@%d",
                                    self.topic, partition, m.offset())
                        continue
                    batch.append((key, value))
                if batch:
                    self._deliver(batch)
                with contextlib.suppress(Exception):
                    for tp in self._consumer.position(
                            [self._tp(p) for p in self.partitions]):
                        if tp.offset >= 0:
                            positions[tp.partition] = max(positions.get(tp.partition, 0),
                                                          tp.offset)
                with self._cond:
                    for p, offset in positions.items():
                        self._positions[p] = max(self._positions.get(p, 0), offset)
                    self._cond.notify_all()
            except Exception:
                log.exception("reading %s", self.topic)
                self._stop.wait(0.5)

    def _tp(self, partition: int) -> Any:
        from confluent_kafka import TopicPartition
        return TopicPartition(self.topic, partition)

    def end_offsets(self) -> dict[int, int]:
        """Each partition's last stable offset: what a read_committed reader reaches (an open
        transaction, e.g. of a killed exactly-once source task, does not hold it up). Asked
        with an admin client: the reader's consumer is busy in its thread."""
        from confluent_kafka import IsolationLevel, KafkaException
        from confluent_kafka.admin import AdminClient, OffsetSpec
        if self._admin is None:
            self._admin = AdminClient(self.client)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        tps = [self._tp(p) for p in self.partitions]
        futures = self._admin.list_offsets({tp: latest for tp in tps},
                                           isolation_level=IsolationLevel.READ_COMMITTED,
                                           request_timeout=10)
        out = {}
        for tp in tps:
            try:
                out[tp.partition] = int(futures[tp].result(timeout=15).offset)
            except KafkaException as exc:
                raise RuntimeError(f"listing the offsets of {self.topic}: "
                                   f"{exc.args[0].str()}") from None
        return out

    def read_to_end(self, timeout: float = 30.0) -> None:
        """Wait until every record now in the topic has been delivered."""
        ends = self.end_offsets()
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(self._positions.get(p, 0) < end for p, end in ends.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"reading {self.topic} to its end timed out")
                self._cond.wait(min(remaining, 0.2))

    def claim(self, transactional_id: str, timeout: float = 30.0) -> None:
        """Claim the write privileges of `transactional_id` (Kafka's
        KafkaConfigBackingStore.claimWritePrivileges): a transactional producer of that id,
        initialized, which fences the previous holder's. `send(..., transactional=True)` then
        writes in its transactions until `release`, or until a newer claim fences it."""
        self.release()
        self._transactional = _initialized_producer(
            {**self.client, "acks": "all", "linger.ms": 0, "partitioner": "murmur2_random"},
            transactional_id, timeout,
            f"claiming the writes to {self.topic} as {transactional_id}")

    @property
    def claimed(self) -> bool:
        return self._transactional is not None

    def release(self) -> None:
        producer, self._transactional = self._transactional, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.flush(0)

    def _send_transactional(self, records: list[tuple[str, Any]],
                            delivered: Callable[[Any, Any], None]) -> None:
        from confluent_kafka import KafkaError, KafkaException
        producer = self._transactional
        if producer is None:
            raise Fenced(f"writing to {self.topic}: no write privileges (not claimed)")
        try:
            producer.begin_transaction()
            for key, value in records:
                producer.produce(self.topic, key=key.encode(), value=encode(value),
                                 on_delivery=delivered)
            producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            fenced = error.fatal() or error.code() in (KafkaError._FENCED,
                                                       KafkaError.PRODUCER_FENCED,
                                                       KafkaError.INVALID_PRODUCER_EPOCH)
            if fenced:
                self.release()
                raise Fenced(f"writing to {self.topic}: fenced by a newer claim "
                             f"({error.str()})") from None
            if error.txn_requires_abort():
                with contextlib.suppress(Exception):
                    producer.abort_transaction(30)
            raise RuntimeError(f"writing to {self.topic} failed: {error.str()}") from None

    def send(self, records: list[tuple[str, Any]], wait: bool = True,
             transactional: bool = False) -> None:
        """Produce the records (JSON values, None a tombstone) and wait for the acks; with
        `wait`, also until the reader has delivered them. `transactional`: in one transaction
        of the `claim`ed producer (Fenced when a newer claim took the privileges)."""
        failures: list[str] = []
        written: dict[int, int] = {}

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                written[msg.partition()] = max(written.get(msg.partition(), 0),
                                               (msg.offset() or 0) + 1)

        if transactional:
            self._send_transactional(records, delivered)
            remaining = 0
        else:
            for key, value in records:
                self._producer.produce(self.topic, key=key.encode(), value=encode(value),
                                       on_delivery=delivered)
            remaining = self._producer.flush(30)
        if failures or remaining:
            raise RuntimeError(f"writing to {self.topic} failed: {failures or 'timed out'}")
        if not wait:
            return
        deadline = time.monotonic() + 30
        with self._cond:
            while any(self._positions.get(p, 0) < end for p, end in written.items()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading back {self.topic} timed out")
                self._cond.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.release()
        with contextlib.suppress(Exception):
            self._producer.flush(5)
        with contextlib.suppress(Exception):
            self._consumer.close()


class KafkaOffsetBackingStore(OffsetBackingStore):
    """Source offsets in `offset.storage.topic`: writes produce and wait for the acks (and the
    read-back, so the reading worker sees its own writes); reads answer from what was read."""

    def __init__(self, client: dict[str, Any], topic: str) -> None:
        self._data: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self.log = KafkaLog(client, topic, self._apply)

    def _apply(self, records: list[Record]) -> None:
        with self._lock:
            for key, value in records:
                if key is None:
                    continue
                if value is None:
                    self._data.pop(key, None)
                elif isinstance(value, dict):
                    self._data[key] = value

    def start(self) -> None:
        self.log.start()

    def get(self, key: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._data.get(key)

    def set(self, values: Mapping[str, Mapping[str, Any] | None]) -> None:
        if values:
            self.log.send([(key, None if value is None else dict(value))
                           for key, value in values.items()])

    def items(self) -> list[tuple[str, Mapping[str, Any]]]:
        with self._lock:
            return list(self._data.items())

    def read_to_end(self) -> None:
        self.log.read_to_end()

    def transactional_topic(self) -> str | None:
        return self.log.topic

    def stop(self) -> None:
        self.log.stop()
