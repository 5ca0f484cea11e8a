"""DescribeProducers (KIP-664) against strom: after confluent-kafka produces idempotently to a
two-partition topic each partition lists exactly that producer, with the last sequence and a
timestamp of its last batch; a plain producer's partition lists none; an unknown topic or
partition gets UNKNOWN_TOPIC_OR_PARTITION."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from kio.schema.describe_producers.v0.request import DescribeProducersRequest, TopicRequest
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i32

from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, produce_all, producer, unique_name
from tests.integration.raw_client import RawClient

RECORDS_PER_PARTITION = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=tmp_path_factory.mktemp("describe-producers")) as running:
        yield running


def describe(port: int, topics: dict[str, tuple[int, ...]]) -> Any:
    with RawClient(port) as client:
        return client.request(DescribeProducersRequest(topics=tuple(
            TopicRequest(name=TopicName(name), partition_indexes=tuple(i32(p) for p in parts))
            for name, parts in topics.items())))


def partitions_of(response: Any) -> dict[tuple[str, int], Any]:
    return {(str(t.name), int(p.partition_index)): p
            for t in response.topics for p in t.partitions}


def test_idempotent_producer_is_listed_per_partition(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("describe-idem"), partitions=2)
    before_ms = int(time.time() * 1000)
    p = producer(broker.bootstrap_servers, enable_idempotence=True)
    delivered = produce_all(p, topic, [
        {"partition": part, "value": f"v{part}-{i}".encode()}
        for i in range(RECORDS_PER_PARTITION) for part in (0, 1)])
    after_ms = int(time.time() * 1000)
    assert not delivered.failed
    assert len(delivered.acked) == 2 * RECORDS_PER_PARTITION

    response = describe(broker.port, {topic: (0, 1)})
    assert response.throttle_time.total_seconds() == 0
    answered = partitions_of(response)
    assert set(answered) == {(topic, 0), (topic, 1)}
    producer_ids = set()
    for part in (0, 1):
        result = answered[(topic, part)]
        assert result.error_code == ErrorCode.none
        assert result.error_message is None
        assert len(result.active_producers) == 1
        state = result.active_producers[0]
        producer_ids.add(int(state.producer_id))
        assert state.producer_id >= 0 and state.producer_epoch == 0
        # All records of a partition went in order from sequence 0.
        assert state.last_sequence == RECORDS_PER_PARTITION - 1
        assert before_ms - 1000 <= state.last_timestamp <= after_ms + 1000
        assert state.coordinator_epoch == -1
        assert state.current_txn_start_offset == -1
    assert len(producer_ids) == 1  # one producer, the same id on both partitions


def test_open_transaction_shows_its_start_offset(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("describe-txn"), partitions=1)
    plain = producer(broker.bootstrap_servers)
    assert not produce_all(plain, topic, [{"value": b"before"}] * 3).failed
    txn = Producer({"bootstrap.servers": broker.bootstrap_servers,
                    "transactional.id": unique_name("describe-txn-id")})
    txn.init_transactions(10)
    txn.begin_transaction()
    txn.produce(topic, value=b"in-txn")
    txn.flush(10)
    state = partitions_of(describe(broker.port, {topic: (0,)}))[(topic, 0)]
    assert [int(p.current_txn_start_offset) for p in state.active_producers] == [3]
    txn.commit_transaction(10)
    state = partitions_of(describe(broker.port, {topic: (0,)}))[(topic, 0)]
    assert [int(p.current_txn_start_offset) for p in state.active_producers] == [-1]


def test_plain_producer_lists_no_producers(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("describe-plain"))
    p = producer(broker.bootstrap_servers, enable_idempotence=False, acks="all")
    delivered = produce_all(p, topic, [{"value": b"x"} for _ in range(5)])
    assert not delivered.failed and len(delivered.acked) == 5

    result = partitions_of(describe(broker.port, {topic: (0,)}))[(topic, 0)]
    assert result.error_code == ErrorCode.none
    assert result.active_producers == ()


def test_unknown_topic_or_partition(broker: EmbeddedBroker) -> None:
    known = create_topic(broker.bootstrap_servers, unique_name("describe-known"))
    missing = unique_name("describe-missing")
    answered = partitions_of(describe(broker.port, {missing: (0, 3), known: (0, 1)}))
    assert answered[(missing, 0)].error_code == ErrorCode.unknown_topic_or_partition
    assert answered[(missing, 3)].error_code == ErrorCode.unknown_topic_or_partition
    assert answered[(known, 1)].error_code == ErrorCode.unknown_topic_or_partition
    assert answered[(known, 0)].error_code == ErrorCode.none
    for key in [(missing, 0), (missing, 3), (known, 1)]:
        assert answered[key].active_producers == ()
    # Unknown topics are not auto-created by DescribeProducers.
    assert missing not in broker.server.engine.topics()
