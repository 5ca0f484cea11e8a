"""strom.connect.converters.registry without a server: Connect schema -> Avro / JSON Schema /
proto3 translation as Confluent's AvroData / JsonSchemaData / ProtobufData write it, and the
converters' framing and subjects against an in-memory registry client."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema

from strom.connect.converters.registry import (
    AvroConverter,
    JsonSchemaConverter,
    ProtobufConverter,
    avro_schema_of,
    connect_schema_of_avro,
    json_schema_of,
    proto_schema_of,
)
from strom.connect.data import (
    BYTES_SCHEMA,
    INT8_SCHEMA,
    INT16_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
)
from strom.connect.errors import DataException
from strom.registry import wire


class Registered:
    def __init__(self, schema_id: int, schema: RegistrySchema) -> None:
        self.schema_id = schema_id
        self.schema = schema


class FakeRegistry:
    """The four SchemaRegistryClient calls the converters make."""

    def __init__(self) -> None:
        self.schemas: dict[int, RegistrySchema] = {}
        self.subjects: dict[str, list[int]] = {}

    def register_schema(self, subject: str, schema: RegistrySchema,
                        normalize_schemas: bool = False) -> int:
        known = [i for i, s in self.schemas.items() if s.schema_str == schema.schema_str]
        schema_id = known[0] if known else len(self.schemas) + 1
        self.schemas[schema_id] = schema
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def lookup_schema(self, subject: str, schema: RegistrySchema) -> Registered:
        for schema_id in self.subjects.get(subject, []):
            if self.schemas[schema_id].schema_str == schema.schema_str:
                return Registered(schema_id, schema)
        raise LookupError("Schema not found")

    def get_latest_version(self, subject: str) -> Registered:
        schema_id = self.subjects[subject][-1]
        return Registered(schema_id, self.schemas[schema_id])

    def get_schema(self, schema_id: int) -> RegistrySchema:
        return self.schemas[schema_id]


INNER = SchemaBuilder.struct().name("com.example.Inner").field("x", INT32_SCHEMA).build()
USER = (SchemaBuilder.struct().name("com.example.User").version(2)
        .field("name", STRING_SCHEMA).field("small", INT8_SCHEMA).field("short", INT16_SCHEMA)
        .field("nick", OPTIONAL_STRING_SCHEMA)
        .field("tags", SchemaBuilder.array(STRING_SCHEMA).build())
        .field("scores", SchemaBuilder.map(STRING_SCHEMA, INT64_SCHEMA).build())
        .field("by_id", SchemaBuilder.map(INT32_SCHEMA, STRING_SCHEMA).build())
        .field("inner", INNER).field("raw", BYTES_SCHEMA)
        .field("price", Decimal.schema(2)).field("day", Date.SCHEMA)
        .field("at", Time.SCHEMA).field("ts", Timestamp.SCHEMA).build())


def user() -> Struct:
    return (Struct(USER).put("name", "ada").put("small", -3).put("short", 300)
            .put("tags", ["a", "b"]).put("scores", {"x": 1}).put("by_id", {7: "seven"})
            .put("inner", Struct(INNER).put("x", 5)).put("raw", b"\x00\xff")
            .put("price", decimal.Decimal("12.34")).put("day", dt.date(2020, 2, 29))
            .put("at", dt.time(23, 59, 59, 999000))
            .put("ts", dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC)))


def test_avro_schema_as_confluents_avro_data() -> None:
    avro = avro_schema_of(USER)
    assert avro["type"] == "record" and avro["name"] == "User"
    assert avro["namespace"] == "com.example" and avro["connect.name"] == "com.example.User"
    assert avro["connect.version"] == 2
    fields = {f["name"]: f for f in avro["fields"]}
    assert fields["name"]["type"] == "string"
    assert fields["small"]["type"] == {"type": "int", "connect.type": "int8"}
    assert fields["short"]["type"] == {"type": "int", "connect.type": "int16"}
    assert fields["nick"] == {"name": "nick", "type": ["null", "string"], "default": None}
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["scores"]["type"] == {"type": "map", "values": "long"}
    assert fields["by_id"]["type"] == {"type": "array", "items": {
        "type": "record", "name": "MapEntry", "namespace": "io.confluent.connect.avro",
        "fields": [{"name": "key", "type": "int"}, {"name": "value", "type": "string"}]}}
    assert fields["price"]["type"] == {
        "type": "bytes", "scale": 2, "precision": 64, "logicalType": "decimal",
        "connect.version": 1, "connect.parameters": {"scale": "2"},
        "connect.name": "org.apache.kafka.connect.data.Decimal"}
    assert fields["day"]["type"]["logicalType"] == "date"
    assert fields["at"]["type"]["logicalType"] == "time-millis"
    assert fields["ts"]["type"] == {"type": "long", "logicalType": "timestamp-millis",
                                    "connect.version": 1,
                                    "connect.name": "org.apache.kafka.connect.data.Timestamp"}
    unnamed = avro_schema_of(SchemaBuilder.struct().field("a", INT32_SCHEMA).build())
    assert (unnamed["name"], unnamed["namespace"]) == ("ConnectDefault",
                                                       "io.confluent.connect.avro")
    assert connect_schema_of_avro(unnamed).name is None
    assert connect_schema_of_avro(avro) == USER


def test_json_schema_as_confluents_json_schema_data() -> None:
    node = json_schema_of(USER)
    assert node["type"] == "object" and node["title"] == "com.example.User"
    props = node["properties"]
    assert props["small"] == {"type": "integer", "connect.type": "int8", "connect.index": 1}
    assert props["nick"] == {"oneOf": [{"type": "null"}, {"type": "string"}],
                             "connect.index": 3}
    assert props["raw"]["connect.type"] == "bytes" and props["raw"]["type"] == "string"
    assert props["scores"]["additionalProperties"] == {"type": "integer",
                                                       "connect.type": "int64"}
    assert props["price"]["title"] == "org.apache.kafka.connect.data.Decimal"


def test_proto_schema() -> None:
    schema = (SchemaBuilder.struct().name("com.example.P").field("a", INT32_SCHEMA)
              .field("b", OPTIONAL_STRING_SCHEMA)
              .field("c", SchemaBuilder.array(INT64_SCHEMA).build())
              .field("d", SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build())
              .field("inner", INNER).build())
    assert proto_schema_of(schema) == "\n".join([
        'syntax = "proto3";', "package com.example;", "", "message P {",
        "  int32 a = 1;", "  optional string b = 2;", "  repeated int64 c = 3;",
        "  map<string, int32> d = 4;", "  message Inner {", "    int32 x = 1;", "  }",
        "  Inner inner = 5;", "}", ""])
    with pytest.raises(DataException, match="logical type"):
        proto_schema_of(SchemaBuilder.struct().field("d", Date.SCHEMA).build())


@pytest.mark.parametrize("cls", [AvroConverter, JsonSchemaConverter])
def test_round_trip_exact(cls: type) -> None:
    registry = FakeRegistry()
    writer = cls(registry)
    writer.configure({"schema.registry.url": "http://unused"}, False)
    raw = writer.from_connect_data("users", USER, user())
    assert raw is not None and wire.decode_header(raw) == 1
    assert list(registry.subjects) == ["users-value"]
    reader = cls(registry)
    reader.configure({"schema.registry.url": "http://unused"}, False)
    back = reader.to_connect_data("users", raw)
    assert back.schema == USER and back.value == user()
    assert writer.from_connect_data("users", USER, None) is None
    assert reader.to_connect_data("users", None) == (None, None)


def test_protobuf_round_trip_and_message_indexes() -> None:
    registry = FakeRegistry()
    schema = (SchemaBuilder.struct().name("com.example.P").field("a", INT32_SCHEMA)
              .field("b", OPTIONAL_STRING_SCHEMA)
              .field("c", SchemaBuilder.array(INT64_SCHEMA).build())
              .field("d", SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build())
              .field("inner", INNER).build())
    value = (Struct(schema).put("a", 1).put("b", "x").put("c", [1, 2]).put("d", {"k": 3})
             .put("inner", Struct(INNER).put("x", 9)))
    c = ProtobufConverter(registry)
    c.configure({"schema.registry.url": "http://unused"}, True)
    raw = c.from_connect_data("t", schema, value)
    assert raw is not None and raw[5] == 0  # message indexes [0]: the single byte 0
    assert list(registry.subjects) == ["t-key"]
    back = c.to_connect_data("t", raw)
    assert back.schema is not None and back.schema.name == "com.example.P"
    assert [back.value.get(n) for n in "abcd"] == [1, "x", [1, 2], {"k": 3}]
    assert back.value.get("inner").get("x") == 9


def test_auto_register_off_looks_up_and_use_latest() -> None:
    registry = FakeRegistry()
    lookup = AvroConverter(registry)
    lookup.configure({"schema.registry.url": "http://unused",
                      "auto.register.schemas": "false"}, False)
    with pytest.raises(DataException, match="Failed to look up schema for subject t-value"):
        lookup.from_connect_data("t", USER, user())
    auto = AvroConverter(registry)
    auto.configure({"schema.registry.url": "http://unused"}, False)
    raw = auto.from_connect_data("t", USER, user())
    assert lookup.from_connect_data("t", USER, user()) == raw
    latest = AvroConverter(registry)
    latest.configure({"schema.registry.url": "http://unused", "use.latest.version": "true"},
                     False)
    assert latest.from_connect_data("t", USER, user()) == raw


def test_errors() -> None:
    c = AvroConverter(FakeRegistry())
    c.configure({"schema.registry.url": "http://unused"}, False)
    with pytest.raises(DataException, match="requires a schema"):
        c.from_connect_data("t", None, {"a": 1})
    with pytest.raises(DataException, match="unknown magic byte"):
        c.to_connect_data("t", b"\x01\x00\x00\x00\x01")
    with pytest.raises(Exception, match=r"schema\.registry\.url"):
        AvroConverter(FakeRegistry()).configure({}, False)


def test_json_schema_converter_validates() -> None:
    c = JsonSchemaConverter(FakeRegistry())
    c.configure({"schema.registry.url": "http://unused"}, False)
    raw = c.from_connect_data("t", USER, user())
    assert raw is not None
    body: Any = json.loads(raw[5:])
    assert body["raw"] == "AP8=" and body["day"] == 18321 and body["price"] == 12.34


def test_protobuf_reads_a_nested_message_by_its_indexes() -> None:
    registry = FakeRegistry()
    schema = (SchemaBuilder.struct().name("com.example.P").field("a", INT32_SCHEMA)
              .field("inner", INNER).build())
    c = ProtobufConverter(registry)
    c.configure({"schema.registry.url": "http://unused"}, False)
    c.from_connect_data("t", schema, Struct(schema).put("a", 1).put(
        "inner", Struct(INNER).put("x", 2)))
    inner_only = ProtobufConverter(registry)
    inner_only.configure({"schema.registry.url": "http://unused"}, False)
    payload = b"\x08\x07"  # field 1 (x), varint 7
    back = inner_only.to_connect_data("t", wire.frame(1, payload, [0, 0]))
    assert back.schema is not None and back.schema.name == "com.example.P.Inner"
    assert back.value.get("x") == 7
    with pytest.raises(DataException, match="No message at indexes"):
        inner_only.to_connect_data("t", wire.frame(1, payload, [3]))
