"""confluent-kafka (librdkafka) produces to and consumes from strom like from Kafka: every codec,
every acks level, headers, both timestamp types, null keys and values, size limits, keyed
partitioning, seeks, timestamp lookups, watermarks and metadata with topic auto-creation."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    ALL_ENGINES,
    DEADLINE_S,
    consume_partitions,
    consumer,
    produce_all,
    producer,
    unique_name,
)

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

# Kafka's default max.message.bytes (1 MiB + 12): the largest batch a topic accepts.
DEFAULT_MAX_MESSAGE_BYTES = 1048588


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_round_trip_with_each_codec(broker: EmbeddedBroker, topic: str, codec: str) -> None:
    p = producer(broker.bootstrap_servers, compression_type=codec, linger_ms=20)
    records = [{"key": f"key-{i}".encode(), "value": f"{codec} value {i} ".encode() * (i % 7 + 1)}
               for i in range(200)]
    delivered = produce_all(p, topic, records)

    assert not delivered.failed
    assert [m.offset() for m in delivered.acked] == list(range(200))
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [
        (i, r["key"], r["value"]) for i, r in enumerate(records)]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_each_acks_level(broker: EmbeddedBroker, topic: str, acks: str) -> None:
    p = producer(broker.bootstrap_servers, acks=acks)
    values = [f"acks={acks} #{i}".encode() for i in range(50)]
    delivered = produce_all(p, topic, [{"value": v} for v in values])

    assert not delivered.failed
    if acks == "0":
        # Kafka sends no Produce response for acks=0: the client never learns the offsets.
        assert all(m.offset() is None or m.offset() < 0 for m in delivered.acked)
    else:
        assert [m.offset() for m in delivered.acked] == list(range(50))
    got = consume_partitions(broker.bootstrap_servers, topic, expected=len(values))
    assert [(m.offset(), m.value()) for m in got] == list(enumerate(values))


def test_headers_round_trip(broker: EmbeddedBroker, topic: str) -> None:
    cases = [
        [("trace-id", b"abc123")],
        [("dup", b"first"), ("dup", b"second"), ("empty", b""), ("null", None)],
        [("binary", bytes(range(256))), ("unicode-\u00e9", "caf\u00e9".encode())],
        [],
    ]
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, [{"value": b"v", "headers": h} for h in cases])

    assert not delivered.failed
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [m.headers() or [] for m in got] == cases


def test_create_time_timestamps_kept(broker: EmbeddedBroker, topic: str) -> None:
    now_ms = int(time.time() * 1000)
    # (librdkafka reads a timestamp of 0 as "now", so the smallest one here is 1.)
    stamps = [1_000_000_000_000, now_ms - 86_400_000, now_ms, now_ms + 60_000, 1]
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, [{"value": str(t).encode(), "timestamp": t}
                                       for t in stamps])

    assert not delivered.failed
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [m.timestamp() for m in got] == [(TIMESTAMP_CREATE_TIME, t) for t in stamps]


def test_log_append_time_topic_stamps_broker_time(broker: EmbeddedBroker,
                                                  new_topic: Callable[..., str]) -> None:
    topic = new_topic(config={"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, [{"value": b"old", "timestamp": 1_000_000_000_000},
                                       {"value": b"unset"}])
    after_ms = int(time.time() * 1000)

    assert not delivered.failed
    for report in delivered.acked:
        kind, stamp = report.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before_ms - 1000 <= stamp <= after_ms + 1000
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [m.value() for m in got] == [b"old", b"unset"]
    for m in got:
        kind, stamp = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before_ms - 1000 <= stamp <= after_ms + 1000


def test_null_keys_and_null_values(broker: EmbeddedBroker, topic: str) -> None:
    records = [{"key": None, "value": b"no key"}, {"key": b"tombstone", "value": None},
               {"key": None, "value": None}, {"key": b"", "value": b""}]
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, records)

    assert not delivered.failed
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [(m.key(), m.value()) for m in got] == [
        (None, b"no key"), (b"tombstone", None), (None, None), (b"", b"")]


def test_message_near_the_size_limit_is_accepted(broker: EmbeddedBroker, topic: str) -> None:
    value = os.urandom(1_000_000)
    p = producer(broker.bootstrap_servers, message_max_bytes=DEFAULT_MAX_MESSAGE_BYTES)
    delivered = produce_all(p, topic, [{"key": b"big", "value": value}])

    assert not delivered.failed
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert len(got) == 1
    assert got[0].key() == b"big"
    assert got[0].value() == value


def test_message_above_the_broker_limit_is_refused(broker: EmbeddedBroker, topic: str) -> None:
    # The client's own limit is raised so that the broker, not librdkafka, does the refusing.
    p = producer(broker.bootstrap_servers, message_max_bytes=4_000_000, linger_ms=0)
    delivered = produce_all(p, topic, [{"value": os.urandom(DEFAULT_MAX_MESSAGE_BYTES + 1000)}])

    assert not delivered.acked
    [(err, _msg)] = delivered.failed
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    # Nothing was appended, and the same connection keeps working for smaller messages.
    after = produce_all(p, topic, [{"value": b"small"}])
    assert not after.failed
    assert [m.offset() for m in after.acked] == [0]
    got = consume_partitions(broker.bootstrap_servers, topic)
    assert [(m.offset(), m.value()) for m in got] == [(0, b"small")]


def test_topic_max_message_bytes_is_enforced(broker: EmbeddedBroker,
                                             new_topic: Callable[..., str]) -> None:
    topic = new_topic(config={"max.message.bytes": "10000"})
    p = producer(broker.bootstrap_servers, linger_ms=0)
    too_big = produce_all(p, topic, [{"value": os.urandom(12_000)}])
    fits = produce_all(p, topic, [{"value": b"f" * 9_000}])

    [(err, _msg)] = too_big.failed
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert not fits.failed
    assert [m.offset() for m in fits.acked] == [0]


def test_keys_spread_over_many_partitions(broker: EmbeddedBroker,
                                          new_topic: Callable[..., str]) -> None:
    partitions = 16
    topic = new_topic(partitions=partitions)
    records = [{"key": f"user-{i % 40}".encode(), "value": f"{i % 40}:{i // 40}".encode()}
               for i in range(400)]
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, records)

    assert not delivered.failed
    reported = {(m.partition(), m.offset()): m.value() for m in delivered.acked}
    got = consume_partitions(broker.bootstrap_servers, topic, range(partitions))
    assert {(m.partition(), m.offset()): m.value() for m in got} == reported
    assert len(got) == len(records)
    key_partitions: dict[bytes, set[int]] = defaultdict(set)
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for m in got:
        key_partitions[m.key()].add(m.partition())
        per_key[m.key()].append(int(m.value().split(b":")[1]))
    assert all(len(ps) == 1 for ps in key_partitions.values()), "a key landed in two partitions"
    assert all(seq == list(range(10)) for seq in per_key.values()), "per-key order was lost"
    assert len({p for ps in key_partitions.values() for p in ps}) > partitions // 2
    by_partition: dict[int, list[int]] = defaultdict(list)
    for m in got:
        by_partition[m.partition()].append(m.offset())
    assert all(offs == list(range(len(offs))) for offs in by_partition.values())


def _next_message(c: Consumer, deadline_s: float = DEADLINE_S) -> Message:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(err)
        return msg
    raise AssertionError("no message before the deadline")


def test_assign_at_offset_and_seek(broker: EmbeddedBroker, topic: str) -> None:
    p = producer(broker.bootstrap_servers)
    assert not produce_all(p, topic, [{"value": f"m{i}".encode()} for i in range(100)]).failed

    c = consumer(broker.bootstrap_servers)
    try:
        c.assign([TopicPartition(topic, 0, 90)])
        first = _next_message(c)
        assert (first.offset(), first.value()) == (90, b"m90")
        for target in (10, 99, 0, 57):
            c.seek(TopicPartition(topic, 0, target))
            msg = _next_message(c)
            assert (msg.offset(), msg.value()) == (target, f"m{target}".encode())
        [position] = c.position([TopicPartition(topic, 0)])
        assert position.offset == 58
    finally:
        c.close()


def test_offsets_for_times(broker: EmbeddedBroker, topic: str) -> None:
    base = int(time.time() * 1000) - 3_600_000
    p = producer(broker.bootstrap_servers, linger_ms=0)
    # One message per batch, timestamps a second apart.
    for i in range(10):
        assert not produce_all(p, topic, [{"value": f"t{i}".encode(),
                                           "timestamp": base + i * 1000}]).failed

    c = consumer(broker.bootstrap_servers)
    try:
        def lookup(ts: int) -> int:
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None
            return int(tp.offset)

        assert lookup(base - 5000) == 0
        assert lookup(base) == 0
        assert lookup(base + 1) == 1
        assert lookup(base + 5500) == 6
        assert lookup(base + 9000) == 9
        assert lookup(base + 9001) == OFFSET_END  # no record that late: -1
    finally:
        c.close()


def test_watermark_offsets(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    c = consumer(broker.bootstrap_servers)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
        p = producer(broker.bootstrap_servers)
        assert not produce_all(p, topic, [{"value": b"x", "partition": 1}] * 7).failed
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 7)
    finally:
        c.close()


def test_list_topics_auto_creates_and_describes_the_broker(broker: EmbeddedBroker) -> None:
    name = unique_name("auto")
    p = producer(broker.bootstrap_servers)
    meta = p.list_topics(topic=name, timeout=10)
    deadline = time.monotonic() + DEADLINE_S
    # Kafka may answer LEADER_NOT_AVAILABLE while an auto-created topic comes up; retry then.
    while meta.topics[name].error is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        meta = p.list_topics(topic=name, timeout=10)
    assert meta.topics[name].error is None
    assert list(meta.topics[name].partitions) == [0]  # num.partitions defaults to 1
    partition = meta.topics[name].partitions[0]
    assert partition.leader == 1
    assert partition.replicas == [1]
    assert partition.isrs == [1]

    everything = p.list_topics(timeout=10)
    assert name in everything.topics
    assert everything.cluster_id
    assert everything.controller_id == 1
    [(node, info)] = everything.brokers.items()
    assert node == 1
    assert (info.host, info.port) == ("127.0.0.1", broker.port)

    # The auto-created topic takes messages like any other.
    delivered = produce_all(p, name, [{"value": b"hello"}])
    assert [m.offset() for m in delivered.acked] == [0]
