"""kafka-python's KafkaProducer and KafkaConsumer (assign and seek, no group) round-trip keyed
records with headers across three partitions of a strom topic, compressed and uncompressed."""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from strom.testing import EmbeddedBroker
from tests.integration.conftest import ALL_ENGINES, DEADLINE_S

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

# kafka-python loads its protocol schemas with importlib.resources.read_text, which Python 3.11
# deprecates; that is kafka-python's business, not a failure of strom.
OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.filterwarnings(OPEN_TEXT_DEPRECATED)

PARTITIONS = 3
COUNT = 90


@pytest.fixture
def kafka_producer(broker: EmbeddedBroker, request: pytest.FixtureRequest,
                   ) -> Iterator[KafkaProducer]:
    # Idempotence off here; its default (on) is covered by test_idempotent_producer.py.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, client_id="it-kafka-python",
                      compression_type=getattr(request, "param", None), linger_ms=5,
                      enable_idempotence=False, acks="all", request_timeout_ms=10000)
    yield p
    p.close(timeout=5)


@pytest.fixture
def kafka_consumer(broker: EmbeddedBroker) -> Iterator[KafkaConsumer]:
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, client_id="it-kafka-python",
                      group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
                      request_timeout_ms=10000, auto_offset_reset="none")
    yield c
    c.close()


def read_until(c: KafkaConsumer, count: int) -> list:
    records: list = []
    deadline = time.monotonic() + DEADLINE_S
    while len(records) < count:
        assert time.monotonic() < deadline, f"only {len(records)} of {count} records arrived"
        for batch in c.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


@pytest.mark.parametrize("kafka_producer", [None, "gzip"], indirect=True,
                         ids=["uncompressed", "gzip"])
def test_keyed_records_with_headers_round_trip(broker: EmbeddedBroker,
                                               new_topic: Callable[..., str],
                                               kafka_producer: KafkaProducer,
                                               kafka_consumer: KafkaConsumer) -> None:
    topic = new_topic(partitions=PARTITIONS)
    sent = []
    for i in range(COUNT):
        key = f"key-{i % 12}".encode()
        value = f"value-{i}".encode() * 5
        headers = [("seq", str(i).encode()), ("origin", b"kafka-python"), ("empty", b"")]
        sent.append((key, value, headers, kafka_producer.send(topic, value=value, key=key,
                                                               headers=headers)))
    kafka_producer.flush(timeout=DEADLINE_S)
    placed = {}
    for key, value, headers, future in sent:
        meta = future.get(timeout=DEADLINE_S)
        placed[(meta.partition, meta.offset)] = (key, value, headers)
    assert len(placed) == COUNT

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    kafka_consumer.assign(tps)
    for tp in tps:
        kafka_consumer.seek(tp, 0)
    records = read_until(kafka_consumer, COUNT)

    got = {(r.partition, r.offset): (r.key, r.value, list(r.headers)) for r in records}
    assert len(records) == COUNT
    assert got == placed
    partitions_of_key = defaultdict(set)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
    assert all(len(ps) == 1 for ps in partitions_of_key.values())
    assert len({r.partition for r in records}) == PARTITIONS
    assert kafka_consumer.end_offsets(tps) == {
        tp: sum(1 for (p, _o) in placed if p == tp.partition) for tp in tps}


def test_seek_to_an_offset(broker: EmbeddedBroker, topic: str,
                           kafka_producer: KafkaProducer,
                           kafka_consumer: KafkaConsumer) -> None:
    for i in range(20):
        kafka_producer.send(topic, value=f"v{i}".encode(), key=b"k", partition=0)
    kafka_producer.flush(timeout=DEADLINE_S)

    tp = TopicPartition(topic, 0)
    kafka_consumer.assign([tp])
    kafka_consumer.seek(tp, 15)
    records = read_until(kafka_consumer, 5)
    assert [(r.offset, r.value) for r in records] == [(i, f"v{i}".encode()) for i in range(15, 20)]
    kafka_consumer.seek(tp, 3)
    [first, *_rest] = read_until(kafka_consumer, 1)
    assert (first.offset, first.value) == (3, b"v3")


def test_transactional_producer_commit_and_abort(broker: EmbeddedBroker,
                                                 new_topic: Callable[..., str]) -> None:
    """kafka-python's transactions (transaction version 1, like librdkafka): a read_committed
    consumer sees the committed transaction only, a read_uncommitted one both."""
    topic = new_topic(partitions=2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap_servers,
                      transactional_id=f"kp-{topic}", request_timeout_ms=10000)
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(4):
            p.send(topic, value=b"c%d" % i, partition=i % 2)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(4):
            p.send(topic, value=b"a%d" % i, partition=i % 2)
        p.flush()
        p.abort_transaction()
    finally:
        p.close(timeout=5)
    seen = {}
    for isolation in ("read_committed", "read_uncommitted"):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                          isolation_level=isolation, enable_auto_commit=False,
                          auto_offset_reset="earliest", consumer_timeout_ms=3000)
        try:
            c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
            seen[isolation] = sorted(m.value for m in c)
        finally:
            c.close()
    committed = [b"c0", b"c1", b"c2", b"c3"]
    assert seen["read_committed"] == committed
    assert seen["read_uncommitted"] == sorted([*committed, b"a0", b"a1", b"a2", b"a3"])
