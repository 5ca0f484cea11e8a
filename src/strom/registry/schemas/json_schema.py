"""JSON Schema: `jsonschema` checks a schema against its draft's metaschema (draft 7 when it
names none, as Confluent; 2019-09 and 2020-12 by "$schema"), and `referencing` resolves the
references (each registered schema under the name the $ref uses).

canonical(): the JSON without whitespace, keys as written (Confluent's canonical string);
normalized(): keys sorted as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing
import referencing.exceptions
import referencing.jsonschema

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas.base import ParsedSchema, SchemaType, compact_json, load_json

DRAFTS = {
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema.Draft201909Validator,
    "https://json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
}
DEFAULT_DRAFT = jsonschema.Draft7Validator


def draft_of(value: Any) -> type[jsonschema.protocols.Validator]:
    """The validator class of the draft the schema names ("$schema"); draft 7 by default."""
    if isinstance(value, dict) and isinstance(value.get("$schema"), str):
        uri = value["$schema"].rstrip("#")
        if uri not in DRAFTS:
            raise InvalidSchemaError(f"Invalid schema of type JSON, details: unsupported "
                                     f"$schema {value['$schema']}")
        return DRAFTS[uri]
    return DEFAULT_DRAFT


@dataclass(eq=False)
class JsonSchema(ParsedSchema):
    """A parsed JSON Schema (an object or a boolean)."""

    value: Any = None

    @property
    def schema_type(self) -> SchemaType:
        return SchemaType.JSON

    def canonical(self) -> str:
        return compact_json(self.value)

    def normalized(self) -> str:
        return compact_json(self.value, sort_keys=True)

    def record_names(self) -> list[str]:
        if isinstance(self.value, dict) and isinstance(self.value.get("title"), str):
            return [self.value["title"]]
        return []

    def registry(self) -> referencing.Registry[Any]:
        """The references as resources, each under its reference name (and its own $id)."""
        resources: list[tuple[str, referencing.Resource[Any]]] = []
        for name, dep in _all_dependencies(self).items():
            assert isinstance(dep, JsonSchema)
            draft = referencing.jsonschema.specification_with(
                draft_of(dep.value).META_SCHEMA["$schema"]
            )
            resources.append((name, draft.create_resource(dep.value)))
        return referencing.Registry().with_resources(resources)

    def validator(self) -> jsonschema.protocols.Validator:
        """A validator of instances against this schema, references resolved."""
        return draft_of(self.value)(self.value, registry=self.registry())

    def errors(self, instance: Any) -> list[str]:
        """Why `instance` does not validate ([] when it does)."""
        try:
            return sorted(
                f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
                for e in self.validator().iter_errors(instance)
            )
        except referencing.exceptions.Unresolvable as exc:
            return [f"unresolvable reference {exc}"]

    def resolve_ref(self, ref: str, base: Any) -> Any:
        """The subschema a "$ref" names: local pointers into `base`, or a reference's schema
        (with a pointer after "#")."""
        resolver = self.registry().resolver_with_root(
            referencing.jsonschema.specification_with(
                draft_of(self.value).META_SCHEMA["$schema"]
            ).create_resource(base)
        )
        return resolver.lookup(ref).contents


def _all_dependencies(schema: ParsedSchema) -> dict[str, ParsedSchema]:
    out: dict[str, ParsedSchema] = {}
    for name, dep in schema.dependencies.items():
        out.update(_all_dependencies(dep))
        out[name] = dep
    return out


def parse_json_schema(text: str, dependencies: dict[str, ParsedSchema]) -> JsonSchema:
    """Parse a JSON Schema and check it against its draft's metaschema."""
    value = load_json(text, "JSON")
    if not isinstance(value, (dict, bool)):
        raise InvalidSchemaError(
            "Invalid schema of type JSON, details: a schema is a JSON object or a boolean"
        )
    try:
        draft_of(value).check_schema(value)  # type: ignore[arg-type]  # booleans are schemas
    except jsonschema.exceptions.SchemaError as exc:
        path = "/".join(map(str, exc.absolute_path)) or "$"
        raise InvalidSchemaError(
            f"Invalid schema of type JSON, details: {exc.message} (at {path})"
        ) from None
    return JsonSchema(text=text, value=value, dependencies=dependencies)
