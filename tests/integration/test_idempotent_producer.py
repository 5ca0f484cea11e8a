"""Idempotent producers against strom: InitProducerId hands out producer ids, confluent-kafka
with enable.idempotence=true and kafka-python 3 with its defaults produce without duplicates or
gaps, and at the protocol level a re-sent batch is answered with its original offset without
being appended again (also after a broker restart), an older epoch gets
INVALID_PRODUCER_EPOCH and a sequence gap OUT_OF_ORDER_SEQUENCE_NUMBER."""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import ProducerId, TransactionalId
from kio.static.primitive import i16, i32

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    ALL_ENGINES,
    DEADLINE_S,
    consume_partitions,
    create_topic,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.raw_client import RawClient
from tests.unit.batch_factory import make_batch

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def init_producer_id(client: RawClient, transactional_id: str | None = None) -> Any:
    return client.request(InitProducerIdRequest(
        transactional_id=None if transactional_id is None else TransactionalId(transactional_id),
        transaction_timeout=timedelta(seconds=60), producer_id=ProducerId(-1),
        producer_epoch=i16(-1)))


def produce(client: RawClient, topic: str, records: bytes) -> Any:
    answer = client.request(ProduceRequest(
        transactional_id=None, acks=i16(-1), timeout=timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic, partition_data=(
            PartitionProduceData(index=i32(0), records=records),)),)))
    return answer.responses[0].partition_responses[0]


def idempotent_batch(producer_id: int, epoch: int, seq: int, count: int = 3) -> bytes:
    return bytes(make_batch(count, base_timestamp=int(time.time() * 1000),
                            producer_id=producer_id, producer_epoch=epoch, base_sequence=seq))


def raw_topic(client: RawClient) -> str:
    name = unique_name("idem-raw")
    client.request(MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name=name),),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False))
    return name


def assert_one_idempotent_producer(broker: EmbeddedBroker, topic: str,
                                   partitions: int) -> None:
    """The client really produced idempotently: each partition knows its producer id."""
    for part in range(partitions):
        state = broker.server.engine.partition(topic, part).producer_state
        assert len(state) == 1

