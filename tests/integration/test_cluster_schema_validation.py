"""Validation on produce on a three-broker cluster sharing one PostgreSQL database: every
broker checks the partitions it leads against `_schemas`, which only its leader can read from
the engine; the others fetch it from that leader (read_committed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from strom.registry import wire
from strom.registry.records import Record, SchemaKey, SchemaValue
from strom.testing.postgres import PostgresServer
from tests.integration.cluster import Cluster
from tests.integration.conftest import create_topic, produce_all, producer, unique_name
from tests.integration.test_schema_validation import AVRO, avro_user


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    with Cluster(postgres_server.new_database()) as running:
        running.wait_whole()
        yield running


def test_every_broker_validates_the_partitions_it_leads(cluster: Cluster) -> None:
    bootstrap = cluster.bootstrap
    create_topic(bootstrap, "_schemas", config={"cleanup.policy": "compact"})
    cluster.wait_whole(["_schemas"])
    topic = unique_name("valid")
    create_topic(bootstrap, topic, partitions=6,
                 config={"confluent.value.schema.validation": "true"})
    cluster.wait_whole([topic])
    leaders = cluster.leaders(cluster.running()[0], topic)
    schemas_leader = cluster.leaders(cluster.running()[0], "_schemas")[0]
    assert set(leaders.values()) - {schemas_leader}, "no partition led by another broker"
    key, value = Record(SchemaKey(f"{topic}-value", 1),
                        SchemaValue(f"{topic}-value", 1, 7, AVRO)).encode()
    assert not produce_all(producer(bootstrap, acks="all"), "_schemas",
                           [{"key": key, "value": value}]).failed
    p = producer(bootstrap, retries=0)
    good = wire.frame(7, avro_user("x"))
    delivered = produce_all(p, topic, [{"value": good, "partition": i} for i in leaders])
    assert len(delivered.acked) == len(leaders), [e.str() for e, _ in delivered.failed]
    delivered = produce_all(p, topic, [{"value": wire.frame(8, b""), "partition": i}
                                       for i in leaders])
    assert not delivered.acked
    assert {e.code() for e, _ in delivered.failed} == {KafkaError.INVALID_RECORD}
