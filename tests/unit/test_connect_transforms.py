"""strom.connect.transforms: Kafka's SMTs, schemaless and with schemas, $Key variants, config
errors; predicates; TransformationChain config parsing with predicates and negate."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from typing import Any

import pytest

from strom.connect import plugins
from strom.connect.config import ConfigException
from strom.connect.data import (
    BOOLEAN_SCHEMA,
    FLOAT64_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_INT32_SCHEMA,
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
)
from strom.connect.errors import DataException
from strom.connect.records import SinkRecord, SourceRecord
from strom.connect.transforms import TransformationChain

T = "org.apache.kafka.connect.transforms."
TS = 1_577_836_800_000  # 2020-01-01T00:00:00Z


def make(name: str, **configs: Any) -> Any:
    cls = plugins.transformation(name)
    t = cls()
    t.configure({k.replace("_", "."): v for k, v in configs.items()})
    return t


def make_raw(name: str, configs: Mapping[str, Any]) -> Any:
    t = plugins.transformation(name)()
    t.configure(configs)
    return t


def sink(value: Any = None, schema: Schema | None = None, key: Any = None,
         key_schema: Schema | None = None, topic: str = "test", headers: Headers | None = None,
         timestamp: int | None = TS) -> SinkRecord:
    return SinkRecord(topic, 0, key_schema, key, schema, value, timestamp,
                      headers or Headers(), kafka_offset=42)


SIMPLE = (SchemaBuilder.struct().name("simple").field("magic", INT64_SCHEMA)
          .field("name", OPTIONAL_STRING_SCHEMA).build())


def simple(magic: int = 42, name: str | None = "x") -> Struct:
    return Struct(SIMPLE).put("magic", magic).put("name", name)


# -- InsertField -------------------------------------------------------------------------------

INSERT_ALL = {"topic.field": "topic_field!", "partition.field": "partition_field",
              "offset.field": "offset_field!", "timestamp.field": "timestamp_field?",
              "static.field": "instance_id", "static.value": "my-instance-id"}


def test_insert_field_schemaless() -> None:
    out = make_raw(T + "InsertField$Value", INSERT_ALL).apply(sink({"magic": 42}))
    assert out.value == {"magic": 42, "topic_field": "test", "partition_field": 0,
                         "offset_field": 42, "timestamp_field": TS,
                         "instance_id": "my-instance-id"}
    assert out.value_schema is None


def test_insert_field_with_schema() -> None:
    out = make_raw(T + "InsertField$Value", INSERT_ALL).apply(sink(simple(), SIMPLE))
    schema = out.value_schema
    assert schema.name == "simple"
    assert [(f.name, f.schema) for f in schema.fields] == [
        ("magic", INT64_SCHEMA), ("name", OPTIONAL_STRING_SCHEMA),
        ("topic_field", STRING_SCHEMA), ("partition_field", OPTIONAL_INT32_SCHEMA),
        ("offset_field", INT64_SCHEMA),
        ("timestamp_field", Timestamp.builder().optional().build()),
        ("instance_id", OPTIONAL_STRING_SCHEMA)]
    assert out.value.get("timestamp_field") == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert out.value.get("offset_field") == 42 and out.value.get("magic") == 42
    again = make_raw(T + "InsertField$Value", INSERT_ALL)
    first = again.apply(sink(simple(), SIMPLE)).value_schema
    assert again.apply(sink(simple(7), SIMPLE)).value_schema is first  # cached


def test_insert_field_key_and_tombstone_and_source_offset() -> None:
    t = make(T + "InsertField$Key", **{"topic.field": "t"})
    out = t.apply(sink("v", key={"k": 1}))
    assert out.key == {"k": 1, "t": "test"} and out.value == "v"
    tomb = sink(None)
    assert make(T + "InsertField$Value", **{"topic.field": "t"}).apply(tomb) is tomb
    source = SourceRecord("s", 0, None, None, None, {"a": 1})
    with pytest.raises(DataException, match="Only SinkRecord supported"):
        make(T + "InsertField$Value", **{"offset.field": "o"}).apply(source)
    with pytest.raises(DataException, match="Only Map objects supported"):
        make(T + "InsertField$Value", **{"topic.field": "t"}).apply(sink("scalar"))


# -- ReplaceField ------------------------------------------------------------------------------

@pytest.mark.parametrize("configs", [
    {"exclude": "dont", "renames": "abc:xyz,foo:bar"},
    {"blacklist": "dont", "renames": "abc:xyz,foo:bar"},
])
def test_replace_field_schemaless(configs: dict[str, str]) -> None:
    t = make_raw(T + "ReplaceField$Value", configs)
    out = t.apply(sink({"dont": "whatever", "abc": 42, "foo": True, "etc": "etc"}))
    assert out.value == {"xyz": 42, "bar": True, "etc": "etc"}


def test_replace_field_include_with_schema() -> None:
    schema = (SchemaBuilder.struct().field("dont", STRING_SCHEMA).field("abc", INT32_SCHEMA)
              .field("foo", BOOLEAN_SCHEMA).field("etc", STRING_SCHEMA).build())
    value = (Struct(schema).put("dont", "whatever").put("abc", 42).put("foo", True)
             .put("etc", "etc"))
    for configs in ({"include": "abc,foo", "renames": "abc:xyz,foo:bar"},
                    {"whitelist": "abc,foo", "renames": "abc:xyz,foo:bar"}):
        out = make_raw(T + "ReplaceField$Value", configs).apply(sink(value, schema))
        assert [f.name for f in out.value_schema.fields] == ["xyz", "bar"]
        assert out.value.get("xyz") == 42 and out.value.get("bar") is True


def test_replace_field_key_and_bad_rename() -> None:
    out = make(T + "ReplaceField$Key", exclude="a").apply(sink("v", key={"a": 1, "b": 2}))
    assert out.key == {"b": 2}
    with pytest.raises(ConfigException, match="Invalid rename mapping: a"):
        make(T + "ReplaceField$Value", renames="a")


# -- MaskField ---------------------------------------------------------------------------------

def test_mask_field_schemaless() -> None:
    value = {"magic": 42, "bool": True, "byte": 5, "f": 1.5, "s": "x", "dec": decimal.Decimal(5),
             "date": dt.datetime(2020, 1, 1), "list": [1], "map": {"a": 1}, "keep": "k"}
    out = make_raw(T + "MaskField$Value",
                   {"fields": "magic,bool,byte,f,s,dec,date,list,map"}).apply(sink(value))
    assert out.value == {"magic": 0, "bool": False, "byte": 0, "f": 0.0, "s": "",
                         "dec": decimal.Decimal(0),
                         "date": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "list": [],
                         "map": {}, "keep": "k"}


def test_mask_field_with_schema_and_replacement() -> None:
    out = make(T + "MaskField$Value", fields="magic,name").apply(sink(simple(), SIMPLE))
    assert out.value == Struct(SIMPLE).put("magic", 0).put("name", "")
    out = make(T + "MaskField$Value", fields="magic,name",
               replacement="123").apply(sink(simple(), SIMPLE))
    assert out.value == Struct(SIMPLE).put("magic", 123).put("name", "123")
    with pytest.raises(DataException, match="Unable to convert abc"):
        make(T + "MaskField$Value", fields="magic", replacement="abc").apply(
            sink(simple(), SIMPLE))
    with pytest.raises(ConfigException, match="String must be non-empty"):
        make(T + "MaskField$Value", fields="magic", replacement="")
    with pytest.raises(ConfigException, match="fields"):
        make(T + "MaskField$Value")
    out = make(T + "MaskField$Key", fields="k").apply(sink("v", key={"k": "secret"}))
    assert out.key == {"k": ""}


# -- Cast --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("int8", 128, -128), ("int16", "42", 42), ("int32", 42.9, 42), ("int64", True, 1),
    ("float32", 42, 42.0), ("float64", "1.5", 1.5), ("boolean", 0, False),
    ("boolean", "TRUE", True), ("string", 42, "42"), ("string", True, "true"),
    ("string", b"\x00\x01", "AAE="),
])
def test_cast_whole_value_schemaless(spec: str, value: Any, expected: Any) -> None:
    out = make(T + "Cast$Value", spec=spec).apply(sink(value))
    assert out.value == expected and type(out.value) is type(expected)


def test_cast_fields_with_schema() -> None:
    schema = (SchemaBuilder.struct().field("int8", SchemaBuilder.int8().optional().build())
              .field("s", STRING_SCHEMA).field("b", BOOLEAN_SCHEMA)
              .field("d", Decimal.schema(2)).field("other", STRING_SCHEMA).build())
    value = (Struct(schema).put("int8", 8).put("s", "12").put("b", True)
             .put("d", decimal.Decimal("1.25")).put("other", "x"))
    out = make(T + "Cast$Value", spec="int8:int32,s:int64,b:string,d:float64").apply(
        sink(value, schema))
    types = {f.name: (f.schema.type, f.schema.optional) for f in out.value_schema.fields}
    assert types == {"int8": (Type.INT32, True), "s": (Type.INT64, False),
                     "b": (Type.STRING, False), "d": (Type.FLOAT64, False),
                     "other": (Type.STRING, False)}
    assert [out.value.get(n) for n in ("int8", "s", "b", "d", "other")] == \
        [8, 12, "true", 1.25, "x"]


def test_cast_schemaless_fields_and_key_and_errors() -> None:
    out = make(T + "Cast$Value", spec="a:int32,b:string").apply(sink({"a": "7", "b": 1,
                                                                       "c": 2}))
    assert out.value == {"a": 7, "b": "1", "c": 2}
    out = make(T + "Cast$Key", spec="int32").apply(sink("v", key="5", key_schema=STRING_SCHEMA))
    assert out.key == 5 and out.key_schema == INT32_SCHEMA
    with pytest.raises(ConfigException, match="does not support casting to BYTES"):
        make(T + "Cast$Value", spec="bytes")
    with pytest.raises(ConfigException, match="Invalid type found in casting spec: nope"):
        make(T + "Cast$Value", spec="a:nope")
    with pytest.raises(ConfigException, match="may ony specify a single cast"):
        make(T + "Cast$Value", spec="int32,a:int64")
    with pytest.raises(DataException, match="does not support casting from MAP"):
        make(T + "Cast$Value", spec="int32").apply(
            sink({"a": 1}, SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build()))


# -- TimestampConverter ------------------------------------------------------------------------

DATE_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=1, hours=1, minutes=1,
                                                                   seconds=1, milliseconds=1)
DATE_TIME_MS = 90061001
STRING_FMT = "yyyy MM dd HH mm ss SSS z"
DATE_TIME_STRING = "1970 01 02 01 01 01 001 UTC"


@pytest.mark.parametrize(("target", "configs", "value", "expected"), [
    ("Timestamp", {}, DATE_TIME_MS, DATE_TIME),
    ("unix", {}, DATE_TIME, DATE_TIME_MS),
    ("unix", {"unix.precision": "seconds"}, DATE_TIME, 90061),
    ("unix", {"unix.precision": "microseconds"}, DATE_TIME, 90061001000),
    ("unix", {"unix.precision": "nanoseconds"}, DATE_TIME, 90061001000000),
    ("Timestamp", {"unix.precision": "seconds"}, 90061, DATE_TIME.replace(microsecond=0)),
    ("Date", {}, DATE_TIME, dt.date(1970, 1, 2)),
    ("Time", {}, DATE_TIME, dt.time(1, 1, 1, 1000)),
    ("string", {"format": STRING_FMT}, DATE_TIME, DATE_TIME_STRING),
    ("Timestamp", {"format": STRING_FMT}, DATE_TIME_STRING, DATE_TIME),
    ("string", {"format": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"}, DATE_TIME,
     "1970-01-02T01:01:01.001Z"),
])
def test_timestamp_converter_schemaless(target: str, configs: dict[str, str], value: Any,
                                        expected: Any) -> None:
    t = make_raw(T + "TimestampConverter$Value", {"target.type": target, **configs})
    assert t.apply(sink(value)).value == expected
    field = make_raw(T + "TimestampConverter$Value",
                     {"target.type": target, "field": "ts", **configs})
    assert field.apply(sink({"ts": value, "other": 1})).value == {"ts": expected, "other": 1}


@pytest.mark.parametrize(("source_schema", "value", "target", "schema", "expected"), [
    (Timestamp.SCHEMA, DATE_TIME, "unix", INT64_SCHEMA, DATE_TIME_MS),
    (INT64_SCHEMA, DATE_TIME_MS, "Timestamp", Timestamp.SCHEMA, DATE_TIME),
    (Timestamp.SCHEMA, DATE_TIME, "Date", Date.SCHEMA, dt.date(1970, 1, 2)),
    (Timestamp.SCHEMA, DATE_TIME, "Time", Time.SCHEMA, dt.time(1, 1, 1, 1000)),
    (Timestamp.SCHEMA, DATE_TIME, "string", STRING_SCHEMA, DATE_TIME_STRING),
    (STRING_SCHEMA, DATE_TIME_STRING, "Timestamp", Timestamp.SCHEMA, DATE_TIME),
])
def test_timestamp_converter_with_schema(source_schema: Schema, value: Any, target: str,
                                         schema: Schema, expected: Any) -> None:
    t = make_raw(T + "TimestampConverter$Value", {"target.type": target, "format": STRING_FMT})
    out = t.apply(sink(value, source_schema))
    assert out.value_schema == schema and out.value == expected
    struct_schema = SchemaBuilder.struct().field("ts", source_schema).field(
        "other", STRING_SCHEMA).build()
    t = make_raw(T + "TimestampConverter$Value",
                 {"target.type": target, "format": STRING_FMT, "field": "ts"})
    out = t.apply(sink(Struct(struct_schema).put("ts", value).put("other", "o"), struct_schema))
    assert out.value_schema.field("ts").schema == schema
    assert out.value.get("ts") == expected and out.value.get("other") == "o"


def test_timestamp_converter_key_and_errors() -> None:
    t = make_raw(T + "TimestampConverter$Key", {"target.type": "unix"})
    assert t.apply(sink("v", key=DATE_TIME, key_schema=Timestamp.SCHEMA)).key == DATE_TIME_MS
    with pytest.raises(ConfigException, match="String must be one of"):
        make_raw(T + "TimestampConverter$Value", {"target.type": "invalid"})
    with pytest.raises(ConfigException, match="requires format option"):
        make_raw(T + "TimestampConverter$Value", {"target.type": "string"})
    with pytest.raises(ConfigException, match="Missing required configuration"):
        make_raw(T + "TimestampConverter$Value", {})
    t = make_raw(T + "TimestampConverter$Value", {"target.type": "unix", "format": "yyyy"})
    with pytest.raises(DataException, match="Could not parse timestamp"):
        t.apply(sink("not a year"))


# -- ExtractField, HoistField, ValueToKey, Flatten ---------------------------------------------

def test_extract_field() -> None:
    assert make(T + "ExtractField$Key", field="magic").apply(
        sink("v", key={"magic": 42})).key == 42
    out = make(T + "ExtractField$Value", field="magic").apply(sink(simple(), SIMPLE))
    assert out.value == 42 and out.value_schema == INT64_SCHEMA
    assert make(T + "ExtractField$Value", field="magic").apply(sink(None)).value is None
    with pytest.raises(DataException, match="Unknown field: nope"):
        make(T + "ExtractField$Value", field="nope").apply(sink(simple(), SIMPLE))
    # KIP-821 nested paths
    nested = {"a": {"b": {"c": 1}}, "a.b": 2}
    v2 = {"field.syntax.version": "V2"}
    assert make_raw(T + "ExtractField$Value", {"field": "a.b.c", **v2}).apply(
        sink(nested)).value == 1
    assert make_raw(T + "ExtractField$Value", {"field": "`a.b`", **v2}).apply(
        sink(nested)).value == 2
    assert make_raw(T + "ExtractField$Value", {"field": "a.b"}).apply(sink(nested)).value == 2
    inner = SchemaBuilder.struct().field("c", INT32_SCHEMA).build()
    outer = SchemaBuilder.struct().field("b", inner).build()
    out = make_raw(T + "ExtractField$Value", {"field": "b.c", **v2}).apply(
        sink(Struct(outer).put("b", Struct(inner).put("c", 5)), outer))
    assert out.value == 5 and out.value_schema == INT32_SCHEMA


def test_hoist_field() -> None:
    assert make(T + "HoistField$Key", field="magic").apply(sink("v", key=42)).key == \
        {"magic": 42}
    out = make(T + "HoistField$Value", field="magic").apply(sink(42, INT32_SCHEMA))
    assert out.value_schema == SchemaBuilder.struct().field("magic", INT32_SCHEMA).build()
    assert out.value.get("magic") == 42


def test_value_to_key() -> None:
    out = make(T + "ValueToKey", fields="a,b").apply(sink({"a": 1, "b": 2, "c": 3}))
    assert out.key == {"a": 1, "b": 2} and out.key_schema is None
    schema = (SchemaBuilder.struct().field("a", INT32_SCHEMA).field("b", INT32_SCHEMA)
              .field("c", INT32_SCHEMA).build())
    out = make(T + "ValueToKey", fields="a,b").apply(
        sink(Struct(schema).put("a", 1).put("b", 2).put("c", 3), schema))
    expected = SchemaBuilder.struct().field("a", INT32_SCHEMA).field("b", INT32_SCHEMA).build()
    assert out.key_schema == expected and out.key == Struct(expected).put("a", 1).put("b", 2)
    with pytest.raises(DataException, match="Field does not exist: zz"):
        make(T + "ValueToKey", fields="zz").apply(sink(Struct(schema).put("a", 1).put(
            "b", 2).put("c", 3), schema))


def test_flatten_schemaless() -> None:
    value = {"A": {"B": {"int": 1, "list": [1, 2]}, "s": "x"}, "top": None}
    out = make(T + "Flatten$Value").apply(sink(value))
    assert out.value == {"A.B.int": 1, "A.B.list": [1, 2], "A.s": "x", "top": None}
    out = make(T + "Flatten$Key", delimiter="#").apply(sink("v", key={"a": {"b": 1}}))
    assert out.key == {"a#b": 1}


def test_flatten_with_schema() -> None:
    inner = SchemaBuilder.struct().field("int", INT32_SCHEMA).field(
        "m", SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build()).build()
    opt_inner = SchemaBuilder.struct().field("x", INT32_SCHEMA).optional().build()
    outer = (SchemaBuilder.struct().name("o").field("A", inner).field("B", opt_inner)
             .field("f", FLOAT64_SCHEMA).build())
    value = (Struct(outer).put("A", Struct(inner).put("int", 1).put("m", {"k": 2}))
             .put("f", 1.5))
    out = make(T + "Flatten$Value").apply(sink(value, outer))
    fields = {f.name: f.schema for f in out.value_schema.fields}
    assert out.value_schema.name == "o"
    assert fields["A.int"] == INT32_SCHEMA and fields["B.x"] == OPTIONAL_INT32_SCHEMA
    assert fields["A.m"].type is Type.MAP
    assert out.value.get("A.int") == 1 and out.value.get("A.m") == {"k": 2}
    assert out.value.get("B.x") is None and out.value.get("f") == 1.5


# -- RegexRouter, TimestampRouter, Filter ------------------------------------------------------

@pytest.mark.parametrize(("regex", "replacement", "topic", "expected"), [
    ("foo", "bar", "foo", "bar"), ("foo", "bar", "orig", "orig"),
    ("foo-(.*)", "bar-$1", "foo-example", "bar-example"),
    ("(.*)-(.*)", "$2.$1", "a-b", "b.a"),
    (r"(.*)", r"\$$1", "x", "$x"),
    ("foo", "bar", "foo-suffix", "foo-suffix"),  # must match the whole topic
])
def test_regex_router(regex: str, replacement: str, topic: str, expected: str) -> None:
    t = make(T + "RegexRouter", regex=regex, replacement=replacement)
    assert t.apply(sink("v", topic=topic)).topic == expected


def test_timestamp_router() -> None:
    assert make(T + "TimestampRouter").apply(sink("v")).topic == "test-20200101"
    t = make_raw(T + "TimestampRouter", {"topic.format": "${timestamp}_${topic}",
                                         "timestamp.format": "yyyy-MM-dd'T'HH"})
    assert t.apply(sink("v")).topic == "2020-01-01T00_test"
    with pytest.raises(DataException, match="Timestamp missing on record"):
        make(T + "TimestampRouter").apply(sink("v", timestamp=None))


def test_filter_drops_everything() -> None:
    assert make(T + "Filter").apply(sink("v")) is None


# -- headers -----------------------------------------------------------------------------------

def test_header_from_schemaless_copy_and_move() -> None:
    configs = {"fields": "a,b", "headers": "ha,hb", "operation": "copy"}
    out = make_raw(T + "HeaderFrom$Value", configs).apply(
        sink({"a": 1, "b": "x", "c": 3}, headers=Headers().add("old", 0)))
    assert out.value == {"a": 1, "b": "x", "c": 3}
    assert [(h.key, h.value) for h in out.headers] == [("old", 0), ("ha", 1), ("hb", "x")]
    out = make_raw(T + "HeaderFrom$Value", {**configs, "operation": "move"}).apply(
        sink({"a": 1, "b": "x", "c": 3}))
    assert out.value == {"c": 3}


def test_header_from_with_schema_move_and_key() -> None:
    out = make_raw(T + "HeaderFrom$Value", {"fields": "magic", "headers": "m",
                                            "operation": "move"}).apply(sink(simple(), SIMPLE))
    assert [f.name for f in out.value_schema.fields] == ["name"]
    header = out.headers.last_with_name("m")
    assert header.value == 42 and header.schema == INT64_SCHEMA
    out = make_raw(T + "HeaderFrom$Key", {"fields": "k", "headers": "hk",
                                          "operation": "copy"}).apply(sink("v", key={"k": 1}))
    assert out.headers.last_with_name("hk").value == 1
    with pytest.raises(ConfigException, match="same number of elements"):
        make_raw(T + "HeaderFrom$Value", {"fields": "a,b", "headers": "h",
                                          "operation": "copy"})
    with pytest.raises(ConfigException, match="String must be one of: move, copy"):
        make_raw(T + "HeaderFrom$Value", {"fields": "a", "headers": "h", "operation": "x"})


def test_insert_and_drop_headers() -> None:
    out = make_raw(T + "InsertHeader", {"header": "h", "value.literal": "42"}).apply(
        sink("v", headers=Headers().add("a", 1)))
    header = out.headers.last_with_name("h")
    assert header.value == 42 and header.schema.type is Type.INT8
    out = make_raw(T + "InsertHeader", {"header": "h", "value.literal": "hello world"}).apply(
        sink("v"))
    assert out.headers.last_with_name("h").value == "hello world"
    hs = Headers().add("a", 1).add("b", 2).add("a", 3).add("c", 4)
    out = make(T + "DropHeaders", headers="a,c").apply(sink("v", headers=hs))
    assert [h.key for h in out.headers] == ["b"] and len(hs) == 4
    with pytest.raises(ConfigException):
        make(T + "DropHeaders", headers="")


# -- predicates and the chain ------------------------------------------------------------------

P = T + "predicates."


def test_predicates() -> None:
    topic = plugins.predicate(P + "TopicNameMatches")()
    topic.configure({"pattern": "my-prefix-.*"})
    assert topic.test(sink("v", topic="my-prefix-x")) and not topic.test(sink("v"))
    with pytest.raises(ConfigException, match="Invalid regex"):
        plugins.predicate("TopicNameMatches")().configure({"pattern": "["})
    has = plugins.predicate(P + "HasHeaderKey")()
    has.configure({"name": "h"})
    assert has.test(sink("v", headers=Headers().add("h", None))) and not has.test(sink("v"))
    tomb = plugins.predicate(P + "RecordIsTombstone")()
    tomb.configure({})
    assert tomb.test(sink(None)) and not tomb.test(sink("v"))


CHAIN = {
    "transforms": "insert, drop",
    "transforms.insert.type": T + "InsertField$Value",
    "transforms.insert.static.field": "origin",
    "transforms.insert.static.value": "strom",
    "transforms.insert.predicate": "isOrders",
    "transforms.drop.type": T + "Filter",
    "transforms.drop.predicate": "hasSkip",
    "predicates": "isOrders,hasSkip",
    "predicates.isOrders.type": P + "TopicNameMatches",
    "predicates.isOrders.pattern": "orders.*",
    "predicates.hasSkip.type": P + "HasHeaderKey",
    "predicates.hasSkip.name": "skip",
}


def test_chain_applies_in_order_with_predicates() -> None:
    chain = TransformationChain.from_config(CHAIN)
    assert len(chain) == 2
    assert chain.apply(sink({"a": 1}, topic="orders-eu")).value == {"a": 1, "origin": "strom"}
    assert chain.apply(sink({"a": 1}, topic="users")).value == {"a": 1}
    assert chain.apply(sink({"a": 1}, headers=Headers().add("skip", True))) is None
    chain.close()


def test_chain_negate() -> None:
    chain = TransformationChain.from_config(
        {**CHAIN, "transforms.insert.negate": "true", "transforms.drop.negate": "true"})
    assert chain.apply(sink({"a": 1}, topic="users", headers=Headers().add("skip", 1))
                       ).value == {"a": 1, "origin": "strom"}
    assert chain.apply(sink({"a": 1}, topic="users")) is None


@pytest.mark.parametrize(("override", "message"), [
    ({"transforms.insert.type": None}, 'Missing required configuration "transforms.insert.type"'),
    ({"transforms.insert.type": "com.example.Nope"}, "could not be found"),
    ({"transforms.insert.predicate": "nope"}, "Predicate is not defined"),
    ({"transforms.insert.static.value": None}, "No value specified for static field"),
    ({"predicates.isOrders.pattern": None}, "Missing required configuration"),
    ({"transforms": "insert,insert"}, "Duplicate alias"),
    ({"transforms.insert.predicate": None, "transforms.insert.negate": "true"},
     "negate can only be used with a predicate"),
])
def test_chain_config_errors(override: dict[str, Any], message: str) -> None:
    props = {**CHAIN, **override}
    props = {k: v for k, v in props.items() if v is not None}
    with pytest.raises(ConfigException, match=message):
        TransformationChain.from_config(props)


def test_empty_chain_is_identity() -> None:
    record = sink("v")
    assert TransformationChain.from_config({}).apply(record) is record


@pytest.mark.parametrize("name", [
    T + "InsertField$Key", T + "InsertField$Value", "InsertField$Value", "InsertField.Value",
    T + "ReplaceField$Value", T + "MaskField$Key", T + "Cast$Value",
    T + "TimestampConverter$Key", T + "ExtractField$Value", T + "HoistField$Key",
    T + "ValueToKey", T + "Flatten$Value", T + "RegexRouter", T + "TimestampRouter",
    T + "Filter", T + "HeaderFrom$Value", T + "InsertHeader", T + "DropHeaders",
])
def test_every_transform_resolves_and_has_a_config_def(name: str) -> None:
    cls = plugins.transformation(name)
    assert cls().config_def() is not None
