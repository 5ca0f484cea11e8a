"""Transactions on a 3-broker strom cluster with real clients: the transaction coordinator is
on one broker and the partitions written are led by all three, so the markers and the KIP-890
verifications go between brokers. confluent-kafka, kafka-python and aiokafka transactional
producers commit and abort, and read_committed consumers of the three libraries see exactly
the committed records; a consume-transform-produce loop (confluent-kafka, with
send_offsets_to_transaction to a group coordinated by yet another broker) turns every input
into exactly one output across aborted and committed transactions."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from strom.testing.postgres import PostgresServer
from tests.integration import three_clients
from tests.integration.cluster import NODES, TXN_KEY, Cluster
from tests.integration.conftest import DEADLINE_S, produce_all, producer
from tests.integration.group_clients import group_consumer
from tests.integration.three_clients import KafkaProducer

pytestmark = pytest.mark.filterwarnings(three_clients.OPEN_TEXT_DEPRECATED)

PARTITIONS = 6
Records = list[tuple[int, bytes]]  # (partition, value)


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    with Cluster(postgres_server.new_database()) as running:
        running.wait_whole()
        running.ensure_txn_topic()
        yield running


def batch(tag: str) -> Records:
    return [(i % PARTITIONS, f"{tag}-{i}".encode()) for i in range(2 * PARTITIONS)]


def by_partition(records: Sequence[tuple[int, bytes]]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for p, v in records:
        out[p].append(v)
    return out


def read_values(library: str, bootstrap: str, topic: str, count: int,
                isolation: str) -> dict[int, list[bytes]]:
    got = three_clients.read(library, bootstrap, topic, range(PARTITIONS), count, isolation)
    assert len(got) == count, f"{library} ({isolation}) read {len(got)} records, not {count}"
    return by_partition([(p, v) for p, _, v in sorted(got)])


# -- the producers of each library: commit, abort, commit ---------------------------------------


def confluent_transactions(bootstrap: str, tid: str, topic: str,
                           batches: Sequence[tuple[Records, bool]]) -> None:
    p = producer(bootstrap, transactional_id=tid)
    p.init_transactions(DEADLINE_S)
    for records, commit in batches:
        p.begin_transaction()
        delivered = produce_all(p, topic, [{"value": v, "partition": part}
                                           for part, v in records])
        assert not delivered.failed and len(delivered.acked) == len(records)
        if commit:
            p.commit_transaction(DEADLINE_S)
        else:
            p.abort_transaction(DEADLINE_S)


def kafka_python_transactions(bootstrap: str, tid: str, topic: str,
                              batches: Sequence[tuple[Records, bool]]) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid,
                      request_timeout_ms=10000)
    try:
        p.init_transactions()
        for records, commit in batches:
            p.begin_transaction()
            futures = [p.send(topic, value=v, partition=part) for part, v in records]
            p.flush(timeout=DEADLINE_S)
            for future in futures:
                future.get(timeout=DEADLINE_S)  # in the log before the end of the txn
            if commit:
                p.commit_transaction()
            else:
                p.abort_transaction()
    finally:
        p.close(timeout=5)


async def aiokafka_transactions(bootstrap: str, tid: str, topic: str,
                                batches: Sequence[tuple[Records, bool]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid,
                         enable_idempotence=True, request_timeout_ms=10000)
    await p.start()
    try:
        for records, commit in batches:
            await p.begin_transaction()
            futures = [await p.send(topic, value=v, partition=part) for part, v in records]
            await asyncio.wait_for(asyncio.gather(*futures), DEADLINE_S)
            if commit:
                await p.commit_transaction()
            else:
                await p.abort_transaction()
    finally:
        await p.stop()


def run_transactions(library: str, bootstrap: str, tid: str, topic: str,
                     batches: Sequence[tuple[Records, bool]]) -> None:
    if library == "confluent-kafka":
        confluent_transactions(bootstrap, tid, topic, batches)
    elif library == "kafka-python":
        kafka_python_transactions(bootstrap, tid, topic, batches)
    else:
        asyncio.run(aiokafka_transactions(bootstrap, tid, topic, batches))


@pytest.mark.parametrize("library", three_clients.LIBRARIES)
def test_commit_and_abort_across_brokers(cluster: Cluster, library: str) -> None:
    """A transactional producer bootstrapped from node 3, its coordinator on node 2, writes
    a committed, an aborted and a committed transaction to 6 partitions led by the three
    brokers; read_committed consumers of all three libraries see the two
    committed ones in order, read_uncommitted ones all three."""
    topic = cluster.spread_topic("cl-txn")
    tid = cluster.key_on(f"cl-txn-{library}", 2, TXN_KEY)
    first, dropped, second = batch("commit-1"), batch("abort"), batch("commit-2")
    run_transactions(library, cluster.address(3), tid, topic,
                     [(first, True), (dropped, False), (second, True)])
    committed = by_partition(first + second)
    everything = by_partition(first + dropped + second)
    for node, reader in zip(NODES, three_clients.LIBRARIES, strict=True):
        bootstrap = cluster.address(node)
        assert read_values(reader, bootstrap, topic, len(first) * 2,
                           "read_committed") == committed, reader
    assert read_values("confluent-kafka", cluster.address(1), topic, len(first) * 3,
                       "read_uncommitted") == everything


# -- consume-transform-produce ----------------------------------------------------------------


class Transformer:
    """One confluent-kafka consumer (read_committed, group `group`) and one transactional
    producer: each batch of inputs becomes one transaction of outputs (value "out-" + input,
    same partition) with the consumer's offsets sent to it; every `abort_every`-th
    transaction is aborted and the consumer rewound to its committed offsets."""

    def __init__(self, cluster: Cluster, group: str, tid: str, source: str,
                 sink: str) -> None:
        self.consumer: Consumer = group_consumer(
            cluster.address(1), group, isolation_level="read_committed",
            session_timeout_ms=6000)
        self.producer: Producer = producer(cluster.address(3), transactional_id=tid)
        self.producer.init_transactions(DEADLINE_S)
        self.source, self.sink = source, sink
        self.transactions: Counter[str] = Counter()

    def close(self) -> None:
        self.consumer.close()

    def poll_batch(self, size: int) -> list[Message]:
        batch: list[Message] = []
        deadline = time.monotonic() + 0.5
        while len(batch) < size and time.monotonic() < deadline:
            msg = self.consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            batch.append(msg)
        return batch

    def transaction(self, inputs: Sequence[Message], commit: bool) -> None:
        p = self.producer
        p.begin_transaction()
        delivered = produce_all(p, self.sink, [
            {"value": b"out-" + (m.value() or b""), "partition": m.partition()}
            for m in inputs])
        assert not delivered.failed
        assignment = self.consumer.assignment()
        p.send_offsets_to_transaction(self.consumer.position(assignment),
                                      self.consumer.consumer_group_metadata(), DEADLINE_S)
        if commit:
            p.commit_transaction(DEADLINE_S)
            self.transactions["committed"] += 1
            return
        p.abort_transaction(DEADLINE_S)
        self.transactions["aborted"] += 1
        for tp in self.consumer.committed(assignment, timeout=DEADLINE_S):
            self.consumer.seek(TopicPartition(tp.topic, tp.partition,
                                              max(tp.offset, 0)))


def test_consume_transform_produce_across_brokers(cluster: Cluster) -> None:
    """Inputs on 6 partitions led by the three brokers, outputs likewise, the transaction
    coordinator on node 2 and the group's coordinator on node 3: 60 inputs through batches of
    8, every third transaction aborted and redone, give exactly one committed output each,
    and the group's committed offsets are the inputs' ends."""
    source, sink = cluster.spread_topic("cl-ctp-in"), cluster.spread_topic("cl-ctp-out")
    tid = cluster.key_on("cl-ctp", 2, TXN_KEY)
    group = cluster.key_on("cl-ctp", 3)
    inputs = [(i % PARTITIONS, f"v{i}".encode()) for i in range(60)]
    delivered = produce_all(producer(cluster.address(2), enable_idempotence=True), source,
                            [{"value": v, "partition": p} for p, v in inputs])
    assert len(delivered.acked) == len(inputs)

    worker = Transformer(cluster, group, tid, source, sink)
    try:
        worker.consumer.subscribe([source])
        done: Counter[bytes] = Counter()
        deadline = time.monotonic() + 3 * DEADLINE_S
        n = 0
        while len(done) < len(inputs):
            assert time.monotonic() < deadline, f"{len(done)} of {len(inputs)} transformed"
            batch_ = worker.poll_batch(8)
            if not batch_:
                continue
            n += 1
            commit = n % 3 != 0
            worker.transaction(batch_, commit)
            if commit:
                done.update(m.value() or b"" for m in batch_)
        assert max(done.values()) == 1, done.most_common(3)
    finally:
        worker.close()
    assert worker.transactions["aborted"] >= 2, worker.transactions

    outputs = three_clients.read("confluent-kafka", cluster.address(2), sink,
                                 range(PARTITIONS), len(inputs), "read_committed")
    assert sorted(v for _, _, v in outputs) == sorted(b"out-" + v for _, v in inputs)
    for p in range(PARTITIONS):
        assert [v for part, _, v in outputs if part == p] == [
            b"out-" + v for part, v in inputs if part == p], p
    c = Consumer({"bootstrap.servers": cluster.address(3), "group.id": group})
    try:
        committed = c.committed([TopicPartition(source, p) for p in range(PARTITIONS)],
                                timeout=DEADLINE_S)
    finally:
        c.close()
    assert {tp.partition: tp.offset for tp in committed} == dict.fromkeys(range(PARTITIONS),
                                                                         10)

