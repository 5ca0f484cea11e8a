"""Real-client workflows (confluent-kafka): the liveness oracle runs them against the broker and
the recorder runs them through its proxy. Each raises CheckFailed with what went wrong, and
every wait is bounded by a deadline.
"""

from __future__ import annotations

import time
from typing import Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

QUIET: Final = {"log_level": 3}  # librdkafka: errors only
RECORDS: Final = 5


class CheckFailed(Exception):
    """A liveness or state check did not hold."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise CheckFailed(f"deadline passed: {what}")


def _conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000, **QUIET}
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(_conf(bootstrap))


def produce(bootstrap: str, topic: str, count: int, deadline: Deadline,
            common: dict[str, Any] | None = None, **extra: Any) -> None:
    """`count` records (values v0..) to partition 0, all acknowledged. `common`: settings of
    every client of the workflow (security)."""
    producer = Producer(_conf(bootstrap, linger_ms=5, message_timeout_ms=15000,
                              **(common or {}), **extra))
    failed: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(str(err))

    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), key=b"k", partition=0,
                         on_delivery=report)
    left = producer.flush(max(deadline.left(), 0.1))
    if left or failed:
        raise CheckFailed(f"produce to {topic}: {left} unacknowledged, errors {failed[:3]}")


def create_topic(client: AdminClient, topic: str, partitions: int, deadline: Deadline) -> None:
    futures = client.create_topics([NewTopic(topic, num_partitions=partitions,
                                             replication_factor=1)], request_timeout=10)
    try:
        futures[topic].result(timeout=max(deadline.left(), 0.1))
    except KafkaException as exc:
        raise CheckFailed(f"create topic {topic}: {exc}") from None
    wait_partitions(client, topic, partitions, deadline)


def wait_partitions(client: AdminClient, topic: str, partitions: int | None,
                    deadline: Deadline) -> None:
    """Until Metadata shows `topic` with `partitions` partitions (None: until it is gone)."""
    while True:
        meta = client.list_topics(topic=None if partitions is None else topic, timeout=5)
        found = meta.topics.get(topic)
        if partitions is None and found is None:
            return
        if (partitions is not None and found is not None and found.error is None
                and len(found.partitions) == partitions):
            return
        shown = None if found is None else (len(found.partitions), str(found.error))
        deadline.check(f"metadata of {topic}: want {partitions} partitions, shows {shown}")
        time.sleep(0.1)


def consume(consumer: Consumer, count: int, deadline: Deadline, what: str) -> list[bytes]:
    values: list[bytes] = []
    while len(values) < count:
        deadline.check(f"{what}: read {len(values)} of {count}")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise CheckFailed(f"{what}: {msg.error()}")
        values.append(msg.value() or b"")
    return values


def group_consumer(bootstrap: str, group: str, **extra: Any) -> Consumer:
    return Consumer(_conf(bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=10000,
                          heartbeat_interval_ms=500, fetch_wait_max_ms=100, **extra))


def group_round_trip(bootstrap: str, topic: str, group: str, deadline: Deadline,
                     common: dict[str, Any] | None = None, **producer_extra: Any) -> None:
    """A group member (subscribe) reads what a producer wrote and commits; a second member of
    the group then sees the committed offset."""
    produce(bootstrap, topic, RECORDS, deadline, common, **producer_extra)
    consumer = group_consumer(bootstrap, group, **(common or {}))
    try:
        consumer.subscribe([topic])
        values = consume(consumer, RECORDS, deadline, f"group {group} on {topic}")
        if values != [f"v{i}".encode() for i in range(RECORDS)]:
            raise CheckFailed(f"group {group} read {values}")
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        raise CheckFailed(f"group {group}: {exc}") from None
    finally:
        consumer.close()
    check_committed(bootstrap, group, topic, RECORDS, deadline, common)


def check_committed(bootstrap: str, group: str, topic: str, offset: int,
                    deadline: Deadline, common: dict[str, Any] | None = None) -> None:
    consumer = group_consumer(bootstrap, group, **(common or {}))
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=max(deadline.left(), 1))
        if tp.error is not None or tp.offset != offset:
            raise CheckFailed(f"group {group} committed {tp.offset} ({tp.error}), not {offset}")
    except KafkaException as exc:
        raise CheckFailed(f"committed offsets of {group}: {exc}") from None
    finally:
        consumer.close()


def txn_round_trip(bootstrap: str, topic: str, source: str, group: str, txn_id: str,
                   deadline: Deadline) -> None:
    """A transactional producer writes and commits offsets in one transaction; a read_committed
    consumer sees the records and the group sees the offset."""
    producer = Producer(_conf(bootstrap, transactional_id=txn_id, linger_ms=5,
                              transaction_timeout_ms=30000, message_timeout_ms=20000))
    meta_consumer = group_consumer(bootstrap, group)
    try:
        producer.init_transactions(max(deadline.left(), 1))
        producer.begin_transaction()
        for i in range(RECORDS):
            producer.produce(topic, value=f"t{i}".encode(), partition=0)
        producer.send_offsets_to_transaction(
            [TopicPartition(source, 0, RECORDS)], meta_consumer.consumer_group_metadata(),
            max(deadline.left(), 1))
        producer.commit_transaction(max(deadline.left(), 1))
    except KafkaException as exc:
        raise CheckFailed(f"transaction {txn_id}: {exc}") from None
    finally:
        meta_consumer.close()
    reader = Consumer(_conf(bootstrap, group_id=group + "-reader", enable_auto_commit=False,
                            isolation_level="read_committed", fetch_wait_max_ms=100))
    try:
        reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values = consume(reader, RECORDS, deadline, f"read_committed {topic}")
        if values != [f"t{i}".encode() for i in range(RECORDS)]:
            raise CheckFailed(f"read_committed {topic} read {values}")
    finally:
        reader.close()
    check_committed(bootstrap, group, source, RECORDS, deadline)


def admin_round_trip(bootstrap: str, topic: str, deadline: Deadline) -> None:
    """Create a topic, describe its configs, grow it to 3 partitions, delete it."""
    client = admin(bootstrap)
    create_topic(client, topic, 1, deadline)
    try:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = client.describe_configs([resource])[resource].result(timeout=10)
        if configs.get("cleanup.policy") is None:
            raise CheckFailed(f"describe configs of {topic}: no cleanup.policy")
        client.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=10)
        wait_partitions(client, topic, 3, deadline)
        client.delete_topics([topic], request_timeout=10)[topic].result(timeout=10)
    except KafkaException as exc:
        raise CheckFailed(f"admin calls on {topic}: {exc}") from None
    wait_partitions(client, topic, None, deadline)
