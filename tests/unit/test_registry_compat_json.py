"""JSON Schema compatibility, table-driven, as Confluent's SchemaDiff: open, partially open and
closed content models, type narrowing and widening, required properties, enums, limits,
combined schemas; the transitive levels over three versions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from strom.registry.compatibility import CompatibilityLevel, check_compatibility
from strom.registry.compatibility.json_schema import COMPATIBLE_CHANGES, json_differences
from strom.registry.schemas import JsonSchema, SchemaReference, parse_schema


def js(value: Any) -> JsonSchema:
    parsed = parse_schema(json.dumps(value), "JSON")
    assert isinstance(parsed, JsonSchema)
    return parsed


def obj(props: dict[str, Any], closed: bool | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, **extra}
    if closed is not None:
        out["additionalProperties"] = not closed
    return out


S, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
B, BT = CompatibilityLevel.BACKWARD, CompatibilityLevel.BACKWARD_TRANSITIVE
F, FT = CompatibilityLevel.FORWARD, CompatibilityLevel.FORWARD_TRANSITIVE
FU, FUT = CompatibilityLevel.FULL, CompatibilityLevel.FULL_TRANSITIVE

CASES: list[tuple[str, list[Any], CompatibilityLevel, list[str]]] = [
    # content models (Confluent's docs): an open model forbids adding properties under BACKWARD
    ("add property to open model", [obj({"a": S}), obj({"a": S, "b": INT})], B,
     ["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"]),
    ("add property to open model, forward", [obj({"a": S}), obj({"a": S, "b": INT})], F, []),
    ("add empty-schema property to open model", [obj({"a": S}), obj({"a": S, "b": {}})], B, []),
    ("remove property from open model", [obj({"a": S, "b": INT}), obj({"a": S})], B, []),
    ("remove property from open model, forward", [obj({"a": S, "b": INT}), obj({"a": S})], F,
     ["PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"]),
    ("add optional property to closed model",
     [obj({"a": S}, closed=True), obj({"a": S, "b": INT}, closed=True)], B, []),
    ("add required property to closed model",
     [obj({"a": S}, closed=True), obj({"a": S, "b": INT}, closed=True, required=["b"])], B,
     ["REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "REQUIRED_ATTRIBUTE_ADDED"]),
    ("add required property with default to closed model",
     [obj({"a": S}, closed=True),
      obj({"a": S, "b": {"type": "integer", "default": 0}}, closed=True, required=["b"])], B,
     []),
    ("remove property from closed model",
     [obj({"a": S, "b": INT}, closed=True), obj({"a": S}, closed=True)], B,
     ["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"]),
    ("closed model: full with optional property added",
     [obj({"a": S}, closed=True), obj({"a": S, "b": INT}, closed=True)], FU,
     ["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"]),
    ("partially open: added property covered",
     [obj({"a": S}, additionalProperties=INT),
      obj({"a": S, "b": INT}, additionalProperties=INT)], B, []),
    ("partially open: added property not covered",
     [obj({"a": S}, additionalProperties=INT), obj({"a": S, "b": S}, additionalProperties=INT)], B,
     ["PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"]),
    ("partially open: removed property covered",
     [obj({"a": S, "b": INT}, additionalProperties=NUM), obj({"a": S}, additionalProperties=NUM)],
     B, []),
    ("partially open: removed property not covered",
     [obj({"a": S, "b": S}, additionalProperties=INT), obj({"a": S}, additionalProperties=INT)], B,
     ["PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"]),
    ("closing an open model", [obj({"a": S}), obj({"a": S}, closed=True)], B,
     ["ADDITIONAL_PROPERTIES_REMOVED"]),
    ("opening a closed model", [obj({"a": S}, closed=True), obj({"a": S})], B, []),
    # types
    ("integer -> number widens", [obj({"n": INT}), obj({"n": NUM})], B, []),
    ("number -> integer narrows", [obj({"n": NUM}), obj({"n": INT})], B, ["TYPE_NARROWED"]),
    ("string -> integer changes", [obj({"a": S}), obj({"a": INT})], B, ["TYPE_CHANGED"]),
    ("string -> [string, null] widens", [S, {"type": ["string", "null"]}], B, []),
    ("[string, null] -> string narrows", [{"type": ["string", "null"]}, S], B,
     ["TYPE_NARROWED"]),
    ("widening is not forward", [S, {"type": ["string", "null"]}], F, ["TYPE_NARROWED"]),
    ("true -> typed narrows", [True, S], B, ["TYPE_NARROWED"]),
    ("typed -> true widens", [S, True], B, []),
    ("false -> anything widens", [False, S], B, []),
    ("anything -> false narrows", [S, False], B, ["TYPE_NARROWED"]),
    # required
    ("existing property made required", [obj({"a": S}), obj({"a": S}, required=["a"])], B,
     ["REQUIRED_ATTRIBUTE_ADDED"]),
    ("required dropped", [obj({"a": S}, required=["a"]), obj({"a": S})], B, []),
    ("required dropped, forward", [obj({"a": S}, required=["a"]), obj({"a": S})], F,
     ["REQUIRED_ATTRIBUTE_ADDED"]),
    # limits
    ("maxLength decreased", [{"type": "string", "maxLength": 10},
                             {"type": "string", "maxLength": 5}], B, ["MAX_LENGTH_DECREASED"]),
    ("maxLength increased", [{"type": "string", "maxLength": 5},
                             {"type": "string", "maxLength": 10}], B, []),
    ("maxLength added", [S, {"type": "string", "maxLength": 5}], B, ["MAX_LENGTH_ADDED"]),
    ("maxLength removed", [{"type": "string", "maxLength": 5}, S], B, []),
    ("minLength increased", [{"type": "string", "minLength": 1},
                             {"type": "string", "minLength": 2}], B, ["MIN_LENGTH_INCREASED"]),
    ("pattern added", [S, {"type": "string", "pattern": "^a"}], B, ["PATTERN_ADDED"]),
    ("pattern changed", [{"type": "string", "pattern": "^a"},
                         {"type": "string", "pattern": "^b"}], B, ["PATTERN_CHANGED"]),
    ("pattern removed", [{"type": "string", "pattern": "^a"}, S], B, []),
    ("maximum decreased", [{"type": "integer", "maximum": 10},
                           {"type": "integer", "maximum": 9}], B, ["MAXIMUM_DECREASED"]),
    ("minimum decreased", [{"type": "integer", "minimum": 1},
                           {"type": "integer", "minimum": 0}], B, []),
    ("minimum increased, forward is fine", [{"type": "integer", "minimum": 0},
                                            {"type": "integer", "minimum": 1}], F, []),
    ("exclusiveMinimum added", [INT, {"type": "integer", "exclusiveMinimum": 0}], B,
     ["EXCLUSIVE_MINIMUM_ADDED"]),
    ("multipleOf expanded", [{"type": "integer", "multipleOf": 2},
                             {"type": "integer", "multipleOf": 4}], B, ["MULTIPLE_OF_EXPANDED"]),
    ("multipleOf reduced", [{"type": "integer", "multipleOf": 4},
                            {"type": "integer", "multipleOf": 2}], B, []),
    ("multipleOf changed", [{"type": "integer", "multipleOf": 4},
                            {"type": "integer", "multipleOf": 6}], B, ["MULTIPLE_OF_CHANGED"]),
    ("maxProperties decreased", [{"type": "object", "maxProperties": 3},
                                 {"type": "object", "maxProperties": 2}], B,
     ["MAX_PROPERTIES_DECREASED"]),
    # enums
    ("enum extended", [{"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}], B, []),
    ("enum narrowed", [{"enum": ["a", "b"]}, {"enum": ["a"]}], B, ["ENUM_ARRAY_NARROWED"]),
    ("enum changed", [{"enum": ["a", "b"]}, {"enum": ["a", "c"]}], B, ["ENUM_ARRAY_CHANGED"]),
    ("enum extended is not forward", [{"enum": ["a"]}, {"enum": ["a", "b"]}], F,
     ["ENUM_ARRAY_NARROWED"]),
    # arrays
    ("items type changed", [{"type": "array", "items": S}, {"type": "array", "items": INT}], B,
     ["TYPE_CHANGED"]),
    ("items widened", [{"type": "array", "items": INT}, {"type": "array", "items": NUM}], B, []),
    ("minItems added", [{"type": "array"}, {"type": "array", "minItems": 1}], B,
     ["MIN_ITEMS_ADDED"]),
    ("uniqueItems added", [{"type": "array"}, {"type": "array", "uniqueItems": True}], B,
     ["UNIQUE_ITEMS_ADDED"]),
    ("tuple item added to open model",
     [{"type": "array", "items": [S]}, {"type": "array", "items": [S, INT]}], B,
     ["ITEM_ADDED_TO_OPEN_CONTENT_MODEL"]),
    ("tuple item added to closed model",
     [{"type": "array", "items": [S], "additionalItems": False},
      {"type": "array", "items": [S, INT], "additionalItems": False}], B, []),
    ("2020-12 prefixItems removed from closed model",
     [{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
       "prefixItems": [S, INT], "items": False},
      {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
       "prefixItems": [S], "items": False}], B, ["ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"]),
    # combined schemas
    ("oneOf gains a branch", [{"oneOf": [S, INT]}, {"oneOf": [S, INT, {"type": "boolean"}]}], B,
     []),
    ("oneOf loses a branch", [{"oneOf": [S, INT]}, {"oneOf": [S]}], B, ["SUM_TYPE_NARROWED"]),
    ("allOf gains a schema", [{"allOf": [S]}, {"allOf": [S, {"maxLength": 3}]}], B,
     ["PRODUCT_TYPE_EXTENDED"]),
    ("oneOf -> anyOf", [{"oneOf": [S, INT]}, {"anyOf": [S, INT]}], B, ["COMBINED_TYPE_CHANGED"]),
    ("type -> oneOf containing it", [S, {"oneOf": [S, INT]}], B, []),
    ("type -> oneOf not containing it", [S, {"oneOf": [INT, {"type": "boolean"}]}], B,
     ["COMBINED_TYPE_CHANGED"]),
    ("nested property type changed",
     [obj({"address": obj({"zip": S})}), obj({"address": obj({"zip": INT})})], B,
     ["TYPE_CHANGED"]),
    ("annotations change nothing",
     [obj({"a": S}, title="A", description="x"), obj({"a": S}, title="B", description="y")],
     FU, []),
    ("local $ref followed",
     [{"type": "object", "properties": {"a": {"$ref": "#/definitions/t"}},
       "definitions": {"t": S}},
      {"type": "object", "properties": {"a": {"$ref": "#/definitions/t"}},
       "definitions": {"t": INT}}], B, ["TYPE_CHANGED"]),
    ("not widened", [{"not": S}, {"not": {"type": ["string", "integer"]}}], B,
     ["NOT_TYPE_EXTENDED"]),
    ("not reduced", [{"not": {"type": ["string", "integer"]}}, {"not": S}], B, []),
    ("not added", [{}, {"not": S}], B, ["NOT_TYPE_EXTENDED"]),
    ("not removed", [{"not": S}, {}], B, []),
    ("multipleOf added", [INT, {"type": "integer", "multipleOf": 2}], B, ["MULTIPLE_OF_ADDED"]),
    ("multipleOf removed", [{"type": "integer", "multipleOf": 2}, INT], B, []),
    ("enum added", [S, {"type": "string", "enum": ["a"]}], B, ["ENUM_ARRAY_NARROWED"]),
    ("enum removed", [{"type": "string", "enum": ["a"]}, S], B, []),
    ("const -> enum", [{"const": "a"}, {"enum": ["a", "b"]}], B, []),
    ("oneOf of one -> its type", [{"oneOf": [S]}, S], B, []),
    ("oneOf -> one of its types", [{"oneOf": [S, INT]}, S], B, ["SUM_TYPE_NARROWED"]),
    ("oneOf branch replaced", [{"oneOf": [S, INT]}, {"oneOf": [S, {"type": "boolean"}]}], B,
     ["COMBINED_TYPE_SUBSCHEMAS_CHANGED"]),
    ("false property added to closed model",
     [obj({"a": S}, closed=True), obj({"a": S, "b": False}, closed=True)], B, []),
    ("additionalProperties schema -> true",
     [obj({}, additionalProperties=INT), obj({})], B, []),
    ("additionalProperties true -> schema",
     [obj({}), obj({}, additionalProperties=INT)], B, ["ADDITIONAL_PROPERTIES_NARROWED"]),
    ("additionalProperties schema changed",
     [obj({}, additionalProperties=INT), obj({}, additionalProperties=S)], B, ["TYPE_CHANGED"]),
    ("dependency array added", [obj({"a": S, "b": S}),
                                obj({"a": S, "b": S}, dependencies={"a": ["b"]})], B,
     ["DEPENDENCY_ARRAY_ADDED"]),
    ("dependency array removed", [obj({"a": S, "b": S}, dependencies={"a": ["b"]}),
                                  obj({"a": S, "b": S})], B, []),
    ("dependency array extended", [obj({"a": S}, dependencies={"a": ["b"]}),
                                   obj({"a": S}, dependencies={"a": ["b", "c"]})], B,
     ["DEPENDENCY_ARRAY_EXTENDED"]),
    ("dependency array narrowed", [obj({"a": S}, dependencies={"a": ["b", "c"]}),
                                   obj({"a": S}, dependencies={"a": ["b"]})], B, []),
    ("dependency array reordered", [obj({"a": S}, dependencies={"a": ["b", "c"]}),
                                    obj({"a": S}, dependencies={"a": ["c", "b"]})], FU, []),
    ("dependency array changed", [obj({"a": S}, dependencies={"a": ["b"]}),
                                  obj({"a": S}, dependencies={"a": ["c"]})], B,
     ["DEPENDENCY_ARRAY_CHANGED"]),
    ("dependency array -> schema", [obj({"a": S}, dependencies={"a": ["b"]}),
                                    obj({"a": S}, dependencies={"a": {"required": ["b"]}})], B,
     ["DEPENDENCY_ARRAY_CHANGED"]),
    ("dependency schema added", [obj({"a": S}),
                                 obj({"a": S}, dependencies={"a": {"required": ["b"]}})], B,
     ["DEPENDENCY_SCHEMA_ADDED"]),
    ("dependency schema changed", [obj({"a": S}, dependencies={"a": {"maxProperties": 3}}),
                                   obj({"a": S}, dependencies={"a": {"maxProperties": 2}})], B,
     ["MAX_PROPERTIES_DECREASED"]),
    # three versions (the transitive levels)
    ("backward: latest only",
     [obj({"a": S}, closed=True), obj({"a": S, "b": INT}, closed=True),
      obj({"a": S, "b": INT}, closed=True, required=["b"])], B, ["REQUIRED_ATTRIBUTE_ADDED"]),
    ("backward transitive: v1 has no b",
     [obj({"a": S}, closed=True), obj({"a": S, "b": INT}, closed=True),
      obj({"a": S, "b": INT}, closed=True, required=["b"])], BT,
     ["REQUIRED_ATTRIBUTE_ADDED", "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
      "REQUIRED_ATTRIBUTE_ADDED"]),
    ("forward: v2 reads v3",
     [{"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 8},
      {"type": "string", "maxLength": 6}], F, []),
    ("forward transitive: v1 cannot read v3",
     [{"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 8},
      {"type": "string", "maxLength": 6}], FT, ["MAX_LENGTH_DECREASED"]),
    ("forward transitive: v3 within v1",
     [{"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 8},
      {"type": "string", "maxLength": 4}], FT, []),
    ("full transitive: same limits", [S, S, S], FUT, []),
    ("full: extending an enum", [{"enum": ["a"]}, {"enum": ["a"]}, {"enum": ["a", "b"]}], FU,
     ["ENUM_ARRAY_NARROWED"]),
]


def types_of(messages: list[str]) -> list[str]:
    return [m.split("type=")[1].rstrip("}") for m in messages if "Difference{" in m]


@pytest.mark.parametrize(("versions", "level", "expected"),
                         [pytest.param(v, lvl, e, id=c) for c, v, lvl, e in CASES])
def test_evolution(versions: list[Any], level: CompatibilityLevel, expected: list[str]) -> None:
    *old, new = [js(v) for v in versions]
    messages = check_compatibility(new, list(enumerate(old, start=1)), level)
    assert types_of(messages) == expected
    assert (messages == []) == (expected == [])


def test_message_wording_and_paths() -> None:
    old, new = js(obj({"a": S, "b": obj({"c": S})})), js(obj({"a": INT, "b": obj({"c": INT})}))
    messages = check_compatibility(new, [(3, old)], B)
    assert messages[:2] == [
        "Found incompatible change: Difference{jsonPath='#/properties/a', type=TYPE_CHANGED}",
        "Found incompatible change: Difference{jsonPath='#/properties/b/properties/c', "
        "type=TYPE_CHANGED}",
    ]
    assert messages[2:] == ["{oldSchemaVersion: 3}", f"{{oldSchema: '{old.canonical()}'}}",
                            "{compatibility: 'BACKWARD'}"]


def test_compatible_differences_are_listed_but_not_reported() -> None:
    found = json_differences(js({"type": "string", "maxLength": 3, "title": "a"}),
                             js({"type": ["string", "null"], "title": "b"}))
    assert found == [("TYPE_EXTENDED", "#"), ("TITLE_CHANGED", "#"), ("MAX_LENGTH_REMOVED", "#")]
    assert all(kind in COMPATIBLE_CHANGES for kind, _ in found)


def test_references_are_followed() -> None:
    v1 = js({"type": "integer"})
    v2 = js({"type": "string"})
    ref = SchemaReference("t.json", "t", 1)
    a = parse_schema('{"type":"object","properties":{"x":{"$ref":"t.json"}}}', "JSON", [ref],
                     lambda r: v1)
    b = parse_schema('{"type":"object","properties":{"x":{"$ref":"t.json"}}}', "JSON", [ref],
                     lambda r: v2)
    assert types_of(check_compatibility(b, [(1, a)], B)) == ["TYPE_CHANGED"]


def test_recursive_refs_terminate() -> None:
    tree = {"type": "object", "properties": {"children": {"type": "array",
                                                          "items": {"$ref": "#"}}}}
    assert check_compatibility(js(tree), [(1, js(tree))], FUT) == []
