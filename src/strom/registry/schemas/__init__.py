"""Parsed schemas of the three formats Confluent's registry knows, behind one entry point.

    parse_schema(text, "AVRO" | "JSON" | "PROTOBUF" | None, references, resolver)

returns an AvroSchema, JsonSchema or ProtobufSchema, or raises InvalidSchemaError (42201).
References are resolved through `resolver` (the registry's state looks a subject's version up
and parses it, recursively). The wire-format helpers live in strom.registry.wire (re-exported
here) so that the broker can import them without this package's dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence

from strom.registry.errors import InvalidSchemaError, RegistryError
from strom.registry.schemas.avro import AvroSchema, parse_avro
from strom.registry.schemas.base import (
    ParsedSchema,
    ReferenceResolver,
    SchemaIdentity,
    SchemaReference,
    SchemaType,
)
from strom.registry.schemas.json_schema import JsonSchema, parse_json_schema
from strom.registry.schemas.protobuf import ProtobufSchema, parse_protobuf
from strom.registry.schemas.protobuf_descriptor import decode_descriptor, descriptor_to_text
from strom.registry.wire import (
    MAGIC_BYTE,
    WireFormatError,
    decode_header,
    decode_message_indexes,
    encode_header,
    encode_message_indexes,
    frame,
)

__all__ = [
    "MAGIC_BYTE",
    "AvroSchema",
    "InvalidSchemaError",
    "JsonSchema",
    "ParsedSchema",
    "ProtobufSchema",
    "ReferenceResolver",
    "SchemaIdentity",
    "SchemaReference",
    "SchemaType",
    "WireFormatError",
    "decode_header",
    "decode_message_indexes",
    "encode_header",
    "encode_message_indexes",
    "frame",
    "parse_schema",
]


def parse_schema(
    text: str,
    schema_type: str | SchemaType | None = None,
    references: Sequence[SchemaReference] = (),
    resolver: ReferenceResolver | None = None,
) -> ParsedSchema:
    """Parse and validate a schema of the given type (AVRO when None), its references
    resolved first."""
    kind = schema_type if isinstance(schema_type, SchemaType) else SchemaType.of(schema_type)
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchemaError("Empty schema")
    dependencies = _dependencies(kind, references, resolver)
    if kind is SchemaType.AVRO:
        parsed: ParsedSchema = parse_avro(text, dependencies)
    elif kind is SchemaType.JSON:
        parsed = parse_json_schema(text, dependencies)
    else:
        descriptor = decode_descriptor(text)  # base64 of a FileDescriptorProto, or .proto text
        parsed = parse_protobuf(text if descriptor is None else descriptor_to_text(descriptor),
                                dependencies)
    parsed.references = tuple(references)
    return parsed


def _dependencies(
    kind: SchemaType, references: Sequence[SchemaReference], resolver: ReferenceResolver | None
) -> dict[str, ParsedSchema]:
    dependencies: dict[str, ParsedSchema] = {}
    for ref in references:
        if ref.name in dependencies:
            raise InvalidSchemaError(f"Duplicate reference name {ref.name}")
        if resolver is None:
            raise InvalidSchemaError(f"Cannot resolve reference {ref.name}: no registry")
        try:
            dependency = resolver(ref)
        except InvalidSchemaError:
            raise
        except RegistryError:
            raise InvalidSchemaError(
                f"Invalid schema, details: reference {ref.name!r} to subject {ref.subject!r} "
                f"version {ref.version} not found"
            ) from None
        except RecursionError:
            raise InvalidSchemaError("Invalid schema, details: circular references") from None
        if dependency.schema_type is not kind:
            raise InvalidSchemaError(
                f"Invalid schema, details: reference {ref.name!r} is a "
                f"{dependency.schema_type} schema, not {kind}"
            )
        dependencies[ref.name] = dependency
    return dependencies