def test_init_producer_id_gives_new_ids(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        first, second = init_producer_id(client), init_producer_id(client)
        assert first.error_code == second.error_code == ErrorCode.none
        assert first.producer_epoch == second.producer_epoch == 0
        assert 0 <= first.producer_id < second.producer_id
        txn = init_producer_id(client, "a-transactional-id")
        assert txn.error_code == ErrorCode.none
        assert txn.producer_id > second.producer_id and txn.producer_epoch == 0


def test_resent_batch_is_deduplicated_epochs_and_gaps(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        topic = raw_topic(client)
        pid = int(init_producer_id(client).producer_id)
        plog = broker.server.engine.partition(topic, 0)
        first = produce(client, topic, idempotent_batch(pid, 0, 0))
        assert first.error_code == ErrorCode.none and first.base_offset == 0
        second = produce(client, topic, idempotent_batch(pid, 0, 3))
        assert second.error_code == ErrorCode.none and second.base_offset == 3
        for batch, offset in ((idempotent_batch(pid, 0, 0), 0), (idempotent_batch(pid, 0, 3), 3)):
            again = produce(client, topic, batch)
            assert (again.error_code, again.base_offset) == (ErrorCode.none, offset)
        assert broker.run(plog.offsets()).log_end == 6

        gap = produce(client, topic, idempotent_batch(pid, 0, 10))
        assert gap.error_code == ErrorCode.out_of_order_sequence_number
        assert gap.base_offset == -1
        new_epoch_gap = produce(client, topic, idempotent_batch(pid, 1, 5))
        assert new_epoch_gap.error_code == ErrorCode.out_of_order_sequence_number
        bumped = produce(client, topic, idempotent_batch(pid, 1, 0))
        assert (bumped.error_code, bumped.base_offset) == (ErrorCode.none, 6)
        fenced = produce(client, topic, idempotent_batch(pid, 0, 6))
        assert fenced.error_code == ErrorCode.invalid_producer_epoch
        bad_seq = produce(client, topic, idempotent_batch(pid, 1, -1))
        assert bad_seq.error_code == ErrorCode.invalid_record
        assert broker.run(plog.offsets()).log_end == 9


def test_deduplication_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedBroker(data_dir=tmp_path / "data") as b:
        with RawClient(b.port) as client:
            topic = raw_topic(client)
            pid = int(init_producer_id(client).producer_id)
            for i in range(4):
                answer = produce(client, topic, idempotent_batch(pid, 0, 3 * i))
                assert answer.base_offset == 3 * i
        b.restart()
        with RawClient(b.port) as client:
            again = produce(client, topic, idempotent_batch(pid, 0, 9))
            assert (again.error_code, again.base_offset) == (ErrorCode.none, 9)
            gap = produce(client, topic, idempotent_batch(pid, 0, 13))
            assert gap.error_code == ErrorCode.out_of_order_sequence_number
            assert b.server.engine.partition(topic, 0).log_end_offset == 12
            later = int(init_producer_id(client).producer_id)
            assert later > pid  # ids are never handed out twice, across restarts too


def test_confluent_kafka_idempotent_producer(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("idem-ck"), partitions=3)
    count = 10_000
    p = producer(broker.bootstrap_servers, enable_idempotence=True, linger_ms=2,
                 batch_num_messages=200, message_timeout_ms=30000)
    records = [{"value": f"{i % 3}:{i // 3}".encode(), "partition": i % 3}
               for i in range(count)]
    delivered = produce_all(p, topic, records)
    assert not delivered.failed, delivered.failed[:3]
    assert len(delivered.acked) == count
    messages = consume_partitions(broker.bootstrap_servers, topic, (0, 1, 2))
    by_partition: dict[int, list[tuple[int, bytes]]] = {0: [], 1: [], 2: []}
    for m in messages:
        by_partition[m.partition()].append((m.offset(), m.value()))
    for part, got in by_partition.items():
        expected = [(n, f"{part}:{n}".encode()) for n in range(count // 3 + (part < count % 3))]
        assert got == expected
    assert_one_idempotent_producer(broker, topic, 3)


@pytest.mark.filterwarnings(OPEN_TEXT_DEPRECATED)
def test_kafka_python_with_default_idempotence(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("idem-kp"), partitions=2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, client_id="it-idempotence",
                      linger_ms=5, request_timeout_ms=10000)
    try:
        futures = [p.send(topic, value=f"v{i}".encode(), partition=i % 2) for i in range(200)]
        p.flush(timeout=DEADLINE_S)
        metas = [f.get(timeout=DEADLINE_S) for f in futures]
    finally:
        p.close(timeout=5)
    assert sorted((m.partition, m.offset) for m in metas) == sorted(
        (part, n) for part in (0, 1) for n in range(100))
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      fetch_max_wait_ms=100, request_timeout_ms=10000)
    try:
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        got: list[Any] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 200 and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=200).values():
                got.extend(batch)
    finally:
        c.close()
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(200))
    assert_one_idempotent_producer(broker, topic, 2)


def test_pipelined_produce_requests_keep_their_order(broker: EmbeddedBroker) -> None:
    """Produce requests sent back to back on one connection (their waits for the storage
    overlap) are appended in the order sent and answered in that order; a request of another
    API among them is answered in its place."""
    with RawClient(broker.port) as client:
        pid = init_producer_id(client).producer_id
        topic = raw_topic(client)
        frames = []
        for i in range(40):
            frames.append(client.frame(ProduceRequest(
                transactional_id=None, acks=i16(-1), timeout=timedelta(seconds=5),
                topic_data=(TopicProduceData(name=topic, partition_data=(
                    PartitionProduceData(index=i32(0),
                                         records=idempotent_batch(pid, 0, 3 * i)),)),))))
            if i == 20:
                frames.append(client.frame(MetadataRequest(
                    topics=(MetadataRequestTopic(topic_id=None, name=topic),),
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=False)))
        client.send_raw(b"".join(frames))
        offsets = []
        for i in range(40):
            answer = client.read_response(0, 9)
            part = answer.responses[0].partition_responses[0]
            assert part.error_code == ErrorCode.none, part
            offsets.append(part.base_offset)
            if i == 20:
                metadata = client.read_response(3, 12)
                assert metadata.topics[0].name == topic
        assert offsets == [3 * i for i in range(40)]
