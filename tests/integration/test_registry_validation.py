"""End to end (issue 14): a strom broker, `strom registry` as a user runs it (a subprocess of
its own, against the broker's listener), and topics with
`confluent.value.schema.validation=true`. Records serialized by confluent-kafka's AvroSerializer
through the registry pass and are consumed and deserialized; raw bytes and a record framed with
an id registered only under another subject are refused with INVALID_RECORD; a schema
registered through the REST API after the topic exists is accepted on the next produce. On the
local engine and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from strom.registry import wire
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    create_topic,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.registry_client import Http

STORAGE_ENGINES = ("file", "postgresql")
VALIDATE = {"confluent.value.schema.validation": "true"}
SRC = Path(__file__).resolve().parents[2] / "src"


def record_schema(name: str, *fields: str) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "e2e",
                       "fields": [{"name": f, "type": "string"} for f in fields]})


USER = record_schema("User", "name")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def registry_url(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[str]:
    """`strom registry` in a process of its own on `_schemas` (the topic the broker validates
    against), ready once it answers GET /."""
    port = free_port()
    log = tmp_path_factory.mktemp("registry") / "registry.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SRC), os.environ.get("PYTHONPATH", "")]))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strom", "registry", "--bootstrap-servers",
             broker.bootstrap_servers, "--listen", f"127.0.0.1:{port}",
             "--group-id", unique_name("registry")],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (_listening(port) and Http(url).get("/").status == 200):
            assert proc.poll() is None, f"strom registry exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"strom registry never ready: {log.read_text()}"
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def client(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry_url}) as sr:
        yield sr


def produce(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> tuple[int, list[int]]:
    """(acknowledged, error codes) of producing `values` (no retries)."""
    p: Producer = producer(broker.bootstrap_servers, linger_ms=20, retries=0)
    delivered = produce_all(p, topic, [{"value": v} for v in values])
    return len(delivered.acked), [err.code() for err, _ in delivered.failed]


def kafka_python_error(broker: EmbeddedBroker, topic: str, value: bytes) -> str:
    """kafka-python's error text for one refused record (KIP-467's per-record message)."""
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    p = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, retries=0)
    try:
        with pytest.raises(InvalidRecordError) as caught:
            p.send(topic, value=value).get(timeout=DEADLINE_S)
    finally:
        p.close()
    return str(caught.value)


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_avro_serializer_records_pass_and_deserialize(
        broker: EmbeddedBroker, client: SchemaRegistryClient) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("e2e"), config=VALIDATE)
    serializer = AvroSerializer(client, USER)  # auto-registers under `{topic}-value`
    values: list[dict[str, Any]] = [{"name": n} for n in ("ann", "bob", "cy")]
    assert produce(broker, topic, [serializer(v, ctx(topic)) for v in values]) == (3, [])
    assert client.get_latest_version(f"{topic}-value").version == 1
    deserializer = AvroDeserializer(client)
    messages = consume_partitions(broker.bootstrap_servers, topic)
    assert [deserializer(m.value(), ctx(topic)) for m in messages] == values


def test_raw_bytes_and_another_subjects_id_are_refused(
        broker: EmbeddedBroker, client: SchemaRegistryClient, registry_url: str) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("e2e"), config=VALIDATE)
    good = AvroSerializer(client, USER)({"name": "ann"}, ctx(topic))
    assert produce(broker, topic, [good]) == (1, [])
    other = Http(registry_url).register(unique_name("other") + "-value",
                                        record_schema("Other", "x"))
    assert other.status == 200, other.body
    other_id = other.body["id"]
    assert other_id != wire.decode_header(good)
    framed = wire.frame(other_id, good[wire.HEADER_SIZE:])
    for bad, message in ((b"\x02ann", "is not in the schema registry's wire format"),
                         (framed, f"not registered under subject '{topic}-value'")):
        assert produce(broker, topic, [bad]) == (0, [KafkaError.INVALID_RECORD])
        assert message in kafka_python_error(broker, topic, bad)
    assert [m.value() for m in consume_partitions(broker.bootstrap_servers, topic)] == [good]


def test_schema_registered_after_the_topic_is_accepted_on_the_next_produce(
        broker: EmbeddedBroker, client: SchemaRegistryClient, registry_url: str) -> None:
    topic = create_topic(broker.bootstrap_servers, unique_name("e2e"), config=VALIDATE)
    subject = f"{topic}-value"
    first = client.register_schema(subject, Schema(USER, "AVRO"))
    assert produce(broker, topic, [AvroSerializer(client, USER)({"name": "a"}, ctx(topic))]) \
        == (1, [])
    # a new version through the REST API (the validating broker already has this topic's
    # catalog warm); the very next produce framed with its id passes
    evolved = json.dumps({"type": "record", "name": "User", "namespace": "e2e", "fields": [
        {"name": "name", "type": "string"}, {"name": "email", "type": "string", "default": ""}]})
    reply = Http(registry_url).register(subject, evolved)
    assert reply.status == 200, reply.body
    assert reply.body["id"] != first
    serializer = AvroSerializer(client, evolved, conf={"auto.register.schemas": False})
    value = serializer({"name": "b", "email": "b@x"}, ctx(topic))
    assert wire.decode_header(value) == reply.body["id"]
    assert produce(broker, topic, [value]) == (1, [])
    deserializer = AvroDeserializer(client)
    assert [deserializer(m.value(), ctx(topic)) for m in consume_partitions(
        broker.bootstrap_servers, topic)] == [{"name": "a"}, {"name": "b", "email": "b@x"}]
