"""strom.connect.converters: Kafka's converters, JsonConverter's JSON shapes checked against
the literal JSON of Kafka's JsonConverter docs and tests, and a hypothesis round trip."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.connect import plugins
from strom.connect.converters import (
    ByteArrayConverter,
    DoubleConverter,
    FloatConverter,
    IntegerConverter,
    JsonConverter,
    LongConverter,
    ShortConverter,
    SimpleHeaderConverter,
    StringConverter,
)
from strom.connect.data import (
    BOOLEAN_SCHEMA,
    BYTES_SCHEMA,
    FLOAT32_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_BYTES_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    Schema,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
    Type,
)
from strom.connect.errors import ConfigException, DataException


def json_converter(**configs: Any) -> JsonConverter:
    c = JsonConverter()
    c.configure(configs, False)
    return c


def as_json(data: bytes | None) -> Any:
    assert data is not None
    return json.loads(data)


# -- JsonConverter: Connect -> JSON, the literal shapes of Kafka's JsonConverterTest -------------

STRUCT_SCHEMA = (SchemaBuilder.struct().field("field1", BOOLEAN_SCHEMA)
                 .field("field2", STRING_SCHEMA).field("field3", STRING_SCHEMA)
                 .field("field4", BOOLEAN_SCHEMA).build())


@pytest.mark.parametrize(("schema", "value", "expected"), [
    (BOOLEAN_SCHEMA, True,
     {"schema": {"type": "boolean", "optional": False}, "payload": True}),
    (Schema(Type.INT8), 12, {"schema": {"type": "int8", "optional": False}, "payload": 12}),
    (Schema(Type.FLOAT32), 12.25,
     {"schema": {"type": "float", "optional": False}, "payload": 12.25}),
    (Schema(Type.FLOAT64), 12.2,
     {"schema": {"type": "double", "optional": False}, "payload": 12.2}),
    (BYTES_SCHEMA, b"test-string",
     {"schema": {"type": "bytes", "optional": False}, "payload": "dGVzdC1zdHJpbmc="}),
    (OPTIONAL_STRING_SCHEMA, None,
     {"schema": {"type": "string", "optional": True}, "payload": None}),
    (SchemaBuilder.array(INT32_SCHEMA).build(), [1, 2, 3],
     {"schema": {"type": "array", "items": {"type": "int32", "optional": False},
                 "optional": False}, "payload": [1, 2, 3]}),
    (SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build(), {"key1": 12, "key2": 15},
     {"schema": {"type": "map", "keys": {"type": "string", "optional": False},
                 "values": {"type": "int32", "optional": False}, "optional": False},
      "payload": {"key1": 12, "key2": 15}}),
    (SchemaBuilder.map(INT32_SCHEMA, INT32_SCHEMA).build(), {1: 12, 2: 15},
     {"schema": {"type": "map", "keys": {"type": "int32", "optional": False},
                 "values": {"type": "int32", "optional": False}, "optional": False},
      "payload": [[1, 12], [2, 15]]}),
    (STRUCT_SCHEMA, Struct(STRUCT_SCHEMA).put("field1", True).put("field2", "string2")
     .put("field3", "string3").put("field4", False),
     {"schema": {"type": "struct", "fields": [
         {"type": "boolean", "optional": False, "field": "field1"},
         {"type": "string", "optional": False, "field": "field2"},
         {"type": "string", "optional": False, "field": "field3"},
         {"type": "boolean", "optional": False, "field": "field4"}], "optional": False},
      "payload": {"field1": True, "field2": "string2", "field3": "string3",
                  "field4": False}}),
    (Decimal.schema(2), decimal.Decimal("1.56"),
     {"schema": {"type": "bytes", "optional": False,
                 "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                 "parameters": {"scale": "2"}}, "payload": "AJw="}),
    (Date.SCHEMA, dt.date(1970, 1, 1) + dt.timedelta(days=10000),
     {"schema": {"type": "int32", "optional": False,
                 "name": "org.apache.kafka.connect.data.Date", "version": 1},
      "payload": 10000}),
    (Time.SCHEMA, dt.time(0, 0, 14, 400000),
     {"schema": {"type": "int32", "optional": False,
                 "name": "org.apache.kafka.connect.data.Time", "version": 1},
      "payload": 14400}),
    (Timestamp.SCHEMA, dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        milliseconds=4000000000),
     {"schema": {"type": "int64", "optional": False,
                 "name": "org.apache.kafka.connect.data.Timestamp", "version": 1},
      "payload": 4000000000}),
    (SchemaBuilder.int32().optional().default_value(42).name("n").version(3).doc("d")
     .parameter("p", "v").build(), None,
     {"schema": {"type": "int32", "optional": True, "name": "n", "version": 3, "doc": "d",
                 "parameters": {"p": "v"}, "default": 42}, "payload": 42}),
])
def test_from_connect_data_shapes(schema: Schema, value: Any, expected: Any) -> None:
    assert as_json(json_converter().from_connect_data("t", schema, value)) == expected


def test_output_is_compact_and_key_ordered_as_jackson() -> None:
    schema = SchemaBuilder.struct().name("x").field("a", INT32_SCHEMA).build()
    out = json_converter().from_connect_data("t", schema, Struct(schema).put("a", 1))
    assert out == (b'{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,'
                   b'"field":"a"}],"optional":false,"name":"x"},"payload":{"a":1}}')
    assert json_converter().from_connect_data("t", FLOAT32_SCHEMA, 1.100000023841858) == \
        b'{"schema":{"type":"float","optional":false},"payload":1.1}'


@pytest.mark.parametrize("value", [3.4028234663852886e38, -3.4028234663852886e38,
                                   1.401298464324817e-45])
def test_float32_extremes_round_trip(value: float) -> None:
    """Found by the round trip below: the shortest text of the largest float32 rounded past
    the float32 range."""
    c = json_converter()
    assert c.to_connect_data("t", c.from_connect_data("t", FLOAT32_SCHEMA, value)).value == \
        value


def test_null_schema_and_value_is_null() -> None:
    assert json_converter().from_connect_data("t", None, None) is None
    assert json_converter().to_connect_data("t", None) == (None, None)


def test_schemas_disabled_writes_and_reads_plain_json() -> None:
    c = json_converter(**{"schemas.enable": "false"})
    assert c.from_connect_data("t", None, {"a": [1, 2.5, None, "x"], "b": True}) == \
        b'{"a":[1,2.5,null,"x"],"b":true}'
    assert c.from_connect_data("t", None, {1: "x"}) == b'[[1,"x"]]'
    schema_value = c.to_connect_data("t", b'{"a": [1, 2.5, null, "x"], "b": {"c": 1}}')
    assert schema_value == (None, {"a": [1, 2.5, None, "x"], "b": {"c": 1}})
    assert c.to_connect_data("t", b"12").value == 12


def test_decimal_numeric_format() -> None:
    c = json_converter(**{"decimal.format": "NUMERIC"})
    out = as_json(c.from_connect_data("t", Decimal.schema(2), decimal.Decimal("1.56")))
    assert out["payload"] == 1.56
    back = c.to_connect_data("t", json.dumps(out).encode())
    assert back.value == decimal.Decimal("1.56")
    with pytest.raises(ConfigException):
        json_converter(**{"decimal.format": "HEX"})


@pytest.mark.parametrize(("text", "schema", "value"), [
    ('{"schema": {"type": "boolean"}, "payload": true}', BOOLEAN_SCHEMA, True),
    ('{"schema": {"type": "int64"}, "payload": 12}', INT64_SCHEMA, 12),
    ('{"schema": {"type": "int8"}, "payload": 300}', Schema(Type.INT8), 44),
    ('{"schema": {"type": "bytes"}, "payload": "dGVzdC1zdHJpbmc="}', BYTES_SCHEMA,
     b"test-string"),
    ('{"schema": {"type": "string", "optional": true}, "payload": null}',
     OPTIONAL_STRING_SCHEMA, None),
    ('{"schema": {"type": "int32", "optional": true, "default": 7}, "payload": null}',
     SchemaBuilder.int32().optional().default_value(7).build(), 7),
    ('{"schema": {"type": "map", "keys": {"type": "int32"}, "values": {"type": "int32"}},'
     ' "payload": [[1, 12], [2, 15]]}',
     SchemaBuilder.map(INT32_SCHEMA, INT32_SCHEMA).build(), {1: 12, 2: 15}),
    ('{"schema": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", '
     '"version": 1, "parameters": {"scale": "2"}}, "payload": "AJw="}', Decimal.schema(2),
     decimal.Decimal("1.56")),
    ('{"schema": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", '
     '"version": 1, "parameters": {"scale": "2"}}, "payload": 1.56}', Decimal.schema(2),
     decimal.Decimal("1.56")),
])
def test_to_connect_data(text: str, schema: Schema, value: Any) -> None:
    assert json_converter().to_connect_data("t", text.encode()) == (schema, value)


@pytest.mark.parametrize(("text", "message"), [
    ('{"schema": {"type": "int32"}}', 'requires "schema" and "payload" fields'),
    ('{"a": 1}', 'requires "schema" and "payload" fields'),
    ('{"schema": {"type": "int32"}, "payload": 1, "x": 2}', "may not contain additional"),
    ('{"schema": {"type": "unknown"}, "payload": 1}', "Unknown schema type: unknown"),
    ('{"schema": {}, "payload": 1}', "Schema must contain 'type' field"),
    ('{"schema": {"type": "array"}, "payload": []}', "Array schema did not specify"),
    ('{"schema": {"type": "struct", "fields": 1}, "payload": {}}', "is not an array"),
    ('{"schema": {"type": "int32"}, "payload": null}', "Invalid null value for required INT32"),
    ('{"schema": {"type": "struct", "fields": []}, "payload": 1}',
     "Structs should be encoded as JSON objects, but found NUMBER"),
    ("not json", "serialization error"),
])
def test_to_connect_data_errors(text: str, message: str) -> None:
    with pytest.raises(DataException, match=message):
        json_converter().to_connect_data("t", text.encode())


def test_from_connect_errors() -> None:
    with pytest.raises(DataException, match="null value for field that is required"):
        json_converter().from_connect_data("t", INT32_SCHEMA, None)
    with pytest.raises(DataException, match="Mismatching schema"):
        json_converter().from_connect_data("t", STRUCT_SCHEMA,
                                           Struct(SchemaBuilder.struct().build()))
    with pytest.raises(DataException, match="Invalid type for INT32"):
        json_converter().from_connect_data("t", INT32_SCHEMA, "x")


def test_replace_null_with_default_false_keeps_nulls() -> None:
    schema = SchemaBuilder.int32().optional().default_value(7).build()
    c = json_converter(**{"replace.null.with.default": "false"})
    assert as_json(c.from_connect_data("t", schema, None))["payload"] is None
    text = b'{"schema": {"type": "int32", "optional": true, "default": 7}, "payload": null}'
    assert c.to_connect_data("t", text).value is None


def test_schema_cache_is_bounded() -> None:
    c = json_converter(**{"schemas.cache.size": "2"})
    for i in range(5):
        c.from_connect_data("t", SchemaBuilder.int32().name(f"n{i}").build(), 1)
    assert len(c._from_connect_cache.items) == 2


# -- JsonConverter round trip (hypothesis) -----------------------------------------------------

_PRIMITIVES: dict[Type, st.SearchStrategy[Any]] = {
    Type.INT8: st.integers(-(2**7), 2**7 - 1),
    Type.INT16: st.integers(-(2**15), 2**15 - 1),
    Type.INT32: st.integers(-(2**31), 2**31 - 1),
    Type.INT64: st.integers(-(2**63), 2**63 - 1),
    Type.FLOAT32: st.floats(width=32, allow_nan=False, allow_infinity=False),
    Type.FLOAT64: st.floats(allow_nan=False, allow_infinity=False),
    Type.BOOLEAN: st.booleans(),
    Type.STRING: st.text(max_size=10),
    Type.BYTES: st.binary(max_size=10),
}
_LOGICAL: list[tuple[Schema, st.SearchStrategy[Any]]] = [
    (Decimal.schema(3), st.decimals(min_value=-10**12, max_value=10**12, places=3)),
    (Date.SCHEMA, st.dates(min_value=dt.date(1, 1, 1))),
    (Time.SCHEMA, st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))),
    (Timestamp.SCHEMA, st.datetimes(min_value=dt.datetime(1, 1, 2)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=dt.UTC))),
]


def _optional(schema: Schema, optional: bool) -> Schema:
    if not optional:
        return schema
    return Schema(schema.type, True, schema.default, schema.name, schema.version, schema.doc,
                  schema.parameters, schema.key_schema, schema.value_schema, schema.fields)


@st.composite
def schemas(draw: st.DrawFn, depth: int = 2) -> Schema:
    kinds = ["primitive", "logical"] + (["array", "map", "struct"] if depth > 0 else [])
    kind = draw(st.sampled_from(kinds))
    optional = draw(st.booleans())
    if kind == "primitive":
        schema = Schema(draw(st.sampled_from(list(_PRIMITIVES))))
    elif kind == "logical":
        schema = draw(st.sampled_from(_LOGICAL))[0]
    elif kind == "array":
        schema = SchemaBuilder.array(draw(schemas(depth - 1))).build()
    elif kind == "map":
        key = draw(st.sampled_from([STRING_SCHEMA, INT32_SCHEMA, OPTIONAL_STRING_SCHEMA]))
        schema = SchemaBuilder.map(key, draw(schemas(depth - 1))).build()
    else:
        builder = SchemaBuilder.struct().name(draw(st.none() | st.just("com.example.S")))
        for i in range(draw(st.integers(0, 3))):
            builder.field(f"f{i}", draw(schemas(depth - 1)))
        schema = builder.build()
    return _optional(schema, optional)


@st.composite
def values(draw: st.DrawFn, schema: Schema) -> Any:
    if schema.optional and draw(st.booleans()):
        return None
    for logical, strategy in _LOGICAL:
        if schema.name == logical.name:
            return draw(strategy)
    if schema.type in _PRIMITIVES:
        return draw(_PRIMITIVES[schema.type])
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return draw(st.lists(values(schema.value_schema), max_size=3))
    if schema.type is Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        keys = draw(st.lists(values(schema.key_schema), max_size=3, unique=True))
        return {k: draw(values(schema.value_schema)) for k in keys}
    struct = Struct(schema)
    for f in schema.fields:
        struct.put(f.name, draw(values(f.schema)))
    return struct


@st.composite
def schema_and_value(draw: st.DrawFn) -> tuple[Schema, Any]:
    schema = draw(schemas())
    return schema, draw(values(schema))


@settings(max_examples=300, deadline=None)
@given(schema_and_value())
def test_json_converter_round_trip(case: tuple[Schema, Any]) -> None:
    schema, value = case
    c = json_converter()
    data = c.from_connect_data("t", schema, value)
    back = c.to_connect_data("t", data)
    assert back.schema == schema
    assert back.value == value
    # and a fresh converter (no caches) reads the same
    assert json_converter().to_connect_data("t", data) == back


# -- the other converters ----------------------------------------------------------------------

def test_string_converter() -> None:
    c = StringConverter()
    c.configure({}, False)
    assert c.from_connect_data("t", STRING_SCHEMA, "héllo") == "héllo".encode()
    assert c.from_connect_data("t", None, 12) == b"12"
    assert c.from_connect_data("t", None, True) == b"true"
    assert c.from_connect_data("t", None, None) is None
    assert c.to_connect_data("t", "héllo".encode()) == (OPTIONAL_STRING_SCHEMA, "héllo")
    assert c.to_connect_data("t", None) == (OPTIONAL_STRING_SCHEMA, None)
    latin = StringConverter()
    latin.configure({"converter.encoding": "ISO-8859-1"}, True)
    assert latin.from_connect_data("t", None, "é") == b"\xe9"
    with pytest.raises(DataException, match="Failed to serialize to a string"):
        latin.from_connect_data("t", None, "€")
    with pytest.raises(DataException, match="Unsupported encoding"):
        StringConverter().configure({"converter.encoding": "nope"}, False)


def test_byte_array_converter() -> None:
    c = ByteArrayConverter()
    c.configure({}, False)
    assert c.from_connect_data("t", BYTES_SCHEMA, b"\x00\x01") == b"\x00\x01"
    assert c.to_connect_data("t", b"x") == (OPTIONAL_BYTES_SCHEMA, b"x")
    with pytest.raises(DataException, match="Invalid schema type for ByteArrayConverter: INT32"):
        c.from_connect_data("t", INT32_SCHEMA, b"x")
    with pytest.raises(DataException, match="not compatible with objects of type"):
        c.from_connect_data("t", None, "x")


@pytest.mark.parametrize(("cls", "value", "raw", "schema_type"), [
    (ShortConverter, -2, struct.pack(">h", -2), Type.INT16),
    (IntegerConverter, 2**31 - 1, b"\x7f\xff\xff\xff", Type.INT32),
    (LongConverter, -1, b"\xff" * 8, Type.INT64),
    (FloatConverter, 1.5, struct.pack(">f", 1.5), Type.FLOAT32),
    (DoubleConverter, -2.25, struct.pack(">d", -2.25), Type.FLOAT64),
])
def test_number_converters_big_endian(cls: type, value: Any, raw: bytes,
                                      schema_type: Type) -> None:
    c = cls()
    c.configure({}, False)
    assert c.from_connect_data("t", None, value) == raw
    back = c.to_connect_data("t", raw)
    assert back.value == value and back.schema.type is schema_type and back.schema.optional
    assert c.to_connect_data("t", None).value is None
    with pytest.raises(DataException, match="is not"):
        c.to_connect_data("t", raw + b"\x00")
    with pytest.raises(DataException, match="Failed to serialize"):
        c.from_connect_data("t", None, "x")


def test_integer_converter_range() -> None:
    with pytest.raises(DataException):
        IntegerConverter().from_connect_data("t", None, 2**31)


@pytest.mark.parametrize(("schema", "value", "text"), [
    (STRING_SCHEMA, "hello", "hello"),
    (INT32_SCHEMA, 42, "42"),
    (BOOLEAN_SCHEMA, True, "true"),
    (SchemaBuilder.array(INT32_SCHEMA).build(), [1, 2], "[1,2]"),
    (SchemaBuilder.map(STRING_SCHEMA, INT32_SCHEMA).build(), {"a": 1}, '{"a":1}'),
    (Date.SCHEMA, dt.date(2020, 1, 31), "2020-01-31"),
    (Timestamp.SCHEMA, dt.datetime(2020, 1, 31, 1, 2, 3, 4000, tzinfo=dt.UTC),
     "2020-01-31T01:02:03.004Z"),
])
def test_simple_header_converter_round_trip(schema: Schema, value: Any, text: str) -> None:
    c = SimpleHeaderConverter()
    c.configure({})
    raw = c.from_connect_header("t", "h", schema, value)
    assert raw == text.encode()
    back = c.to_connect_header("t", "h", raw)
    assert back.value == value


@pytest.mark.parametrize(("text", "type_", "value"), [
    ("1", Type.INT8, 1), ("300", Type.INT16, 300), ("70000", Type.INT32, 70000),
    ("5000000000", Type.INT64, 5000000000), ("1.5", Type.FLOAT32, 1.5),
    ("true", Type.BOOLEAN, True), ("hello world", Type.STRING, "hello world"),
    ("", Type.STRING, ""), ('"quoted"', Type.STRING, "quoted"),
])
def test_simple_header_converter_parses_as_values(text: str, type_: Type, value: Any) -> None:
    back = SimpleHeaderConverter().to_connect_header("t", "h", text.encode())
    assert back.schema is not None and back.schema.type is type_ and back.value == value
    assert SimpleHeaderConverter().to_connect_header("t", "h", b"null") == (None, None)
    assert SimpleHeaderConverter().to_connect_header("t", "h", None) == (None, None)


def test_json_converter_is_a_header_converter() -> None:
    c = json_converter()
    raw = c.from_connect_header("t", "h", INT32_SCHEMA, 5)
    assert c.to_connect_header("t", "h", raw) == (INT32_SCHEMA, 5)


@pytest.mark.parametrize(("name", "cls"), [
    ("org.apache.kafka.connect.json.JsonConverter", JsonConverter),
    ("JsonConverter", JsonConverter), ("Json", JsonConverter),
    ("org.apache.kafka.connect.storage.StringConverter", StringConverter),
    ("org.apache.kafka.connect.converters.ByteArrayConverter", ByteArrayConverter),
    ("org.apache.kafka.connect.converters.LongConverter", LongConverter),
    ("strom.connect.converters.simple.StringConverter", StringConverter),
    ("strom.connect.converters.simple:StringConverter", StringConverter),
])
def test_plugin_lookup(name: str, cls: type) -> None:
    assert plugins.converter(name) is cls


def test_plugin_lookup_header_converters_and_registration() -> None:
    assert plugins.header_converter(
        "org.apache.kafka.connect.storage.SimpleHeaderConverter") is SimpleHeaderConverter
    with pytest.raises(ConfigException, match="could not be found"):
        plugins.converter("com.example.Nope")

    class Mine(StringConverter):
        pass

    plugins.register_converter(Mine, "com.example.Mine", "Mine")
    assert plugins.converter("com.example.Mine") is Mine and plugins.converter("Mine") is Mine
    assert "org.apache.kafka.connect.json.JsonConverter" in plugins.full_names("converter")


ENVELOPE_SCHEMA = ('{"type":"struct","fields":[{"field":"id","type":"int64","optional":false},'
                   '{"field":"x","type":"double","optional":true}],"optional":false}')
ENVELOPES = [text.replace("@S@", ENVELOPE_SCHEMA) for text in [
    '{"schema":@S@,"payload":{"id":1,"x":1.5}}',
    '{"schema":@S@,"payload":{"id":2,"x":null}}',  # same schema text again
    '{"schema":{"type":"int64","optional":false},"payload":12345678901234567890}',
    '{"schema":@S@,"payload":{"id":3}} \n',
    '{"schema":@S@,"payload":{"id":4} }',
    '{"schema":@S@,"payload":{"id":5},"extra":1}',
    '{"schema":@S@,"payload":{"id":6}}garbage',
    '{"schema":@S@, "payload":{"id":7}}',
    '{"payload":{"id":8},"schema":@S@}',
    '{"schema":@S@,"payload":{"id":"nine"}}',
    '{"schema":null,"payload":{"a":1}}',
    '{"schema":{"type":"nope"},"payload":1}',
    '{"schema":1,"payload":2}',
    '{"schema":{"type":"string","optional":false},"payload":"unterminated"',
]]


def test_envelope_fast_path_reads_as_the_general_path() -> None:
    """`{"schema":S,"payload":P}` as JsonConverter writes it is read without parsing S again
    when S is the previous record's text; every input (other spellings, errors) reads the same
    as through json.loads of the whole value."""
    def read(converter: JsonConverter, text: str) -> tuple[Any, ...]:
        try:
            result = converter.to_connect_data("t", text.encode())
        except DataException as error:
            return "error", str(error)
        return "ok", result.schema, repr(result.value)

    fast = json_converter()
    general = json_converter()
    general._envelope = lambda data: None  # type: ignore[method-assign]
    for text in ENVELOPES + ENVELOPES[::-1]:
        assert read(fast, text) == read(general, text), text
