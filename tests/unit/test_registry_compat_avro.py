"""Avro compatibility, table-driven: evolutions accepted and refused per level, with the Avro
specification's resolution rules and the examples of Confluent's schema evolution docs; the
transitive levels over three versions; Confluent's verbose messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from strom.registry.compatibility import (
    CompatibilityLevel,
    check_compatibility,
    incompatibilities,
)
from strom.registry.errors import RegistryError
from strom.registry.schemas import ParsedSchema, parse_schema


def record(*fields: dict[str, Any], name: str = "User", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "com.acme", "fields": list(fields),
            **extra}


def f(name: str, kind: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Color", "symbols": list(symbols), **extra}


def fixed(size: int, name: str = "Hash") -> dict[str, Any]:
    return {"type": "fixed", "name": name, "size": size}


def parse(value: Any) -> ParsedSchema:
    return parse_schema(json.dumps(value))


B, BT = CompatibilityLevel.BACKWARD, CompatibilityLevel.BACKWARD_TRANSITIVE
F, FT = CompatibilityLevel.FORWARD, CompatibilityLevel.FORWARD_TRANSITIVE
FU, FUT = CompatibilityLevel.FULL, CompatibilityLevel.FULL_TRANSITIVE
N = CompatibilityLevel.NONE

NAME = f("name", "string")
AGE_DEFAULT = f("age", "int", default=0)
AGE = f("age", "int")

# (case, versions oldest -> newest (the last is the one registered), level, error types)
CASES: list[tuple[str, list[Any], CompatibilityLevel, list[str]]] = [
    # Confluent's docs: BACKWARD lets you delete fields and add optional ones
    ("add field with default", [record(NAME), record(NAME, AGE_DEFAULT)], B, []),
    ("add field without default", [record(NAME), record(NAME, AGE)], B,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("delete field", [record(NAME, AGE), record(NAME)], B, []),
    # FORWARD lets you add fields and delete optional ones
    ("forward: add field without default", [record(NAME), record(NAME, AGE)], F, []),
    ("forward: delete field without default", [record(NAME, AGE), record(NAME)], F,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("forward: delete field with default", [record(NAME, AGE_DEFAULT), record(NAME)], F, []),
    # FULL: only optional fields come and go
    ("full: add optional", [record(NAME), record(NAME, AGE_DEFAULT)], FU, []),
    ("full: add required", [record(NAME), record(NAME, AGE)], FU,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("full: delete required", [record(NAME, AGE), record(NAME)], FU,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("full: delete optional", [record(NAME, AGE_DEFAULT), record(NAME)], FU, []),
    ("none accepts anything", [record(NAME), "string"], N, []),
    # the specification's promotions: the writer's type promotes to the reader's
    ("int -> long", [record(f("n", "int")), record(f("n", "long"))], B, []),
    ("int -> double", [record(f("n", "int")), record(f("n", "double"))], B, []),
    ("float -> double", [record(f("n", "float")), record(f("n", "double"))], B, []),
    ("long -> float", [record(f("n", "long")), record(f("n", "float"))], B, []),
    ("long -> int", [record(f("n", "long")), record(f("n", "int"))], B, ["TYPE_MISMATCH"]),
    ("int -> long is not forward", [record(f("n", "int")), record(f("n", "long"))], F,
     ["TYPE_MISMATCH"]),
    ("double -> float", [record(f("n", "double")), record(f("n", "float"))], B,
     ["TYPE_MISMATCH"]),
    ("string <-> bytes", [record(f("s", "string")), record(f("s", "bytes"))], FU, []),
    ("string -> int", [record(f("s", "string")), record(f("s", "int"))], B, ["TYPE_MISMATCH"]),
    ("boolean -> null", ["boolean", "null"], B, ["TYPE_MISMATCH"]),
    ("logical types are not compared",
     [record(f("d", {"type": "int", "logicalType": "date"})), record(f("d", "int"))], FU, []),
    # unions
    ("widen to a union", [record(f("n", "int")), record(f("n", ["null", "int"], default=None))],
     B, []),
    ("widen to a union is not forward",
     [record(f("n", "int")), record(f("n", ["null", "int"], default=None))], F,
     ["TYPE_MISMATCH"]),
    ("union loses a branch", [["null", "int", "string"], ["null", "int"]], B,
     ["MISSING_UNION_BRANCH"]),
    ("union gains a branch", [["null", "int"], ["null", "int", "string"]], B, []),
    ("union gains a branch is not forward", [["null", "int"], ["null", "int", "string"]], F,
     ["MISSING_UNION_BRANCH"]),
    ("union branch promoted", [["null", "int"], ["null", "long"]], B, []),
    ("non-union writer missing from reader union", ["string", ["null", "int"]], B,
     ["MISSING_UNION_BRANCH"]),
    ("non-union writer promoted into reader union", ["int", ["null", "double"]], B, []),
    # enums
    ("enum symbol added", [enum("RED", "GREEN"), enum("RED", "GREEN", "BLUE")], B, []),
    ("enum symbol added is not forward", [enum("RED", "GREEN"), enum("RED", "GREEN", "BLUE")],
     F, ["MISSING_ENUM_SYMBOLS"]),
    ("enum symbol removed", [enum("RED", "GREEN"), enum("RED")], B, ["MISSING_ENUM_SYMBOLS"]),
    ("enum symbol removed, reader default",
     [enum("RED", "GREEN"), enum("RED", "UNKNOWN", default="UNKNOWN")], B, []),
    ("enum renamed", [enum("RED"), {**enum("RED"), "name": "Colour"}], B, ["NAME_MISMATCH"]),
    # named types: names, aliases, namespaces (Avro compares unqualified names)
    ("record renamed", [record(NAME), record(NAME, name="Person")], B, ["NAME_MISMATCH"]),
    ("record renamed with alias", [record(NAME), record(NAME, name="Person",
                                                        aliases=["User"])], B, []),
    ("record moved to another namespace",
     [record(NAME), {**record(NAME), "namespace": "org.other"}], FU, []),
    ("field renamed with alias", [record(f("name", "string")),
                                  record(f("full_name", "string", aliases=["name"]))], B, []),
    ("field renamed without alias", [record(f("name", "string")),
                                     record(f("full_name", "string"))], B,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("fixed size changed", [fixed(16), fixed(32)], B, ["FIXED_SIZE_MISMATCH"]),
    ("fixed same size", [fixed(16), fixed(16)], FU, []),
    ("fixed renamed", [fixed(16), fixed(16, name="Digest")], B, ["NAME_MISMATCH"]),
    ("array items promoted", [{"type": "array", "items": "int"},
                              {"type": "array", "items": "long"}], B, []),
    ("array items changed", [{"type": "array", "items": "int"},
                             {"type": "array", "items": "string"}], B, ["TYPE_MISMATCH"]),
    ("map values changed", [{"type": "map", "values": "int"},
                            {"type": "map", "values": "boolean"}], B, ["TYPE_MISMATCH"]),
    ("array -> map", [{"type": "array", "items": "int"}, {"type": "map", "values": "int"}], B,
     ["TYPE_MISMATCH"]),
    ("nested record field without default",
     [record(f("address", record(f("street", "string"), name="Address"))),
      record(f("address", record(f("street", "string"), f("zip", "string"), name="Address")))],
     B, ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("recursive type unchanged",
     [record(f("next", ["null", "User"], default=None)),
      record(f("next", ["null", "User"], default=None))], FUT, []),
    ("recursive type grows an optional field",
     [record(f("next", ["null", "User"], default=None)),
      record(f("next", ["null", "User"], default=None), AGE_DEFAULT)], FU, []),
    ("two problems are both reported",
     [record(f("a", "int"), f("b", "string")), record(f("a", "string"), f("c", "int"))], B,
     ["TYPE_MISMATCH", "READER_FIELD_MISSING_DEFAULT_VALUE"]),
    # transitive levels over three versions (Confluent's docs): v3 reads v2 but not v1
    ("backward: only the latest is checked",
     [record(NAME), record(NAME, AGE_DEFAULT), record(NAME, AGE)], B, []),
    ("backward transitive: v1 is checked too",
     [record(NAME), record(NAME, AGE_DEFAULT), record(NAME, AGE)], BT,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("forward: only the latest",
     [record(NAME, AGE), record(NAME, AGE_DEFAULT), record(NAME)], F, []),
    ("forward transitive: v1 cannot read v3",
     [record(NAME, AGE), record(NAME, AGE_DEFAULT), record(NAME)], FT,
     ["READER_FIELD_MISSING_DEFAULT_VALUE"]),
    ("full transitive: optional fields over three versions",
     [record(NAME), record(NAME, AGE_DEFAULT), record(NAME, AGE_DEFAULT,
                                                      f("x", "string", default=""))], FUT, []),
    ("full: v3 against v2 only",
     [record(NAME, f("x", "int")), record(NAME), record(NAME, f("x", "string", default=""))],
     FU, []),
    ("full transitive: v3 against v1 fails",
     [record(NAME, f("x", "int")), record(NAME), record(NAME, f("x", "string", default=""))],
     FUT, ["TYPE_MISMATCH", "TYPE_MISMATCH"]),
]


def types_of(messages: list[str]) -> list[str]:
    return [m.split("'")[1] for m in messages if m.startswith("{errorType:")]


@pytest.mark.parametrize(("versions", "level", "expected"),
                         [pytest.param(v, lvl, e, id=c) for c, v, lvl, e in CASES])
def test_evolution(versions: list[Any], level: CompatibilityLevel, expected: list[str]) -> None:
    *old, new = [parse(v) for v in versions]
    messages = check_compatibility(new, list(enumerate(old, start=1)), level)
    assert types_of(messages) == expected
    assert (messages == []) == (expected == [])


def test_verbose_messages_as_confluent() -> None:
    old = parse(record(NAME))
    new = parse(record(NAME, AGE))
    assert check_compatibility(new, [(1, old)], B) == [
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'age' at path "
        "'/fields/1' in the new schema has no default value and is missing in the old schema', "
        "additionalInfo:'age'}",
        "{oldSchemaVersion: 1}",
        f"{{oldSchema: '{old.canonical()}'}}",
        "{compatibility: 'BACKWARD'}",
    ]
    # FORWARD: the old schema reads, so the roles swap in the wording
    assert check_compatibility(old, [(1, new)], F)[0] == (
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'age' at path "
        "'/fields/1' in the old schema has no default value and is missing in the new schema', "
        "additionalInfo:'age'}")


@pytest.mark.parametrize(("old", "new", "type_", "path", "info"), [
    (record(f("n", "long")), record(f("n", "int")), "TYPE_MISMATCH", "/fields/0/type",
     "reader type: INT not compatible with writer type: LONG"),
    (enum("A", "B", "C"), enum("A"), "MISSING_ENUM_SYMBOLS", "/symbols", "[B, C]"),
    (fixed(4), fixed(8), "FIXED_SIZE_MISMATCH", "/size", "expected: 4, found: 8"),
    (record(NAME), record(NAME, name="Person"), "NAME_MISMATCH", "/name",
     "expected: com.acme.User"),
    (["int", "string"], ["int"], "MISSING_UNION_BRANCH", "/1",
     "reader union lacking writer type: STRING"),
    (record(f("xs", {"type": "array", "items": "int"})),
     record(f("xs", {"type": "array", "items": "string"})), "TYPE_MISMATCH",
     "/fields/0/type/items", "reader type: STRING not compatible with writer type: INT"),
])
def test_paths_and_details(old: Any, new: Any, type_: str, path: str, info: str) -> None:
    [found] = incompatibilities(parse(new), parse(old), new_is_reader=True)
    assert (found.type, found.path, found.additional_info) == (type_, path, info)
    assert found.path in found.description


def test_levels() -> None:
    assert CompatibilityLevel.parse("full_transitive") is FUT
    assert FUT.transitive and FUT.backward and FUT.forward
    assert B.backward and not B.forward and not B.transitive
    assert F.forward and not F.backward
    assert not N.backward and not N.forward
    for bad in ("sideways", None, 3):
        with pytest.raises(RegistryError) as info:
            CompatibilityLevel.parse(bad)
        assert info.value.error_code == 42203


def test_no_previous_version_is_compatible() -> None:
    assert check_compatibility(parse("int"), [], FUT) == []


def test_different_formats_are_incompatible() -> None:
    avro = parse(record(NAME))
    other = parse_schema('{"type": "object"}', "JSON")
    messages = check_compatibility(other, [(1, avro)], B)
    assert "different schema type" in messages[0]
    assert check_compatibility(other, [(1, avro)], N) == []
