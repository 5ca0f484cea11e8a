"""strom.registry.schemas for JSON Schema: metaschema checks per draft, forms, references."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas import JsonSchema, SchemaReference, SchemaType, parse_schema


def js(value: Any, references: list[SchemaReference] | None = None,
       resolver: Any = None) -> JsonSchema:
    text = value if isinstance(value, str) else json.dumps(value)
    parsed = parse_schema(text, "JSON", references or [], resolver)
    assert isinstance(parsed, JsonSchema)
    assert parsed.schema_type is SchemaType.JSON
    return parsed


PERSON = {"type": "object", "title": "Person",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name"]}


@pytest.mark.parametrize("draft", [None, "http://json-schema.org/draft-07/schema#",
                                   "https://json-schema.org/draft/2019-09/schema",
                                   "https://json-schema.org/draft/2020-12/schema"])
def test_drafts_validate_instances(draft: str | None) -> None:
    schema = dict(PERSON) | ({"$schema": draft} if draft else {})
    parsed = js(schema)
    assert parsed.errors({"name": "Ada", "age": 36}) == []
    assert parsed.errors({"age": -1}) == ["$: 'name' is a required property",
                                           "age: -1 is less than the minimum of 0"]
    assert parsed.errors("x") == ["$: 'x' is not of type 'object'"]
    assert parsed.record_names() == ["Person"]


@pytest.mark.parametrize("value", [
    "not json", "[1, 2]", "3", '"string"',
    {"type": "strin"},
    {"type": "object", "properties": {"a": {"minimum": "zero"}}},
    {"type": "object", "required": "name"},
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": 5},
    {"$schema": "http://example.com/unknown-draft", "type": "string"},
])
def test_invalid_json_schemas(value: Any) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        js(value)
    assert info.value.error_code == 42201


def test_boolean_schemas() -> None:
    assert js("true").errors(5) == []
    assert js("false").errors(5) != []
    assert js("true").record_names() == []


def test_canonical_keeps_key_order_and_normalized_sorts() -> None:
    a = js('{ "type": "object",\n "properties": {"b": {"type": "string"}, "a": {}} }')
    b = js('{"properties":{"a":{},"b":{"type":"string"}},"type":"object"}')
    assert a.canonical() == '{"type":"object","properties":{"b":{"type":"string"},"a":{}}}'
    assert a.identity() != b.identity()
    assert a.normalized() == b.normalized()
    assert a.identity(normalize=True) == b.identity(normalize=True)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=50, deadline=None)
@given(st.fixed_dictionaries({}, optional={"title": st.text(max_size=8),
                                           "description": st.text(max_size=8),
                                           "default": JSON_VALUES,
                                           "examples": st.lists(JSON_VALUES, max_size=3)}))
def test_forms_ignore_whitespace(annotations: dict[str, Any]) -> None:
    schema = {"type": "object", **annotations}
    a, b = js(json.dumps(schema)), js(json.dumps(schema, indent=3))
    assert a.canonical() == b.canonical()
    assert json.loads(a.canonical()) == schema
    assert json.loads(a.normalized()) == schema


def test_references_resolve_by_name() -> None:
    address = js({"type": "object", "properties": {"street": {"type": "string"}},
                  "required": ["street"]})
    ref = SchemaReference("address.json", "address-value", 1)
    person = js({"type": "object", "properties": {"home": {"$ref": "address.json"}}},
                [ref], lambda r: address)
    assert person.errors({"home": {"street": "Main"}}) == []
    assert person.errors({"home": {}}) == ["home: 'street' is a required property"]
    assert person.resolve_ref("address.json", person.value) == address.value


def test_unresolvable_ref_is_an_error_not_a_crash() -> None:
    schema = js({"type": "object", "properties": {"x": {"$ref": "nowhere.json"}}})
    errors = schema.errors({"x": 1})
    assert len(errors) == 1 and "unresolvable" in errors[0]
