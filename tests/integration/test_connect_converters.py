"""The schema-registry converters (strom.connect.converters.registry) through a real
`strom registry` server: a Connect Struct written by AvroConverter, JsonSchemaConverter and
ProtobufConverter registers its schema under <topic>-value, and reads back from the bytes with
the writer's schema fetched by id; confluent-kafka's own deserializers read the same bytes."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from strom.connect import plugins
from strom.connect.converters.registry import RegistryConverter
from strom.connect.data import (
    INT8_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Decimal,
    SchemaBuilder,
    Struct,
)
from strom.connect.errors import DataException
from strom.registry.rest import RunningRegistry, start_in_thread
from strom.registry.server import RegistrySettings
from strom.testing import EmbeddedBroker
from tests.integration.conftest import unique_name

ADDRESS = SchemaBuilder.struct().name("com.example.Address").field(
    "city", STRING_SCHEMA).build()
USER = (SchemaBuilder.struct().name("com.example.User").field("name", STRING_SCHEMA)
        .field("age", INT32_SCHEMA).field("nick", OPTIONAL_STRING_SCHEMA)
        .field("tags", SchemaBuilder.array(STRING_SCHEMA).build())
        .field("scores", SchemaBuilder.map(STRING_SCHEMA, INT64_SCHEMA).build())
        .field("address", ADDRESS).build())


def user(name: str = "ada", nick: str | None = None) -> Struct:
    return (Struct(USER).put("name", name).put("age", 36).put("nick", nick)
            .put("tags", ["x", "y"]).put("scores", {"a": 1})
            .put("address", Struct(ADDRESS).put("city", "London")))


@pytest.fixture(scope="module")
def registry(broker: EmbeddedBroker) -> Iterator[RunningRegistry]:
    running = start_in_thread(RegistrySettings(
        broker.bootstrap_servers, topic=unique_name("_schemas"),
        group_id=unique_name("registry")))
    yield running
    running.stop()


_OPEN: list[RegistryConverter] = []


@pytest.fixture(autouse=True)
def _close_converters() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def converter(name: str, registry: RunningRegistry, **configs: Any) -> RegistryConverter:
    c = plugins.converter(name)()
    assert isinstance(c, RegistryConverter)
    c.configure({"schema.registry.url": registry.url, **configs}, False)
    _OPEN.append(c)
    return c


@pytest.mark.parametrize("name", [
    "io.confluent.connect.avro.AvroConverter",
    "io.confluent.connect.json.JsonSchemaConverter",
    "io.confluent.connect.protobuf.ProtobufConverter",
])
def test_struct_round_trips_through_the_registry(registry: RunningRegistry,
                                                 name: str) -> None:
    topic = unique_name("connect")
    writer = converter(name, registry)
    raw = writer.from_connect_data(topic, USER, user(nick="a"))
    assert raw is not None and raw[0] == 0
    reader = converter(name, registry)  # a fresh one: fetches the writer's schema by id
    back = reader.to_connect_data(topic, raw)
    assert back.schema is not None
    for field in ("name", "age", "nick", "tags", "scores"):
        assert back.value.get(field) == user(nick="a").get(field), field
    assert back.value.get("address").get("city") == "London"
    with SchemaRegistryClient({"url": registry.url}) as client:
        assert client.get_subjects() == [f"{topic}-value"] or \
            f"{topic}-value" in client.get_subjects()
        latest = client.get_latest_version(f"{topic}-value")
        assert latest.schema.schema_type == writer.SCHEMA_TYPE


def test_avro_and_json_schema_round_trip_exactly(registry: RunningRegistry) -> None:
    schema = (SchemaBuilder.struct().name("com.example.Exact").version(3)
              .field("small", INT8_SCHEMA).field("price", Decimal.schema(2))
              .field("nick", OPTIONAL_STRING_SCHEMA).build())
    value = Struct(schema).put("small", 7).put("price", decimal.Decimal("12.34"))
    for name in ("Avro", "JsonSchema"):
        topic = unique_name("exact")
        raw = converter(name, registry).from_connect_data(topic, schema, value)
        back = converter(name, registry).to_connect_data(topic, raw)
        assert back.schema == schema and back.value == value, name


def test_confluent_deserializers_read_what_the_converters_write(
        registry: RunningRegistry) -> None:
    topic = unique_name("interop")
    ctx = SerializationContext(topic, MessageField.VALUE)
    with SchemaRegistryClient({"url": registry.url}) as client:
        avro = converter("AvroConverter", registry).from_connect_data(topic, USER, user())
        read = AvroDeserializer(client)(avro, ctx)
        assert read["name"] == "ada" and read["address"] == {"city": "London"}
        json_topic = unique_name("interop")
        raw = converter("JsonSchemaConverter", registry).from_connect_data(
            json_topic, USER, user())
        read = JSONDeserializer(None, schema_registry_client=client)(
            raw, SerializationContext(json_topic, MessageField.VALUE))
        assert read["name"] == "ada" and read["tags"] == ["x", "y"]


def test_auto_register_false_and_use_latest_version(registry: RunningRegistry) -> None:
    topic = unique_name("noreg")
    with pytest.raises(DataException, match="look up"):
        converter("AvroConverter", registry, **{"auto.register.schemas": "false"}
                  ).from_connect_data(topic, USER, user())
    raw = converter("AvroConverter", registry).from_connect_data(topic, USER, user())
    looked_up = converter("AvroConverter", registry, **{"auto.register.schemas": "false"})
    assert looked_up.from_connect_data(topic, USER, user()) == raw
    latest = converter("AvroConverter", registry, **{"use.latest.version": "true"})
    assert latest.from_connect_data(topic, USER, user()) == raw
