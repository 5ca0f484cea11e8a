"""Protobuf schemas: proto-schema-parser (a maintained pure-Python .proto parser on ANTLR) turns
.proto text into an AST; this module builds the model the registry needs (messages, nested
types, enums, fields with numbers, labels, types resolved to full names, oneofs, maps,
reserved numbers and names), validates it as protoc would for that subset, and prints the
canonical and normalized text.

Imports are references: an import's path is the reference's name. The well-known
google/protobuf/*.proto files and Confluent's confluent/*.proto need no reference.
canonical(): the AST printed back without comments (declaration order kept);
normalized(): printed from the model with types as full names, fields by number, imports,
options, nested types and enum values sorted (Confluent's `normalize=true`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from antlr4.error.ErrorListener import ErrorListener
from proto_schema_parser import ast
from proto_schema_parser.generator import Generator
from proto_schema_parser.parser import Parser

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas.base import ParsedSchema, SchemaType

SCALARS = frozenset([
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
    "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
])
MAX_FIELD_NUMBER = 536_870_911
RESERVED_BY_PROTOBUF = range(19000, 20000)
_WRAPPERS = ["Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"]
WELL_KNOWN: dict[str, list[str]] = {
    "google/protobuf/any.proto": [".google.protobuf.Any"],
    "google/protobuf/duration.proto": [".google.protobuf.Duration"],
    "google/protobuf/empty.proto": [".google.protobuf.Empty"],
    "google/protobuf/field_mask.proto": [".google.protobuf.FieldMask"],
    "google/protobuf/struct.proto": [".google.protobuf.Struct", ".google.protobuf.Value",
                                     ".google.protobuf.ListValue", ".google.protobuf.NullValue"],
    "google/protobuf/timestamp.proto": [".google.protobuf.Timestamp"],
    "google/protobuf/wrappers.proto": [f".google.protobuf.{w}Value" for w in _WRAPPERS],
    "google/protobuf/descriptor.proto": [],
    "google/type/date.proto": [".google.type.Date"],
    "google/type/money.proto": [".google.type.Money"],
    "confluent/meta.proto": [".confluent.Meta"],
    "confluent/type/decimal.proto": [".confluent.type.Decimal"],
}


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(  # ANTLR names it
        self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        raise InvalidSchemaError(
            f"Invalid schema of type PROTOBUF, details: line {line}:{column} {msg}"
        )


def _quiet(recognizer: Any) -> None:
    recognizer.removeErrorListeners()
    recognizer.addErrorListener(_Raise())


_PARSER = Parser(setup_lexer=_quiet, setup_parser=_quiet)


@dataclass
class ProtoField:
    """A field: `type` as written, `full_type` resolved (".pkg.Msg", or the scalar's name;
    for maps "map<K,V>" with V resolved), `label` "optional" / "required" / "repeated" or
    "" (proto3's implicit singular), the `oneof` it belongs to."""

    name: str
    number: int
    type: str
    label: str = ""
    oneof: str | None = None
    full_type: str = ""
    kind: str = "scalar"  # scalar | message | enum | map
    options: list[str] = field(default_factory=list)


@dataclass
class ProtoEnum:
    """An enum: values by name, in declaration order."""

    name: str
    full_name: str
    values: dict[str, int] = field(default_factory=dict)
    allow_alias: bool = False
    reserved_numbers: list[tuple[int, int]] = field(default_factory=list)
    reserved_names: list[str] = field(default_factory=list)


@dataclass
class ProtoMessage:
    """A message: fields in declaration order, nested types, oneof names, reserved."""

    name: str
    full_name: str
    fields: list[ProtoField] = field(default_factory=list)
    messages: list[ProtoMessage] = field(default_factory=list)
    enums: list[ProtoEnum] = field(default_factory=list)
    oneofs: list[str] = field(default_factory=list)
    reserved_numbers: list[tuple[int, int]] = field(default_factory=list)
    reserved_names: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def field_by_number(self) -> dict[int, ProtoField]:
        """The fields keyed by number."""
        return {f.number: f for f in self.fields}


def _parse_ranges(ranges: list[str]) -> list[tuple[int, int]]:
    out = []
    for text in ranges:
        low, _, high = (part.strip() for part in text.partition(" to "))
        start = int(low, 0)
        end = MAX_FIELD_NUMBER if high == "max" else int(high or low, 0)
        out.append((start, end))
    return out


def _option_text(option: ast.Option) -> str:
    return Generator()._generate_option(option).strip().removeprefix("option ").rstrip(";")


def _strip_comments(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_comments(n) for n in node if not isinstance(n, ast.Comment)]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {
            f.name: _strip_comments(getattr(node, f.name))
            for f in dataclasses.fields(node) if isinstance(getattr(node, f.name), list)
        }
        return dataclasses.replace(node, **changes)
    return node


class _Builder:
    """AST -> model, collecting every type's full name on the way."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.types: dict[str, str] = {}  # full name -> "message" | "enum"

    def message(self, node: ast.Message | ast.Group, scope: str) -> ProtoMessage:
        full = f"{scope}.{node.name}"
        self.types[full] = "message"
        msg = ProtoMessage(node.name, full)
        for element in node.elements:
            self.element(msg, element, None)
        return msg

    def element(self, msg: ProtoMessage, element: Any, oneof: str | None) -> None:
        if isinstance(element, ast.Field):
            label = element.cardinality.value.lower() if element.cardinality else ""
            msg.fields.append(ProtoField(element.name, element.number, element.type, label,
                                         oneof, options=[_option_text(o) for o in element.options]))
        elif isinstance(element, ast.MapField):
            msg.fields.append(ProtoField(element.name, element.number,
                                         f"map<{element.key_type}, {element.value_type}>",
                                         "repeated", oneof, kind="map",
                                         options=[_option_text(o) for o in element.options]))
        elif isinstance(element, ast.Group):
            nested = self.message(element, msg.full_name)
            msg.messages.append(nested)
            label = element.cardinality.value.lower() if element.cardinality else ""
            msg.fields.append(ProtoField(element.name.lower(), element.number, element.name,
                                         label, oneof))
        elif isinstance(element, ast.OneOf):
            msg.oneofs.append(element.name)
            for inner in element.elements:
                self.element(msg, inner, element.name)
        elif isinstance(element, ast.Message):
            msg.messages.append(self.message(element, msg.full_name))
        elif isinstance(element, ast.Enum):
            msg.enums.append(self.enum(element, msg.full_name))
        elif isinstance(element, ast.Reserved):
            msg.reserved_numbers += _parse_ranges(element.ranges)
            msg.reserved_names += element.names
        elif isinstance(element, ast.Option):
            msg.options.append(_option_text(element))

    def enum(self, node: ast.Enum, scope: str) -> ProtoEnum:
        full = f"{scope}.{node.name}"
        self.types[full] = "enum"
        out = ProtoEnum(node.name, full)
        for element in node.elements:
            if isinstance(element, ast.EnumValue):
                if element.name in out.values:
                    raise InvalidSchemaError(f"Duplicate enum value {element.name} in {full}")
                out.values[element.name] = element.number
            elif isinstance(element, ast.EnumReserved):
                out.reserved_numbers += _parse_ranges(element.ranges)
                out.reserved_names += element.names
            elif isinstance(element, ast.Option) and element.name == "allow_alias":
                out.allow_alias = element.value is True or str(element.value) == "true"
        return out


@dataclass(eq=False)
class ProtobufSchema(ParsedSchema):
    """A parsed .proto file."""

    syntax: str = "proto2"
    package: str = ""
    imports: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    messages: list[ProtoMessage] = field(default_factory=list)
    enums: list[ProtoEnum] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # every known type, references' too
    tree: Any = None

    @property
    def schema_type(self) -> SchemaType:
        return SchemaType.PROTOBUF

    def canonical(self) -> str:
        return Generator().generate(_strip_comments(self.tree))

    def normalized(self) -> str:
        lines = [f'syntax = "{self.syntax}";']
        if self.package:
            lines.append(f"package {self.package};")
        lines += [f'import "{name}";' for name in sorted(self.imports)]
        lines += [f"option {text};" for text in sorted(self.options)]
        for msg in sorted(self.messages, key=lambda m: m.name):
            lines += _print_message(msg, 0)
        for enum in sorted(self.enums, key=lambda e: e.name):
            lines += _print_enum(enum, 0)
        lines += sorted(self.services)
        return "\n".join(lines) + "\n"

    def record_names(self) -> list[str]:
        return [m.full_name.lstrip(".") for m in self.all_messages()]

    def all_messages(self) -> list[ProtoMessage]:
        """Every message, nested ones after their parent, in declaration order."""
        out: list[ProtoMessage] = []

        def walk(msgs: list[ProtoMessage]) -> None:
            for m in msgs:
                out.append(m)
                walk(m.messages)

        walk(self.messages)
        return out

    def message_indexes(self, full_name: str) -> list[int]:
        """Confluent's message-index path of a message ("pkg.Outer.Inner" or without package)."""
        wanted = full_name if full_name.startswith(".") else f".{full_name}"
        prefix = f".{self.package}" if self.package else ""

        def find(msgs: list[ProtoMessage], path: list[int]) -> list[int] | None:
            for index, m in enumerate(msgs):
                if m.full_name in (wanted, prefix + wanted):
                    return [*path, index]
                found = find(m.messages, [*path, index])
                if found is not None:
                    return found
            return None

        result = find(self.messages, [])
        if result is None:
            raise KeyError(full_name)
        return result

    def message_at(self, indexes: list[int]) -> ProtoMessage:
        """The message a message-index path names (IndexError when there is none)."""
        msgs = self.messages
        msg: ProtoMessage | None = None
        for index in indexes:
            if not 0 <= index < len(msgs):
                raise IndexError(f"no message at {indexes}")
            msg = msgs[index]
            msgs = msg.messages
        if msg is None:
            raise IndexError("empty message-index path")
        return msg


def _print_message(msg: ProtoMessage, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}message {msg.name} {{"]
    lines += [f"{pad}  option {o};" for o in sorted(msg.options)]
    for f in sorted((f for f in msg.fields if f.oneof is None), key=lambda f: f.number):
        lines.append(pad + "  " + _print_field(f))
    for oneof in sorted(msg.oneofs):
        lines.append(f"{pad}  oneof {oneof} {{")
        members = sorted((f for f in msg.fields if f.oneof == oneof), key=lambda f: f.number)
        lines += [pad + "    " + _print_field(f) for f in members]
        lines.append(f"{pad}  }}")
    if msg.reserved_numbers:
        ranges = ", ".join(str(a) if a == b else f"{a} to {b}"
                           for a, b in sorted(msg.reserved_numbers))
        lines.append(f"{pad}  reserved {ranges};")
    if msg.reserved_names:
        lines.append(f"{pad}  reserved " + ", ".join(f'"{n}"' for n in sorted(msg.reserved_names))
                     + ";")
    for nested in sorted(msg.messages, key=lambda m: m.name):
        lines += _print_message(nested, depth + 1)
    for enum in sorted(msg.enums, key=lambda e: e.name):
        lines += _print_enum(enum, depth + 1)
    return [*lines, f"{pad}}}"]


def _print_field(f: ProtoField) -> str:
    label = f"{f.label} " if f.label and f.kind != "map" else ""
    options = f" [{', '.join(sorted(f.options))}]" if f.options else ""
    return f"{label}{f.full_type} {f.name} = {f.number}{options};"


def _print_enum(enum: ProtoEnum, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}enum {enum.name} {{"]
    if enum.allow_alias:
        lines.append(f"{pad}  option allow_alias = true;")
    values = sorted(enum.values.items(), key=lambda kv: (kv[1], kv[0]))
    lines += [f"{pad}  {name} = {number};" for name, number in values]
    return [*lines, f"{pad}}}"]


def _resolve(types: dict[str, str], name: str, scope: str) -> str | None:
    """Protobuf's scoping: ".a.B" is absolute; "B.C" is looked up from the innermost scope."""
    if name.startswith("."):
        return name if name in types else None
    while True:  # scope: ".pkg.Outer.Inner", then ".pkg.Outer", ".pkg", "" (the root)
        candidate = f"{scope}.{name}"
        if candidate in types:
            return candidate
        if not scope:
            return None
        scope = scope.rpartition(".")[0]


class _Validator:
    """protoc's rules for the subset: numbers, names, labels, types."""

    def __init__(self, schema: ProtobufSchema) -> None:
        self.schema = schema

    def run(self) -> None:
        for msg in self.schema.all_messages():
            self.message(msg)
        enums = list(self.schema.enums)
        for msg in self.schema.all_messages():
            enums += msg.enums
        for enum in enums:
            self.enum(enum)

    def message(self, msg: ProtoMessage) -> None:
        numbers: set[int] = set()
        names: set[str] = set()
        for f in msg.fields:
            where = f"field {f.name} = {f.number} of {msg.full_name.lstrip('.')}"
            if not 1 <= f.number <= MAX_FIELD_NUMBER or f.number in RESERVED_BY_PROTOBUF:
                raise InvalidSchemaError(f"Invalid field number in {where}")
            if f.number in numbers or f.name in names:
                raise InvalidSchemaError(f"Duplicate field number or name in {where}")
            if any(a <= f.number <= b for a, b in msg.reserved_numbers) or (
                f.name in msg.reserved_names
            ):
                raise InvalidSchemaError(f"Reserved number or name used in {where}")
            if self.schema.syntax == "proto3" and f.label == "required":
                raise InvalidSchemaError(f"Required fields are not allowed in proto3 ({where})")
            numbers.add(f.number)
            names.add(f.name)
            self.field_type(f, msg.full_name, where)

    def field_type(self, f: ProtoField, scope: str, where: str) -> None:
        if f.kind == "map":
            key, _, value = f.type[4:-1].partition(",")
            key, value = key.strip(), value.strip()  # the grammar allows only valid key types
            f.full_type = f"map<{key}, {self.type_name(value, scope, where)}>"
            return
        f.full_type = self.type_name(f.type, scope, where)
        if f.full_type not in SCALARS:
            f.kind = self.schema.types[f.full_type]

    def type_name(self, name: str, scope: str, where: str) -> str:
        if name in SCALARS:
            return name
        resolved = _resolve(self.schema.types, name, scope)
        if resolved is None:
            raise InvalidSchemaError(f"Unknown type {name} in {where}")
        return resolved

    def enum(self, enum: ProtoEnum) -> None:
        if not enum.values:
            raise InvalidSchemaError(f"Enum {enum.full_name.lstrip('.')} has no values")
        if self.schema.syntax == "proto3" and next(iter(enum.values.values())) != 0:
            raise InvalidSchemaError(
                f"The first enum value of {enum.full_name.lstrip('.')} must be zero in proto3"
            )
        numbers = list(enum.values.values())
        if len(set(numbers)) != len(numbers) and not enum.allow_alias:
            raise InvalidSchemaError(
                f"Enum {enum.full_name.lstrip('.')} reuses a number without allow_alias"
            )


def parse_protobuf(text: str, dependencies: dict[str, ParsedSchema]) -> ProtobufSchema:
    """Parse and validate .proto text; `dependencies` maps import paths to parsed files."""
    try:
        tree = _PARSER.parse(text)
    except InvalidSchemaError:
        raise
    except Exception as exc:  # the AST builder on input the grammar half-accepted
        raise InvalidSchemaError(f"Invalid schema of type PROTOBUF, details: {exc}") from None
    syntax = (tree.syntax or "proto2").strip("\"'")
    if syntax not in ("proto2", "proto3"):
        raise InvalidSchemaError(f"Invalid schema of type PROTOBUF, details: syntax {syntax}")
    package = next((e.name for e in tree.file_elements if isinstance(e, ast.Package)), "")
    builder = _Builder(package)
    scope = f".{package}" if package else ""
    schema = ProtobufSchema(text=text, syntax=syntax, package=package, tree=tree,
                            dependencies=dependencies)
    for element in tree.file_elements:
        if isinstance(element, ast.Import):
            schema.imports.append(element.name)
        elif isinstance(element, ast.Message):
            schema.messages.append(builder.message(element, scope))
        elif isinstance(element, ast.Enum):
            schema.enums.append(builder.enum(element, scope))
        elif isinstance(element, ast.Option):
            schema.options.append(_option_text(element))
        elif isinstance(element, ast.Service):
            schema.services.append(Generator()._generate_service(element).strip())
    schema.types = _imported_types(schema.imports, dependencies) | builder.types
    _Validator(schema).run()
    return schema


def _imported_types(imports: list[str], dependencies: dict[str, ParsedSchema]) -> dict[str, str]:
    types: dict[str, str] = {}
    for name in imports:
        dep = dependencies.get(name)
        if isinstance(dep, ProtobufSchema):
            types.update(dep.types)
        elif name in WELL_KNOWN:
            types.update(dict.fromkeys(WELL_KNOWN[name], "message"))
            if name == "google/protobuf/struct.proto":
                types[".google.protobuf.NullValue"] = "enum"
        else:
            raise InvalidSchemaError(
                f"Invalid schema of type PROTOBUF, details: import {name!r} has no reference"
            )
    return types
