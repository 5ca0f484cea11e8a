"""Avro schemas: fastavro parses them (named types, logical types, default values); this module
adds the checks fastavro leaves out, the Parsing Canonical Form of the Avro specification, its
CRC-64-AVRO (Rabin) fingerprint, and Confluent's canonical and normalized strings.

The forms:
- canonical(): the schema's JSON without whitespace, attributes as written (Confluent stores
  and compares Avro's Schema.toString(), which is whitespace-free too).
- parsing_canonical_form(): the specification's PCF: [PRIMITIVES] [FULLNAMES] [STRIP] [ORDER]
  [STRINGS] [INTEGERS] [WHITESPACE]; a named type already written is written as its full name.
- normalized(): PCF's full names, order and primitive shorthand, but keeping what changes how
  data is read or evolves (defaults, aliases, order, logical types and other properties); doc
  and namespace (folded into the full names) are dropped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import fastavro.schema

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas.base import (
    ParsedSchema,
    SchemaType,
    compact_json,
    load_json,
)

PRIMITIVES = frozenset(["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
NAMED = frozenset(["record", "error", "enum", "fixed"])
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PCF_ORDER = ("name", "type", "fields", "symbols", "items", "values", "size")
_DROPPED_IN_NORMALIZED = frozenset(["doc", "namespace"])

# CRC-64-AVRO, as the specification's Java: fp = (fp >>> 8) ^ TABLE[(fp ^ b) & 0xff]
_EMPTY = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    return table


_FP_TABLE = _fp_table()


def rabin_fingerprint(data: bytes) -> int:
    """The 64-bit CRC-64-AVRO fingerprint of `data`, unsigned (Java's long is its signed twin)."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def signed64(value: int) -> int:
    """An unsigned 64-bit value as Java's long."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _namespace_of(fullname: str) -> str | None:
    return fullname.rpartition(".")[0] or None


@dataclass
class _Walk:
    """The state of one canonical-form walk: the named types written so far."""

    pcf: bool
    seen: set[str] = field(default_factory=set)

    def ref(self, name: str, namespace: str | None) -> str:
        return _fullname(name, namespace)

    def schema(self, node: Any, namespace: str | None) -> Any:
        if isinstance(node, str):
            return node if node in PRIMITIVES else self.ref(node, namespace)
        if isinstance(node, list):
            return [self.schema(branch, namespace) for branch in node]
        kind = node["type"]
        if not isinstance(kind, str):
            return self.schema(kind, namespace)
        if kind in NAMED:
            return self.named(node, kind, namespace)
        if kind == "array":
            out = {"type": "array", "items": self.schema(node["items"], namespace)}
        elif kind == "map":
            out = {"type": "map", "values": self.schema(node["values"], namespace)}
        elif kind in PRIMITIVES:
            out = {"type": kind}
        else:
            return self.ref(kind, namespace)
        return self.finish(node, out)

    def named(self, node: dict[str, Any], kind: str, namespace: str | None) -> Any:
        own = node.get("namespace", namespace) if "." not in node["name"] else None
        full = _fullname(node["name"], own)
        if full in self.seen:
            return full
        self.seen.add(full)
        inner = _namespace_of(full)
        out: dict[str, Any] = {"name": full, "type": "record" if kind == "error" else kind}
        if kind in ("record", "error"):
            out["fields"] = [self.field(f, inner) for f in node["fields"]]
        elif kind == "enum":
            out["symbols"] = list(node["symbols"])
        else:
            out["size"] = int(node["size"])
        return self.finish(node, out)

    def field(self, node: dict[str, Any], namespace: str | None) -> Any:
        out = {"name": node["name"], "type": self.schema(node["type"], namespace)}
        return self.finish(node, out)

    def finish(self, node: dict[str, Any], out: dict[str, Any]) -> Any:
        if not self.pcf:
            for key in sorted(node):
                if key not in out and key not in _DROPPED_IN_NORMALIZED:
                    out[key] = node[key]
        if set(out) == {"type"} and out["type"] in PRIMITIVES:
            return out["type"]  # [PRIMITIVES]
        return {key: out[key] for key in _PCF_ORDER if key in out} | out  # [ORDER]


def parsing_canonical_form(schema: Any) -> str:
    """The Avro specification's Parsing Canonical Form of a schema's JSON (types defined
    elsewhere, by references, stay names)."""
    return compact_json(_Walk(pcf=True).schema(schema, None))


class _Checker:
    """What fastavro accepts and Avro (Java) and so Confluent refuse."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.done: set[str] = set()

    def check(self, node: Any, path: str) -> None:
        if isinstance(node, str):
            name = node
            if name in self.named and name not in self.done:
                self.done.add(name)
                self.check(self.named[name], path)
            return
        if isinstance(node, list):
            self.union(node, path)
            return
        kind = node["type"]
        if kind in ("record", "error", "enum", "fixed"):
            self.name(node["name"], path)
            self.done.add(node["name"])
        if kind in ("record", "error"):
            self.record(node, path)
        elif kind == "fixed" and (
            not isinstance(node.get("size"), int) or isinstance(node["size"], bool)
            or node["size"] < 0
        ):
            raise InvalidSchemaError(f"Invalid fixed size {node.get('size')!r} at {path}")
        elif kind == "array":
            self.check(node["items"], path + "/items")
        elif kind == "map":
            self.check(node["values"], path + "/values")

    def name(self, full: str, path: str) -> None:
        for part in full.split("."):
            if not _NAME.match(part):
                raise InvalidSchemaError(f"Illegal name {full!r} at {path or '/'}")

    def record(self, node: dict[str, Any], path: str) -> None:
        names: set[str] = set()
        for index, item in enumerate(node["fields"]):
            if not isinstance(item.get("name"), str) or not _NAME.match(item["name"]):
                raise InvalidSchemaError(f"Illegal field name {item.get('name')!r}")
            if item["name"] in names:
                raise InvalidSchemaError(f"Duplicate field {item['name']} in {node['name']}")
            names.add(item["name"])
            self.check(item["type"], f"{path}/fields/{index}")
            if "default" in item and isinstance(item["type"], list) and item["type"]:
                self.union_default(item, node["name"])

    def union_default(self, item: dict[str, Any], record: str) -> None:
        first = item["type"][0]
        try:
            fastavro.schema.parse_schema(
                {"type": "record", "name": "_default_check",
                 "fields": [{"name": "f", "type": first, "default": item["default"]}]},
                dict(self.named), _write_hint=False,
            )
        except Exception:
            raise InvalidSchemaError(
                f"Invalid default for field {item['name']} of {record}: a union's default must "
                "match its first branch"
            ) from None

    def union(self, branches: list[Any], path: str) -> None:
        kinds: set[str] = set()
        for index, branch in enumerate(branches):
            if isinstance(branch, list):
                raise InvalidSchemaError(f"Unions may not contain other unions ({path})")
            kind = branch if isinstance(branch, str) else branch["type"]
            key = kind if kind in PRIMITIVES or kind in ("array", "map") else (
                branch if isinstance(branch, str) else branch["name"])
            if key in kinds:
                raise InvalidSchemaError(f"Duplicate in union: {key} ({path})")
            kinds.add(key)
            self.check(branch, f"{path}/{index}")


def _records_have_fields(node: Any) -> None:
    """fastavro takes a record without "fields" as one without fields; Avro refuses it."""
    if isinstance(node, list):
        for item in node:
            _records_have_fields(item)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "error") and not isinstance(node.get("fields"), list):
            raise InvalidSchemaError(f"Record {node.get('name')!r} has no fields array")
        for key in ("type", "items", "values"):
            _records_have_fields(node.get(key))
        for item in node.get("fields", []) if isinstance(node.get("fields"), list) else []:
            _records_have_fields(item)


