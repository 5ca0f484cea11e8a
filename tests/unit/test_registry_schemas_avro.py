"""strom.registry.schemas for Avro: validation, the Parsing Canonical Form with the examples of
Avro's own test data, CRC-64-AVRO fingerprints, Confluent's canonical and normalized forms."""

from __future__ import annotations

import json
from typing import Any

import fastavro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.registry.errors import INVALID_SCHEMA, InvalidSchemaError, RegistryError
from strom.registry.schemas import AvroSchema, SchemaReference, SchemaType, parse_schema
from strom.registry.schemas.avro import parsing_canonical_form, rabin_fingerprint, signed64


def avro(value: Any, references: list[SchemaReference] | None = None,
         resolver: Any = None) -> AvroSchema:
    parsed = parse_schema(json.dumps(value) if not isinstance(value, str) else value, None,
                          references or [], resolver)
    assert isinstance(parsed, AvroSchema)
    assert parsed.schema_type is SchemaType.AVRO
    return parsed


# (input, Parsing Canonical Form): cases of Avro's share/test/data/schema-tests.txt
PCF_CASES = [
    ('"null"', '"null"'),
    ('{"type":"null"}', '"null"'),
    ('{"type":"int","logicalType":"date"}', '"int"'),
    ('{"type":"enum","name":"Foo","symbols":["A1"]}',
     '{"name":"Foo","type":"enum","symbols":["A1"]}'),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
     '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}'),
    ('{"name":"foo","type":"fixed","size":15}', '{"name":"foo","type":"fixed","size":15}'),
    ('{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
     '{"name":"x.y.z.foo","type":"fixed","size":32}'),
    ('{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}'),
    ('{ "values":"string", "type":"map"}', '{"type":"map","values":"string"}'),
    ('{"name":"PigValue","type":"record", "fields":[{"name":"value", '
     '"type":["null", "int", "long", "PigValue"]}]}',
     '{"name":"PigValue","type":"record","fields":[{"name":"value",'
     '"type":["null","int","long","PigValue"]}]}'),
    ('["int", "string"]', '["int","string"]'),
    ('{"type":"error","name":"E","namespace":"a","fields":[{"name":"m","type":"string",'
     '"default":"x","doc":"d","order":"ignore","aliases":["n"]}]}',
     '{"name":"a.E","type":"record","fields":[{"name":"m","type":"string"}]}'),
    ('{"type":"record","name":"a.b.R","namespace":"ignored","fields":['
     '{"name":"i","type":{"type":"record","name":"Inner","fields":[]}},'
     '{"name":"j","type":"Inner"},'
     '{"name":"k","type":{"type":"enum","name":"other.E","symbols":["X"]}},'
     '{"name":"l","type":"other.E"}]}',
     '{"name":"a.b.R","type":"record","fields":[{"name":"i","type":{"name":"a.b.Inner",'
     '"type":"record","fields":[]}},{"name":"j","type":"a.b.Inner"},{"name":"k","type":'
     '{"name":"other.E","type":"enum","symbols":["X"]}},{"name":"l","type":"other.E"}]}'),
    ('{"type":"record","name":"U","fields":[{"name":"s","type":"string","doc":"é"}],'
     '"doc":"ü"}', '{"name":"U","type":"record","fields":[{"name":"s","type":"string"}]}'),
]


@pytest.mark.parametrize(("text", "expected"), PCF_CASES)
def test_parsing_canonical_form(text: str, expected: str) -> None:
    assert avro(text).parsing_canonical_form() == expected


# Fingerprints (Java longs) of Avro's schema-tests.txt
FINGERPRINTS = {
    "null": 7195948357588979594,
    "boolean": -6970731678124411036,
    "int": 8247732601305521295,
    "long": -3434872931120570953,
    "float": 5583340709985441680,
    "double": -8181574048448539266,
    "bytes": 5746618253357095269,
    "string": -8142146995180207161,
}


@pytest.mark.parametrize(("name", "fingerprint"), FINGERPRINTS.items())
def test_rabin_fingerprints_of_primitives(name: str, fingerprint: int) -> None:
    assert signed64(avro(f'"{name}"').fingerprint()) == fingerprint


def test_fingerprint_of_empty_input_is_the_seed() -> None:
    assert rabin_fingerprint(b"") == 0xC15D213AA4D7A795
    assert signed64(2**63) == -(2**63)
    assert signed64(5) == 5


