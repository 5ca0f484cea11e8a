"""What validation on produce needs of a schema beyond its id: its record name (for
RecordNameStrategy / TopicRecordNameStrategy) and, with `strom.schema.validation.decode`, a
decoder of payloads. Avro and JSON Schema record names come from the schema's JSON (standard
library); Protobuf's message at the record's message indexes, and every decoder, parse the
schema with `strom.registry.schemas` (fastavro, jsonschema, proto-schema-parser, protobuf),
imported here lazily: only a topic that asks for them pays for these imports.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
from collections.abc import Callable
from typing import Any

from strom.broker.schema_catalog import SchemaCatalog, SchemaInfo

# A payload decoder: None when the payload decodes, else why not.
Decoder = Callable[[bytes], str | None]


class SchemaUnusable(Exception):
    """The registered schema cannot be parsed here (a reference is missing, say)."""


def avro_or_json_record_name(info: SchemaInfo) -> str | None:
    """Avro: the full name of a named top-level type; JSON Schema: its title."""
    try:
        value = json.loads(info.schema)
    except ValueError:
        return None
    if info.schema_type == "JSON":
        title = value.get("title") if isinstance(value, dict) else None
        return title if isinstance(title, str) else None
    if not isinstance(value, dict) or value.get("type") not in ("record", "enum", "fixed"):
        return None
    name = value.get("name")
    if not isinstance(name, str):
        return None
    namespace = value.get("namespace")
    if "." in name or not isinstance(namespace, str) or not namespace:
        return name
    return f"{namespace}.{name}"


def parse(catalog: SchemaCatalog, info: SchemaInfo, depth: int = 0) -> Any:
    """The schema parsed by strom.registry.schemas, its references resolved in `catalog`."""
    from strom.registry.errors import RegistryError
    from strom.registry.schemas import parse_schema
    from strom.registry.schemas.base import SchemaReference

    if depth > 32:
        raise SchemaUnusable("references nested too deep (a cycle?)")

    def resolve(ref: SchemaReference) -> Any:
        found = catalog.version(ref.subject, ref.version)
        if found is None:
            raise SchemaUnusable(f"reference {ref.name!r} ({ref.subject} version "
                                 f"{ref.version}) is not registered")
        return parse(catalog, found, depth + 1)

    references = [SchemaReference(name, subject, version)
                  for name, subject, version in info.references]
    try:
        return parse_schema(info.schema, info.schema_type, references, resolve)
    except RegistryError as exc:
        raise SchemaUnusable(exc.message) from None


def protobuf_message_name(catalog: SchemaCatalog, info: SchemaInfo,
                          indexes: list[int]) -> str | None:
    """The full name of the message at `indexes` (None if there is none)."""
    parsed = parse(catalog, info)
    try:
        return str(parsed.message_at(indexes).full_name).lstrip(".")
    except IndexError:
        return None


def decoder(catalog: SchemaCatalog, info: SchemaInfo, indexes: list[int] | None) -> Decoder:
    """A decoder of payloads (after the wire header and any message indexes) of the schema."""
    parsed = parse(catalog, info)
    if info.schema_type == "JSON":
        return _json_decoder(parsed)
    if info.schema_type == "PROTOBUF":
        return _protobuf_decoder(catalog, info, parsed, indexes or [0])
    return _avro_decoder(parsed)


def _avro_decoder(parsed: Any) -> Decoder:
    import fastavro

    named = dict(parsed.named_types)
    schema = fastavro.parse_schema(parsed.json_value, named)

    def decode(payload: bytes) -> str | None:
        stream = io.BytesIO(payload)
        try:
            fastavro.schemaless_reader(stream, schema, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            return f"{type(exc).__name__}: {exc}"
        if stream.tell() != len(payload):
            return f"{len(payload) - stream.tell()} bytes left after the Avro datum"
        return None

    return decode


def _json_decoder(parsed: Any) -> Decoder:
    validator = parsed.validator()

    def decode(payload: bytes) -> str | None:
        try:
            instance = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"not JSON: {exc}"
        errors = sorted(f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
                        for e in validator.iter_errors(instance))
        return "; ".join(errors[:3]) if errors else None

    return decode


def _protobuf_decoder(catalog: SchemaCatalog, info: SchemaInfo, parsed: Any,
                      indexes: list[int]) -> Decoder:
    from google.protobuf import descriptor_pool, message_factory
    from google.protobuf.message import DecodeError

    from strom.registry.schemas.protobuf_descriptor import schema_to_descriptor

    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(schema: Any, name: str, refs: tuple[tuple[str, str, int], ...]) -> None:
        for ref_name, subject, version in refs:
            if ref_name in added:
                continue
            found = catalog.version(subject, version)
            if found is None:
                raise SchemaUnusable(f"reference {ref_name!r} is not registered")
            add(parse(catalog, found), ref_name, found.references)
        for imported in schema.imports:
            if imported not in added and imported not in {r[0] for r in refs}:
                _add_well_known(pool, imported, added)
        pool.Add(schema_to_descriptor(schema, name))
        added.add(name)

    add(parsed, "strom_validated.proto", info.references)
    try:
        full_name = str(parsed.message_at(indexes).full_name).lstrip(".")
    except IndexError:
        raise SchemaUnusable(f"no message at the message indexes {indexes}") from None
    message_class = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))

    def decode(payload: bytes) -> str | None:
        try:
            message_class.FromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    return decode


def _add_well_known(pool: Any, name: str, added: set[str]) -> None:
    """Google's well-known types (and what they import) from protobuf's default pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    if name.startswith("google/protobuf/") and name.endswith(".proto"):
        with contextlib.suppress(ImportError):  # registers the file in the default pool
            importlib.import_module("google.protobuf." + name[16:-6] + "_pb2")
    try:
        file = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        raise SchemaUnusable(f"import {name!r} is neither a reference nor known") from None
    for dependency in file.dependencies:
        if dependency.name not in added:
            _add_well_known(pool, dependency.name, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.Add(proto)
    added.add(name)
