"""Validation on produce on a real broker (docs/registry.md, "Validation on produce"): `_schemas`
is written directly with confluent-kafka in Confluent's record format (as a registry would,
transactions included), topics validate with confluent.value/key.schema.validation,
confluent-kafka producers see INVALID_RECORD in their delivery reports (librdkafka 2.16 reports
the code only, not the response's messages), kafka-python's producer the per-record message
(KIP-467); a refused batch leaves nothing in the log. On the local engine and on PostgreSQL."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from strom.registry import wire
from strom.registry.records import Record, SchemaKey, SchemaValue
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consumer,
    create_topic,
    produce_all,
    producer,
    unique_name,
)

STORAGE_ENGINES = ("file", "postgresql")
AVRO = json.dumps({"type": "record", "name": "User", "namespace": "com.acme",
                   "fields": [{"name": "name", "type": "string"}]})
VALIDATE = {"confluent.value.schema.validation": "true"}
_ids = itertools.count(1000)


def avro_user(name: str) -> bytes:
    data = name.encode()
    return wire.encode_varint(len(data)) + data


@pytest.fixture(scope="module")
def schemas(broker: EmbeddedBroker) -> Iterator[Callable[..., int]]:
    """register(subject, schema_id=None, transactional=None) writes a SCHEMA record to
    `_schemas` (transactional: "commit" or "abort" it in a transaction); answers the id."""
    bootstrap = broker.bootstrap_servers
    create_topic(bootstrap, "_schemas", config={"cleanup.policy": "compact"})
    plain = producer(bootstrap, acks="all")
    versions = itertools.count(1)

    def register(subject: str, schema_id: int | None = None,
                 transactional: str | None = None) -> int:
        schema_id = next(_ids) if schema_id is None else schema_id
        key, value = Record(SchemaKey(subject, next(versions)), SchemaValue(
            subject, 1, schema_id, AVRO)).encode()
        if transactional is None:
            delivered = produce_all(plain, "_schemas", [{"key": key, "value": value}])
            assert not delivered.failed
            return schema_id
        p = producer(bootstrap, acks="all", transactional_id=unique_name("registry"))
        p.init_transactions(DEADLINE_S)
        p.begin_transaction()
        p.produce("_schemas", value=value, key=key)
        p.flush(DEADLINE_S)
        if transactional == "commit":
            p.commit_transaction(DEADLINE_S)
        else:
            p.abort_transaction(DEADLINE_S)
        return schema_id

    yield register
    plain.flush(DEADLINE_S)


def produce_values(broker: EmbeddedBroker, topic: str, values: list[bytes | None],
                   **extra: Any) -> tuple[int, list[KafkaError]]:
    """(acknowledged, errors) of producing `values` in one batch (linger.ms=50)."""
    p = producer(broker.bootstrap_servers, linger_ms=50, **extra)
    delivered = produce_all(p, topic, [{"value": v} for v in values])
    return len(delivered.acked), [err for err, _ in delivered.failed]


def kafka_python_error(broker: EmbeddedBroker, topic: str, value: bytes,
                       key: bytes | None = None) -> str:
    """The error message kafka-python's producer gets for one record (KIP-467's per-record
    message, which librdkafka does not report)."""
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    p = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, retries=0)
    try:
        with pytest.raises(InvalidRecordError) as caught:
            p.send(topic, value=value, key=key).get(timeout=DEADLINE_S)
    finally:
        p.close()
    return str(caught.value)


def high_watermark(broker: EmbeddedBroker, topic: str) -> int:
    c = consumer(broker.bootstrap_servers)
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        c.close()


def test_good_records_pass_bad_ones_get_invalid_record(
        broker: EmbeddedBroker, schemas: Callable[..., int]) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("valid"), config=VALIDATE)
    schema_id = schemas(f"{topic}-value")
    good = wire.frame(schema_id, avro_user("ann"))
    assert produce_values(broker, topic, [good, good, None]) == (3, [])
    for bad, message in ((b"plain bytes", "is not in the schema registry's wire format"),
                         (wire.frame(999_999, b""), "Schema id 999999 of the record's value "
                                                    "is not registered")):
        acked, errors = produce_values(broker, topic, [bad], retries=0)
        assert acked == 0 and len(errors) == 1
        assert errors[0].code() == KafkaError.INVALID_RECORD
        assert message in kafka_python_error(broker, topic, bad)
    other = schemas(unique_name("other") + "-value")
    _, errors = produce_values(broker, topic, [wire.frame(other, b"")], retries=0)
    assert errors and errors[0].code() == KafkaError.INVALID_RECORD
    assert f"not registered under subject '{topic}-value'" in kafka_python_error(
        broker, topic, wire.frame(other, b""))
    assert high_watermark(broker, topic) == 3


def test_one_bad_record_refuses_its_whole_batch(
        broker: EmbeddedBroker, schemas: Callable[..., int]) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("valid"), config=VALIDATE)
    good = wire.frame(schemas(f"{topic}-value"), avro_user("bob"))
    acked, errors = produce_values(broker, topic, [good] * 5 + [b"bad"] + [good] * 5,
                                   retries=0)
    assert acked == 0 and len(errors) == 11
    assert {e.code() for e in errors} == {KafkaError.INVALID_RECORD}
    assert high_watermark(broker, topic) == 0
    assert produce_values(broker, topic, [good] * 3) == (3, [])
    assert high_watermark(broker, topic) == 3


def test_schemas_registered_later_are_picked_up(
        broker: EmbeddedBroker, schemas: Callable[..., int]) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("valid"), config=VALIDATE)
    first = schemas(f"{topic}-value")
    assert produce_values(broker, topic, [wire.frame(first, b"")]) == (1, [])
    later = schemas(f"{topic}-value")  # after the broker read `_schemas`
    assert produce_values(broker, topic, [wire.frame(later, b"")]) == (1, [])
    unknown = next(_ids)
    _, errors = produce_values(broker, topic, [wire.frame(unknown, b"")], retries=0)
    assert errors and errors[0].code() == KafkaError.INVALID_RECORD
    schemas(f"{topic}-value", unknown)
    time.sleep(0.2)  # a refused id is believed unknown for 0.1 s before it is looked up again
    assert produce_values(broker, topic, [wire.frame(unknown, b"")]) == (1, [])


def test_schemas_of_aborted_transactions_are_not_registered(
        broker: EmbeddedBroker, schemas: Callable[..., int]) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("valid"), config=VALIDATE)
    aborted = schemas(f"{topic}-value", transactional="abort")
    committed = schemas(f"{topic}-value", transactional="commit")
    assert produce_values(broker, topic, [wire.frame(committed, b"")]) == (1, [])
    _, errors = produce_values(broker, topic, [wire.frame(aborted, b"")], retries=0)
    assert errors and errors[0].code() == KafkaError.INVALID_RECORD
    assert f"Schema id {aborted} of the record's value is not registered" in (
        kafka_python_error(broker, topic, wire.frame(aborted, b"")))


def test_configs_are_described_and_altered(broker: EmbeddedBroker,
                                           schemas: Callable[..., int]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("valid"), config={
        "confluent.value.subject.name.strategy": "RecordNameStrategy"})
    assert produce_values(broker, topic, [b"anything"]) == (1, [])  # validation is off
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(DEADLINE_S)
    assert described["confluent.value.schema.validation"].value == "false"
    assert described["confluent.value.subject.name.strategy"].value == "RecordNameStrategy"
    assert described["confluent.key.subject.name.strategy"].value == (
        "io.confluent.kafka.serializers.subject.TopicNameStrategy")
    assert described["strom.schema.validation.decode"].value == "false"
    on = incremental(topic, "confluent.value.schema.validation", "true")
    admin.incremental_alter_configs([on])[on].result(DEADLINE_S)
    assert admin.describe_configs([resource])[resource].result(DEADLINE_S)[
        "confluent.value.schema.validation"].value == "true"
    schema_id = schemas("com.acme.User")  # RecordNameStrategy: the Avro record's full name
    assert produce_values(broker, topic, [wire.frame(schema_id, avro_user("c"))]) == (1, [])
    _, errors = produce_values(broker, topic, [b"anything"], retries=0)
    assert errors and errors[0].code() == KafkaError.INVALID_RECORD
    wrong = incremental(topic, "confluent.value.subject.name.strategy", "NoSuchStrategy")
    with pytest.raises(KafkaException, match="NoSuchStrategy"):
        admin.incremental_alter_configs([wrong])[wrong].result(DEADLINE_S)


def incremental(topic: str, name: str, value: str) -> ConfigResource:
    return ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])


def test_key_validation_and_decode_check(broker: EmbeddedBroker,
                                         schemas: Callable[..., int]) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("valid"), config={
        "confluent.key.schema.validation": "true", "strom.schema.validation.decode": "true"})
    key_id = schemas(f"{topic}-key")
    p: Producer = producer(broker.bootstrap_servers, retries=0)
    good = produce_all(p, topic, [{"key": wire.frame(key_id, avro_user("k")), "value": b"v"},
                                  {"key": None, "value": b"v"}])
    assert len(good.acked) == 2 and not good.failed
    bad = produce_all(p, topic, [{"key": wire.frame(key_id, b"\x10short"), "value": b"v"}])
    assert not bad.acked and bad.failed[0][0].code() == KafkaError.INVALID_RECORD
    assert "does not decode with schema id" in kafka_python_error(
        broker, topic, b"free", key=wire.frame(key_id, b"\x10short"))
