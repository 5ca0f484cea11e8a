"""strom.connect.data and .records: Kafka Connect's data model."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from strom.connect.data import (
    INT32_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    Headers,
    Schema,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
    Type,
    validate_value,
)
from strom.connect.errors import DataException, SchemaBuilderException
from strom.connect.records import SinkRecord, SourceRecord

SCHEMA = (SchemaBuilder.struct().name("x").field("a", INT32_SCHEMA)
          .field("b", OPTIONAL_STRING_SCHEMA).build())


def test_builder_builds_an_equal_hashable_schema() -> None:
    again = (SchemaBuilder.struct().name("x").field("a", INT32_SCHEMA)
             .field("b", OPTIONAL_STRING_SCHEMA).build())
    assert again == SCHEMA and hash(again) == hash(SCHEMA)
    assert SCHEMA.field("a") is not None and SCHEMA.field("a").index == 0  # type: ignore[union-attr]
    assert SCHEMA.field("zz") is None
    assert repr(SCHEMA) == "Schema{x:STRUCT}" and repr(STRING_SCHEMA) == "Schema{STRING}"
    assert SchemaBuilder.struct().optional().build().optional


def test_builder_rejects_duplicate_fields_and_bad_defaults() -> None:
    with pytest.raises(SchemaBuilderException, match="field name duplication a"):
        SchemaBuilder.struct().field("a", INT32_SCHEMA).field("a", INT32_SCHEMA)
    with pytest.raises(SchemaBuilderException, match="Invalid default value"):
        SchemaBuilder.int32().default_value("x")
    with pytest.raises(SchemaBuilderException, match="already been set"):
        SchemaBuilder.int32().name("a").name("b")


@pytest.mark.parametrize(("schema", "value", "ok"), [
    (Schema(Type.INT8), 127, True),
    (Schema(Type.INT8), 128, False),
    (Schema(Type.INT32), True, False),
    (Schema(Type.INT64), 2**63 - 1, True),
    (Schema(Type.FLOAT64), 1.5, True),
    (Schema(Type.STRING), b"x", False),
    (Schema(Type.BYTES), b"x", True),
    (Schema(Type.BOOLEAN), 1, False),
    (SchemaBuilder.array(INT32_SCHEMA).build(), [1, 2], True),
    (SchemaBuilder.array(INT32_SCHEMA).build(), [1, "2"], False),
    (SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build(), {"a": 1}, True),
    (SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build(), {1: 1}, False),
    (STRING_SCHEMA, None, False),
    (OPTIONAL_STRING_SCHEMA, None, True),
    (Decimal.schema(2), decimal.Decimal("1.25"), True),
    (Date.SCHEMA, dt.date(2020, 1, 1), True),
    (Date.SCHEMA, 5, False),
])
def test_validate_value(schema: Schema, value: object, ok: bool) -> None:
    if ok:
        validate_value(schema, value)
    else:
        with pytest.raises(DataException):
            validate_value(schema, value)


def test_validate_messages_as_kafka() -> None:
    with pytest.raises(DataException,
                       match='null used for required field: "a", schema type: INT32'):
        validate_value(INT32_SCHEMA, None, "a")
    with pytest.raises(DataException, match="Invalid Java object for schema with type INT32"):
        validate_value(INT32_SCHEMA, "x")


def test_struct_put_get_validate_equality() -> None:
    s = Struct(SCHEMA).put("a", 1)
    assert s.get("a") == 1 and s.get("b") is None
    s.validate()
    assert s == Struct(SCHEMA).put("a", 1) and s != Struct(SCHEMA).put("a", 2)
    assert repr(s) == "Struct{a=1}"
    with pytest.raises(DataException, match="zz is not a valid field name"):
        s.put("zz", 1)
    with pytest.raises(DataException):
        s.put("a", "one")
    with pytest.raises(DataException, match="required field"):
        Struct(SCHEMA).validate()
    with_default = SchemaBuilder.struct().field(
        "d", SchemaBuilder.int32().default_value(7).build()).build()
    assert Struct(with_default).get("d") == 7
    assert Struct(with_default).get_without_default("d") is None
    Struct(with_default).validate()


@pytest.mark.parametrize(("text", "scale", "raw"), [
    ("-1.28", 2, b"\x80"), ("1.27", 2, b"\x7f"), ("1.28", 2, b"\x00\x80"), ("0", 0, b"\x00"),
    ("123456789012345678901234567890.12345", 5,
     (12345678901234567890123456789012345).to_bytes(15, "big", signed=True)),
])
def test_decimal_bytes_are_javas_big_integer(text: str, scale: int, raw: bytes) -> None:
    schema = Decimal.schema(scale)
    assert Decimal.from_logical(schema, decimal.Decimal(text)) == raw
    assert Decimal.to_logical(schema, raw) == decimal.Decimal(text)
    assert schema.parameters == {"scale": str(scale)}


def test_date_time_timestamp() -> None:
    assert Date.from_logical(Date.SCHEMA, dt.date(1970, 1, 11)) == 10
    assert Date.to_logical(Date.SCHEMA, -1) == dt.date(1969, 12, 31)
    assert Time.from_logical(Time.SCHEMA, dt.time(0, 0, 1, 5000)) == 1005
    assert Time.to_logical(Time.SCHEMA, 1005) == dt.time(0, 0, 1, 5000)
    ts = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert Timestamp.from_logical(Timestamp.SCHEMA, ts) == 1577836800000
    assert Timestamp.to_logical(Timestamp.SCHEMA, 1577836800000) == ts
    assert Timestamp.SCHEMA.name == "org.apache.kafka.connect.data.Timestamp"
    with pytest.raises(DataException, match="does not match"):
        Date.from_logical(INT32_SCHEMA, dt.date(2020, 1, 1))


def test_headers_ordered_multi_valued() -> None:
    h = Headers().add("a", 1).add("b", "x", STRING_SCHEMA).add("a", 2)
    assert [x.key for x in h] == ["a", "b", "a"]
    assert h.last_with_name("a").value == 2  # type: ignore[union-attr]
    assert [x.value for x in h.all_with_name("a")] == [1, 2]
    c = h.copy().remove("a")
    assert [x.key for x in c] == ["b"] and len(h) == 3
    assert [x.value for x in h.copy().retain_latest()] == ["x", 2]
    with pytest.raises(DataException):
        Headers().add("a", 1, STRING_SCHEMA)


def test_new_record_keeps_the_subclass_fields() -> None:
    sink = SinkRecord("t", 0, None, "k", None, "v", 5, kafka_offset=3,
                      timestamp_type="CreateTime")
    moved = sink.new_record("u", 1, None, "k2", None, "v2", 6)
    assert isinstance(moved, SinkRecord) and moved.kafka_offset == 3
    assert (moved.original_topic, moved.original_kafka_partition, moved.original_kafka_offset) \
        == ("t", 0, 3)
    assert moved.topic == "u" and moved.headers == sink.headers
    assert moved.headers is not sink.headers
    src = SourceRecord("t", None, None, None, None, "v", source_partition={"f": "x"},
                       source_offset={"pos": 1})
    assert src.new_record("u", None, None, None, None, "w", None).source_offset == {"pos": 1}
