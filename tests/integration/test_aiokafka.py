"""aiokafka's AIOKafkaProducer and AIOKafkaConsumer (assign, no group) round-trip keyed records
with headers across three partitions of a strom topic with each compression codec."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import ALL_ENGINES, DEADLINE_S

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

PARTITIONS = 3
COUNT = 90

Placed = dict[tuple[int, int], tuple[bytes, bytes, list[tuple[str, bytes]]]]


async def produce(bootstrap: str, topic: str, codec: str | None) -> Placed:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                linger_ms=5, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        futures = []
        for i in range(COUNT):
            key = f"key-{i % 12}".encode()
            value = f"value-{i}".encode() * 5
            headers = [("seq", str(i).encode()), ("origin", b"aiokafka"), ("empty", b"")]
            futures.append((key, value, headers,
                            await producer.send(topic, value=value, key=key, headers=headers)))
        placed: Placed = {}
        for key, value, headers, future in futures:
            meta = await asyncio.wait_for(future, DEADLINE_S)
            placed[(meta.partition, meta.offset)] = (key, value, headers)
        return placed
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none",
                                fetch_max_wait_ms=100, request_timeout_ms=10000)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records: list = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while len(records) < count:
            assert loop.time() < deadline, f"only {len(records)} of {count} records arrived"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_keyed_records_with_headers_round_trip(broker: EmbeddedBroker,
                                               new_topic: Callable[..., str],
                                               codec: str | None) -> None:
    topic = new_topic(partitions=PARTITIONS)

    async def scenario() -> tuple[Placed, list]:
        placed = await produce(broker.bootstrap_servers, topic, codec)
        return placed, await consume(broker.bootstrap_servers, topic, COUNT)

    placed, records = asyncio.run(scenario())

    assert len(placed) == COUNT
    assert len(records) == COUNT
    got = {(r.partition, r.offset): (r.key, r.value, list(r.headers)) for r in records}
    assert got == placed
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
    assert all(len(ps) == 1 for ps in partitions_of_key.values())
    assert len({r.partition for r in records}) == PARTITIONS
    for p in range(PARTITIONS):
        offsets = sorted(o for (q, o) in placed if q == p)
        assert offsets == list(range(len(offsets)))
