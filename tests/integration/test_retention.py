"""Retention deletes whole expired segments, oldest first, by retention.ms and by retention.bytes,
advancing the log start offset that clients see while the newest data and the active segment
stay readable and appendable."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    consumer,
    produce_all,
    producer,
)

SEGMENT_BYTES = 16384
# One record of this size makes a batch of a little over 10 KB, so two never share a 16 KiB
# segment: every batch rolls a new segment, and segment boundaries are batch boundaries.
VALUE_BYTES = 10_000
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"log.segment.bytes": str(SEGMENT_BYTES), "log.retention.check.interval.ms": "200"}


def value(label: str, i: int) -> bytes:
    head = f"{label}-{i}|".encode()
    return head + b"x" * (VALUE_BYTES - len(head))


def produce_one_per_batch(bootstrap: str, topic: str, label: str, count: int,
                          timestamp_ms: int | None = None) -> list[int]:
    """Produces `count` records one batch each (and waits for each); returns their offsets."""
    p = producer(bootstrap, linger_ms=0)
    offsets = []
    for i in range(count):
        record: dict[str, object] = {"value": value(label, i)}
        if timestamp_ms is not None:
            record["timestamp"] = timestamp_ms + i
        delivered = produce_all(p, topic, [record])
        assert not delivered.failed, delivered.failed
        offsets.append(delivered.acked[0].offset())
    return offsets


def watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        return int(low), int(high)
    finally:
        c.close()


def wait_for_log_start(bootstrap: str, topic: str, at_least: int) -> tuple[int, int]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        low, high = watermarks(bootstrap, topic)
        if low >= at_least:
            return low, high
        assert time.monotonic() < deadline, f"log start stayed at {low}, wanted {at_least}"
        time.sleep(0.1)


def assert_log_start_stays(bootstrap: str, topic: str, expected: int, for_s: float = 1.0) -> None:
    """Several retention checks (every 200 ms) later, the log start has not moved further."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        assert watermarks(bootstrap, topic)[0] == expected
        time.sleep(0.2)


def test_time_retention_deletes_expired_segments(broker: EmbeddedBroker,
                                                 new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(config={"retention.ms": str(HOUR_MS)})
    old_ts = int(time.time() * 1000) - 3 * HOUR_MS
    assert produce_one_per_batch(bootstrap, topic, "old", 8, old_ts) == list(range(8))
    assert produce_one_per_batch(bootstrap, topic, "new", 4) == list(range(8, 12))

    # Retention may run while the records are produced; the old segments go, and no more.
    low, high = wait_for_log_start(bootstrap, topic, 8)
    assert (low, high) == (8, 12)
    assert_log_start_stays(bootstrap, topic, 8)
    remaining = consume_partitions(bootstrap, topic, start=low)
    assert [(m.offset(), m.value()) for m in remaining] == [
        (8 + i, value("new", i)) for i in range(4)]
    # Reading below the log start is out of range, as in Kafka.
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while (msg := c.poll(0.2)) is None or (msg.error() is not None and msg.error().code()
                                               == KafkaError._PARTITION_EOF):
            assert time.monotonic() < deadline
        # With auto.offset.reset=error, librdkafka reports the broker's OFFSET_OUT_OF_RANGE so.
        err = msg.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "Offset out of range" in err.str()
    finally:
        c.close()
    # The active segment is still there to append to: the next offset follows on.
    delivered = produce_all(producer(bootstrap), topic, [{"value": b"later"}])
    assert [m.offset() for m in delivered.acked] == [12]


def test_size_retention_keeps_the_newest_segments(broker: EmbeddedBroker,
                                                  new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    # Each segment holds one batch of a little over VALUE_BYTES, so 3.5 batches' worth of
    # retention.bytes keeps the newest 4 segments: deleting a 5th would go below the limit.
    topic = new_topic(config={"retention.bytes": str(VALUE_BYTES * 7 // 2)})
    assert produce_one_per_batch(bootstrap, topic, "rec", 12) == list(range(12))

    low, high = wait_for_log_start(bootstrap, topic, 8)
    assert (low, high) == (8, 12)
    assert_log_start_stays(bootstrap, topic, 8)
    remaining = consume_partitions(bootstrap, topic, start=low)
    assert [(m.offset(), m.value()) for m in remaining] == [
        (8 + i, value("rec", 8 + i)) for i in range(4)]
    delivered = produce_all(producer(bootstrap), topic, [{"value": b"later"}])
    assert [m.offset() for m in delivered.acked] == [12]


def test_active_segment_is_never_deleted(broker: EmbeddedBroker,
                                         new_topic: Callable[..., str]) -> None:
    # strom deletes only rolled segments: when every record has expired, the active segment and
    # its records stay until a later append rolls it.  (Kafka would roll an empty segment and
    # delete this one too; in both, offsets keep growing and are never reused.)
    bootstrap = broker.bootstrap_servers
    topic = new_topic(config={"retention.ms": str(HOUR_MS)})
    old_ts = int(time.time() * 1000) - 3 * HOUR_MS
    produce_one_per_batch(bootstrap, topic, "old", 4, old_ts)

    assert wait_for_log_start(bootstrap, topic, 3) == (3, 4)
    assert_log_start_stays(bootstrap, topic, 3)
    remaining = consume_partitions(bootstrap, topic, start=3)
    assert [(m.offset(), m.value()) for m in remaining] == [(3, value("old", 3))]

    # An append rolls the expired segment, which the next retention check deletes.
    assert produce_one_per_batch(bootstrap, topic, "new", 1) == [4]
    assert wait_for_log_start(bootstrap, topic, 4) == (4, 5)
    remaining = consume_partitions(bootstrap, topic, start=4)
    assert [(m.offset(), m.value()) for m in remaining] == [(4, value("new", 0))]


def test_consumer_reset_to_earliest_follows_the_log_start(broker: EmbeddedBroker,
                                                          new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(config={"retention.ms": str(HOUR_MS)})
    old_ts = int(time.time() * 1000) - 2 * HOUR_MS
    produce_one_per_batch(bootstrap, topic, "old", 3, old_ts)
    produce_one_per_batch(bootstrap, topic, "new", 2)
    wait_for_log_start(bootstrap, topic, 3)

    got = consume_partitions(bootstrap, topic, start=0, auto_offset_reset="earliest")
    assert [(m.offset(), m.value()) for m in got] == [(3, value("new", 0)), (4, value("new", 1))]


def test_retention_never_deletes_unexpired_data(broker: EmbeddedBroker,
                                                new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(config={"retention.ms": str(HOUR_MS)})
    produce_one_per_batch(bootstrap, topic, "fresh", 5)
    assert_log_start_stays(bootstrap, topic, 0)
    got = consume_partitions(bootstrap, topic)
    assert [m.value() for m in got] == [value("fresh", i) for i in range(5)]