def test_fingerprint_differs_when_the_form_differs() -> None:
    a = avro({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    b = avro({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint_sha256() != b.fingerprint_sha256()
    assert len(a.fingerprint_sha256()) == 32


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)


@st.composite
def avro_schemas(draw: st.DrawFn, depth: int = 0, named: list[int] | None = None) -> Any:
    """A random schema whose named types all have distinct names (`named` counts them: a
    name drawn twice would redefine a type, which Avro refuses)."""
    named = [0] if named is None else named
    primitive = st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes",
                                 "string"])
    if depth >= 2:
        return draw(primitive)
    kind = draw(st.sampled_from(["primitive", "record", "enum", "array", "map", "fixed"]))
    if kind == "primitive":
        return draw(primitive)
    if kind == "array":
        return {"type": "array", "items": draw(avro_schemas(depth + 1, named))}
    if kind == "map":
        return {"values": draw(avro_schemas(depth + 1, named)), "type": "map"}
    named[0] += 1
    name = draw(NAMES) + f"_{depth}_{named[0]}"
    if kind == "enum":
        symbols = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
        return {"type": "enum", "name": name, "symbols": symbols, "doc": "d"}
    if kind == "fixed":
        return {"type": "fixed", "name": name, "size": draw(st.integers(0, 64))}
    field_names = draw(st.lists(NAMES, max_size=3, unique=True))
    return {"type": "record", "name": name, "namespace": "ns.x",
            "fields": [{"name": n, "type": draw(avro_schemas(depth + 1, named))}
                       for n in field_names]}


@settings(max_examples=60, deadline=None)
@given(avro_schemas())
def test_pcf_matches_fastavro_and_is_a_fixed_point(value: Any) -> None:
    schema = avro(json.dumps(value))
    pcf = schema.parsing_canonical_form()
    assert pcf == fastavro.schema.to_parsing_canonical_form(value)
    assert avro(pcf).parsing_canonical_form() == pcf
    assert parsing_canonical_form(json.loads(pcf)) == pcf
    # fastavro writes the same CRC-64-AVRO as hex of its little-endian bytes
    expected = fastavro.schema.fingerprint(pcf, "CRC-64-AVRO")
    assert schema.fingerprint().to_bytes(8, "little").hex() == expected


@settings(max_examples=40, deadline=None)
@given(avro_schemas())
def test_whitespace_does_not_change_canonical_or_normalized(value: Any) -> None:
    compact = avro(json.dumps(value, separators=(",", ":")))
    spaced = avro(json.dumps(value, indent=4))
    assert compact.canonical() == spaced.canonical()
    assert compact.identity() == spaced.identity()
    assert compact.identity(normalize=True) == spaced.identity(normalize=True)


def test_canonical_keeps_attributes_and_normalized_folds_names() -> None:
    a = avro('{"type": "record", "name": "R", "namespace": "n", "doc": "x", '
             '"fields": [{"name": "a", "type": {"type": "int", "logicalType": "date"}, '
             '"default": 1}]}')
    b = avro('{"fields": [{"default": 1, "type": {"logicalType": "date", "type": "int"}, '
             '"name": "a"}], "name": "n.R", "type": "record"}')
    assert a.canonical() == ('{"type":"record","name":"R","namespace":"n","doc":"x","fields":'
                             '[{"name":"a","type":{"type":"int","logicalType":"date"},'
                             '"default":1}]}')
    assert a.identity() != b.identity()  # as Confluent without normalize
    assert a.normalized() == b.normalized() == (
        '{"name":"n.R","type":"record","fields":[{"name":"a","type":{"type":"int",'
        '"logicalType":"date"},"default":1}]}')
    assert a.identity(normalize=True) == b.identity(normalize=True)
    c = avro('{"type":"record","name":"n.R","fields":[{"name":"a","type":"int","default":1}]}')
    assert c.normalized() != a.normalized()  # the logical type matters
    assert c.parsing_canonical_form() == a.parsing_canonical_form()  # not to PCF


def test_record_names() -> None:
    assert avro({"type": "record", "name": "R", "namespace": "a.b", "fields": []}
                ).record_names() == ["a.b.R"]
    assert avro('"string"').record_names() == []


INVALID = [
    "not json",
    '"nosuchtype"',
    '{"type":"record","name":"1bad","fields":[]}',
    '{"type":"record","name":"R"}',
    '{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}',
    '{"type":"record","name":"R","fields":[{"name":"a-b","type":"int"}]}',
    '{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}',
    '{"type":"record","name":"R","fields":[{"name":"a","type":["null","int"],"default":1}]}',
    '{"type":"enum","name":"E","symbols":["A","A"]}',
    '{"type":"enum","name":"E","symbols":["A"],"default":"B"}',
    '{"type":"fixed","name":"F","size":-1}',
    '{"type":"fixed","name":"F","size":"4"}',
    '{"type":"fixed","name":"F"}',
    '["int","int"]',
    '["int",["long"]]',
    '{"type":"array"}',
    '{"type":"bytes","logicalType":"decimal","precision":2,"scale":5}',
    '{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"record","name":"R",'
    '"fields":[]}}]}',
    "   ",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_schemas_are_42201(text: str) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse_schema(text)
    assert info.value.error_code == INVALID_SCHEMA
    assert info.value.http_status == 422


def test_valid_union_default_and_recursive_types() -> None:
    avro({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": ["null", "int"], "default": None},
        {"name": "next", "type": ["null", "R"], "default": None}]})
    avro({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": {"type": "fixed", "name": "F", "size": 0}}]})


def test_references_bring_named_types() -> None:
    address = avro({"type": "record", "name": "Address", "namespace": "com.acme",
                    "fields": [{"name": "street", "type": "string"}]})
    ref = SchemaReference("com.acme.Address", "address-value", 1)
    seen: list[SchemaReference] = []

    def resolve(r: SchemaReference) -> AvroSchema:
        seen.append(r)
        return address

    person = avro({"type": "record", "name": "Person", "namespace": "com.acme",
                   "fields": [{"name": "home", "type": "Address"}]}, [ref], resolve)
    assert seen == [ref]
    assert person.references == (ref,)
    assert person.dependencies == {"com.acme.Address": address}
    # the referenced type stays a name in the forms, as Avro's toString(knownTypes)
    assert person.parsing_canonical_form() == (
        '{"name":"com.acme.Person","type":"record","fields":[{"name":"home",'
        '"type":"com.acme.Address"}]}')
    assert person.identity().references == (ref,)
    with pytest.raises(InvalidSchemaError):  # without the reference the type is unknown
        avro({"type": "record", "name": "Person", "namespace": "com.acme",
              "fields": [{"name": "home", "type": "Address"}]})


def test_unresolvable_references_are_invalid() -> None:
    def missing(r: SchemaReference) -> AvroSchema:
        raise RegistryError(40402, "Version 1 not found.")

    ref = SchemaReference("X", "x", 1)
    with pytest.raises(InvalidSchemaError, match="not found"):
        parse_schema('"int"', "AVRO", [ref], missing)
    with pytest.raises(InvalidSchemaError, match="no registry"):
        parse_schema('"int"', "AVRO", [ref], None)
    with pytest.raises(InvalidSchemaError, match="Duplicate"):
        parse_schema('"int"', "AVRO", [ref, ref], lambda r: avro('"int"'))
    json_dep = parse_schema('{"type":"string"}', "JSON")
    with pytest.raises(InvalidSchemaError, match="JSON"):
        parse_schema('"int"', "AVRO", [ref], lambda r: json_dep)


def test_schema_type_names() -> None:
    assert SchemaType.of(None) is SchemaType.AVRO
    assert SchemaType.of("") is SchemaType.AVRO
    assert SchemaType.of("protobuf") is SchemaType.PROTOBUF
    with pytest.raises(InvalidSchemaError):
        SchemaType.of("XML")


def test_pcf_of_raw_json_forms_fastavro_does_not_take() -> None:
    # {"type": <schema>} and {"type": "<named type>"} are schemas too in Avro's Java
    assert parsing_canonical_form({"type": {"type": "int"}}) == '"int"'
    fixed_f = {"type": "fixed", "name": "F", "size": 1}
    assert parsing_canonical_form(
        {"type": "record", "name": "R", "namespace": "a",
         "fields": [{"name": "x", "type": fixed_f}, {"name": "y", "type": {"type": "F"}},
                    {"name": "z", "type": fixed_f}]}
    ) == ('{"name":"a.R","type":"record","fields":[{"name":"x","type":{"name":"a.F",'
          '"type":"fixed","size":1}},{"name":"y","type":"a.F"},{"name":"z","type":"a.F"}]}')


def test_resolver_errors_pass_through() -> None:
    ref = SchemaReference("X", "x", 1)

    def invalid(r: SchemaReference) -> AvroSchema:
        raise InvalidSchemaError("the referenced schema is broken")

    def circular(r: SchemaReference) -> AvroSchema:
        raise RecursionError

    with pytest.raises(InvalidSchemaError, match="broken"):
        parse_schema('"int"', "AVRO", [ref], invalid)
    with pytest.raises(InvalidSchemaError, match="circular"):
        parse_schema('"int"', "AVRO", [ref], circular)


def test_error_bodies() -> None:
    error = RegistryError(40401, "Subject 'x' not found.")
    assert error.body() == {"error_code": 40401, "message": "Subject 'x' not found."}
    assert error.http_status == 404
    assert RegistryError(409, "incompatible").http_status == 409