@dataclass(eq=False)
class AvroSchema(ParsedSchema):
    """A parsed Avro schema. `parsed` is fastavro's form (full names; a named type written
    once, then named); `named_types` holds every named type, the references' included."""

    json_value: Any = None
    parsed: Any = None
    named_types: dict[str, Any] = field(default_factory=dict)

    @property
    def schema_type(self) -> SchemaType:
        return SchemaType.AVRO

    def canonical(self) -> str:
        return compact_json(self.json_value)

    def normalized(self) -> str:
        return compact_json(_Walk(pcf=False).schema(self.json_value, None))

    def parsing_canonical_form(self) -> str:
        """The specification's Parsing Canonical Form."""
        return parsing_canonical_form(self.json_value)

    def fingerprint(self) -> int:
        """CRC-64-AVRO of the Parsing Canonical Form (unsigned)."""
        return rabin_fingerprint(self.parsing_canonical_form().encode())

    def fingerprint_sha256(self) -> bytes:
        """SHA-256 of the Parsing Canonical Form."""
        return hashlib.sha256(self.parsing_canonical_form().encode()).digest()

    def record_names(self) -> list[str]:
        root = self.parsed
        if isinstance(root, dict) and root.get("type") in NAMED:
            return [str(root["name"])]
        return []

    def resolve(self, node: Any) -> Any:
        """A named type's definition for its name; anything else as it is."""
        if isinstance(node, str) and node not in PRIMITIVES:
            return self.named_types[node]
        return node


def parse_avro(text: str, dependencies: dict[str, ParsedSchema]) -> AvroSchema:
    """Parse and validate an Avro schema; the references' named types come from
    `dependencies` (each an AvroSchema)."""
    value = load_json(text, "AVRO")
    named: dict[str, Any] = {}
    for dep in dependencies.values():
        assert isinstance(dep, AvroSchema)  # parse_schema checks the references' formats
        named.update(dep.named_types)
    try:
        parsed = fastavro.schema.parse_schema(value, named, _write_hint=False)
    except Exception as exc:  # fastavro raises SchemaParseException, UnknownType, KeyError...
        detail = f"{type(exc).__name__}: {exc}"
        raise InvalidSchemaError(f"Invalid schema of type AVRO, details: {detail}") from None
    _records_have_fields(value)
    _Checker(named).check(parsed, "")
    return AvroSchema(
        text=text, json_value=value, parsed=parsed, named_types=named, dependencies=dependencies,
    )
