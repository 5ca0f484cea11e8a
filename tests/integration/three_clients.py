"""The same producer and reader written with each client library (confluent-kafka,
kafka-python, aiokafka), for the cluster tests that check every library against strom's
brokers: each returns what it placed or read as `{(partition, offset): value}`."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tests.integration.conftest import DEADLINE_S, consumer, produce_all, producer

# kafka-python loads its protocol schemas with importlib.resources.read_text, which Python 3.11
# deprecates; that is kafka-python's business, not a failure of strom.
OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaPythonTopicPartition

Placed = dict[tuple[int, int], bytes]
LIBRARIES = ("confluent-kafka", "kafka-python", "aiokafka")


def produce(library: str, bootstrap: str, topic: str,
            records: Sequence[tuple[int, bytes]]) -> Placed:
    """Produces (partition, value) records in order with an idempotent acks=all producer of
    `library`; every one must be acknowledged."""
    if library == "confluent-kafka":
        p = producer(bootstrap, enable_idempotence=True, acks="all")
        delivered = produce_all(p, topic, [{"value": v, "partition": part}
                                           for part, v in records])
        assert not delivered.failed, delivered.failed
        return {(m.partition(), m.offset()): m.value() or b"" for m in delivered.acked}
    if library == "kafka-python":
        return kafka_python_produce(bootstrap, topic, records)
    assert library == "aiokafka", library
    return asyncio.run(aiokafka_produce(bootstrap, topic, records))


def kafka_python_produce(bootstrap: str, topic: str,
                         records: Sequence[tuple[int, bytes]]) -> Placed:
    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=5, request_timeout_ms=10000)
    try:
        futures = [(v, p.send(topic, value=v, partition=part)) for part, v in records]
        p.flush(timeout=DEADLINE_S)
        placed: Placed = {}
        for value, future in futures:
            meta = future.get(timeout=DEADLINE_S)
            placed[(meta.partition, meta.offset)] = value
        return placed
    finally:
        p.close(timeout=5)


async def aiokafka_produce(bootstrap: str, topic: str,
                           records: Sequence[tuple[int, bytes]]) -> Placed:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                         linger_ms=5, request_timeout_ms=10000)
    await p.start()
    try:
        futures = [(v, await p.send(topic, value=v, partition=part)) for part, v in records]
        placed: Placed = {}
        for value, future in futures:
            meta = await asyncio.wait_for(future, DEADLINE_S)
            placed[(meta.partition, meta.offset)] = value
        return placed
    finally:
        await p.stop()


def read(library: str, bootstrap: str, topic: str, partitions: Sequence[int], count: int,
         isolation: str = "read_uncommitted") -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of the first `count` records of the partitions from offset
    0, in the order `library`'s consumer (assign, no group) delivered them; then checks for
    half a second that nothing more arrives."""
    if library == "confluent-kafka":
        return confluent_read(bootstrap, topic, partitions, count, isolation)
    if library == "kafka-python":
        return kafka_python_read(bootstrap, topic, partitions, count, isolation)
    assert library == "aiokafka", library
    return asyncio.run(aiokafka_read(bootstrap, topic, partitions, count, isolation))


def confluent_read(bootstrap: str, topic: str, partitions: Sequence[int], count: int,
                   isolation: str) -> list[tuple[int, int, bytes]]:
    c = consumer(bootstrap, isolation_level=isolation, enable_partition_eof=False)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        got: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + DEADLINE_S
        quiet_until: float | None = None
        while quiet_until is None or time.monotonic() < quiet_until:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} records arrived"
            msg = c.poll(0.1)
            if msg is not None:
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                if err is None:
                    got.append((msg.partition(), msg.offset(), msg.value() or b""))
            if quiet_until is None and len(got) >= count:
                quiet_until = time.monotonic() + 0.5
        return got
    finally:
        c.close()


def kafka_python_read(bootstrap: str, topic: str, partitions: Sequence[int], count: int,
                      isolation: str) -> list[tuple[int, int, bytes]]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      fetch_max_wait_ms=100, request_timeout_ms=10000,
                      auto_offset_reset="earliest", isolation_level=isolation)
    try:
        c.assign([KafkaPythonTopicPartition(topic, p) for p in partitions])
        got: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + DEADLINE_S
        quiet_until: float | None = None
        while quiet_until is None or time.monotonic() < quiet_until:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} records arrived"
            for tp, batch in c.poll(timeout_ms=100).items():
                got.extend((tp.partition, r.offset, r.value) for r in batch)
            if quiet_until is None and len(got) >= count:
                quiet_until = time.monotonic() + 0.5
        return got
    finally:
        c.close()


async def aiokafka_read(bootstrap: str, topic: str, partitions: Sequence[int], count: int,
                        isolation: str) -> list[tuple[int, int, bytes]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=100, request_timeout_ms=10000,
                         auto_offset_reset="earliest", isolation_level=isolation)
    await c.start()
    try:
        c.assign([AioTopicPartition(topic, p) for p in partitions])
        got: list[tuple[int, int, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        quiet_until: float | None = None
        while quiet_until is None or loop.time() < quiet_until:
            assert loop.time() < deadline, f"only {len(got)} of {count} records arrived"
            for tp, batch in (await c.getmany(timeout_ms=100)).items():
                got.extend((tp.partition, r.offset, r.value) for r in batch)
            if quiet_until is None and len(got) >= count:
                quiet_until = loop.time() + 0.5
        return got
    finally:
        await c.stop()
