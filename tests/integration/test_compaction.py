"""A compacted topic served by a running broker keeps the latest value per key once the
background cleaner has run, every client reads the compacted log across its offset gaps, and
records without a key are refused as Kafka refuses them."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from kafka import KafkaConsumer
from kafka import codec as kafka_codec

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    consumer,
    produce_all,
    producer,
)

KEYS = 20
ROUNDS = 15
FILLER = random.Random(7).randbytes(1500)
COMPACT = {"cleanup.policy": "compact", "segment.bytes": "2048",
           "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "600000"}


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"log.cleaner.backoff.ms": "200"}


def write_history(bootstrap: str, topic: str, compression: str) -> dict[bytes, bytes | None]:
    """ROUNDS values per key, then a tombstone for every fifth key; returns the expected view."""
    p = producer(bootstrap, compression_type=compression, linger_ms=0)
    latest: dict[bytes, bytes | None] = {}
    records: list[dict[str, Any]] = []
    for round_ in range(ROUNDS):
        for k in range(KEYS):
            key, value = f"key-{k}".encode(), f"value-{k}-{round_}".encode() * 4
            records.append({"key": key, "value": value})
            latest[key] = value
    for k in range(0, KEYS, 5):
        records.append({"key": f"key-{k}".encode(), "value": None})
        latest[f"key-{k}".encode()] = None
    delivered = produce_all(p, topic, records)
    assert not delivered.failed
    # A last write in a fresh segment, so everything before it is cleanable: incompressible, or
    # zstd would shrink it into the history's segment (when the history fits in one), leaving
    # nothing cleanable.
    filler = [{"key": b"filler", "value": FILLER}] * 3
    produce_all(p, topic, filler)
    latest[b"filler"] = FILLER
    return latest


def view(messages: list[Any]) -> list[tuple[int, bytes, bytes | None]]:
    return [(m.offset(), m.key(), m.value()) for m in messages]


def wait_compacted(bootstrap: str, topic: str, total: int) -> list[Any]:
    """Reads until the log has shrunk and two reads in a row agree (the cleaner is done)."""
    deadline = time.monotonic() + DEADLINE_S
    previous: list[Any] = []
    while True:
        messages = consume_partitions(bootstrap, topic)
        settled = len(messages) < total * 0.5 and view(messages) == view(previous)
        if settled or time.monotonic() > deadline:
            return messages
        previous = messages
        time.sleep(0.5)


@pytest.mark.parametrize("compression", ["none", "lz4", "gzip", "zstd", "snappy"])
def test_latest_value_per_key_survives(broker: EmbeddedBroker,
                                       new_topic: Callable[..., str], compression: str) -> None:
    topic = new_topic(config=COMPACT)
    expected = write_history(broker.bootstrap_servers, topic, compression)
    written = KEYS * ROUNDS + KEYS // 5 + 3
    messages = wait_compacted(broker.bootstrap_servers, topic, written)
    assert len(messages) < written * 0.5, "the cleaner never compacted the topic"
    seen: dict[bytes, bytes | None] = {}
    offsets = [m.offset() for m in messages]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    for m in messages:
        seen[m.key()] = m.value()
    # Exactly one record per key, holding its last value (tombstones kept for
    # delete.retention.ms).
    # (The filler records sit in the active segment, which is never cleaned.)
    assert seen == expected
    assert len([m for m in messages if m.key() != b"filler"]) == len(expected) - 1
    if compression == "snappy" and not kafka_codec.has_snappy():
        return  # kafka-python reads snappy only with python-snappy installed
    # kafka-python reads the same compacted view across the offset gaps (the cleaner rewrote
    # batches as streamed gzip/zstd/lz4 and xerial snappy).
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False,
                       consumer_timeout_ms=3000)
    try:
        from kafka import TopicPartition as KTP

        kc.assign([KTP(topic, 0)])
        kc.seek_to_beginning()
        python_view = [(r.offset, r.key, r.value) for r in kc]
    finally:
        kc.close()
    assert python_view == view(messages)


def test_aiokafka_reads_compacted_log(broker: EmbeddedBroker,
                                      new_topic: Callable[..., str]) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as ATP

    topic = new_topic(config=COMPACT)
    write_history(broker.bootstrap_servers, topic, "none")
    messages = wait_compacted(broker.bootstrap_servers, topic, KEYS * ROUNDS)

    async def read() -> list[tuple[int, bytes | None]]:
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers,
                             enable_auto_commit=False)
        await c.start()
        try:
            c.assign([ATP(topic, 0)])
            await c.seek_to_beginning(ATP(topic, 0))
            out: list[tuple[int, bytes | None]] = []
            end = messages[-1].offset()
            while not out or out[-1][0] < end:
                batch = await c.getmany(timeout_ms=2000)
                if not batch:
                    break
                out.extend((r.offset, r.key) for rs in batch.values() for r in rs)
            return out
        finally:
            await c.stop()

    assert asyncio.run(read()) == [(m.offset(), m.key()) for m in messages]


def test_records_without_key_are_refused(broker: EmbeddedBroker,
                                         new_topic: Callable[..., str]) -> None:
    topic = new_topic(config={"cleanup.policy": "compact"})
    delivered = produce_all(producer(broker.bootstrap_servers, retries=0), topic,
                            [{"value": b"no key"}])
    assert [err.code() for err, _ in delivered.failed] == [KafkaError.INVALID_RECORD]
    c = consumer(broker.bootstrap_servers)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    assert (low, high) == (0, 0)
