"""Protobuf compatibility as Confluent's SchemaDiff (io.confluent.kafka.schemaregistry.protobuf
.diff) computes it: the differences from an original .proto to an updated one, each of a
Difference.Type, compatible or not.

Messages and enums are matched by name at each nesting level, fields by number. BACKWARD
compares original = old, update = new; FORWARD the other way round (in both, original = the
writer's schema). Wire-compatible scalar changes (int32/uint32/int64/uint64/bool,
sint32/sint64, fixed32/sfixed32, fixed64/sfixed64, string/bytes) are allowed; a changed field
kind or named type, a removed message, a required field added or removed, a oneof member
removed or fields moved into a oneof are not. Renaming a field is compatible.
"""

from __future__ import annotations

from strom.registry.compatibility.base import Incompatibility
from strom.registry.schemas.protobuf import ProtobufSchema, ProtoEnum, ProtoField, ProtoMessage

COMPATIBLE_CHANGES = frozenset([
    "PACKAGE_CHANGED", "SYNTAX_VERSION_CHANGED", "MESSAGE_ADDED", "ENUM_ADDED", "ENUM_REMOVED",
    "ENUM_CONST_ADDED", "ENUM_CONST_CHANGED", "ENUM_CONST_REMOVED", "FIELD_ADDED",
    "FIELD_REMOVED", "FIELD_NAME_CHANGED", "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
    "ONEOF_ADDED", "ONEOF_REMOVED", "ONEOF_FIELD_ADDED",
])
_SCALAR_GROUPS = [
    frozenset(["int32", "uint32", "int64", "uint64", "bool"]),
    frozenset(["sint32", "sint64"]),
    frozenset(["fixed32", "sfixed32"]),
    frozenset(["fixed64", "sfixed64"]),
    frozenset(["string", "bytes"]),
]
_LENGTH_DELIMITED = frozenset(["string", "bytes"])


def _wire_compatible(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in _SCALAR_GROUPS)


class _Diff:
    def __init__(self, original: ProtobufSchema, update: ProtobufSchema) -> None:
        self.original = original
        self.update = update
        self.found: list[tuple[str, str]] = []

    def add(self, kind: str, path: str) -> None:
        self.found.append((kind, path))

    def local(self, schema: ProtobufSchema, full_type: str) -> str:
        prefix = f".{schema.package}." if schema.package else "."
        return full_type.removeprefix(prefix)

    def file(self) -> None:
        if self.original.package != self.update.package:
            self.add("PACKAGE_CHANGED", "#/")
        if self.original.syntax != self.update.syntax:
            self.add("SYNTAX_VERSION_CHANGED", "#/")
        self.messages(self.original.messages, self.update.messages, "#")
        self.enums(self.original.enums, self.update.enums, "#")

    def messages(self, o: list[ProtoMessage], u: list[ProtoMessage], path: str) -> None:
        o_by, u_by = {m.name: m for m in o}, {m.name: m for m in u}
        for name in sorted(o_by.keys() - u_by.keys()):
            self.add("MESSAGE_REMOVED", f"{path}/{name}")
        for name in sorted(u_by.keys() - o_by.keys()):
            self.add("MESSAGE_ADDED", f"{path}/{name}")
        for name in sorted(o_by.keys() & u_by.keys()):
            self.message(o_by[name], u_by[name], f"{path}/{name}")

    def enums(self, o: list[ProtoEnum], u: list[ProtoEnum], path: str) -> None:
        o_by, u_by = {e.name: e for e in o}, {e.name: e for e in u}
        for name in sorted(o_by.keys() - u_by.keys()):
            self.add("ENUM_REMOVED", f"{path}/{name}")
        for name in sorted(u_by.keys() - o_by.keys()):
            self.add("ENUM_ADDED", f"{path}/{name}")
        for name in sorted(o_by.keys() & u_by.keys()):
            a, b = o_by[name].values, u_by[name].values
            at = f"{path}/{name}"
            a_by_number = {n: v for v, n in a.items()}
            b_by_number = {n: v for v, n in b.items()}
            for number in sorted(a_by_number.keys() - b_by_number.keys()):
                self.add("ENUM_CONST_REMOVED", f"{at}/{number}")
            for number in sorted(b_by_number.keys() - a_by_number.keys()):
                self.add("ENUM_CONST_ADDED", f"{at}/{number}")
            for number in sorted(a_by_number.keys() & b_by_number.keys()):
                if a_by_number[number] != b_by_number[number]:
                    self.add("ENUM_CONST_CHANGED", f"{at}/{number}")

    def message(self, o: ProtoMessage, u: ProtoMessage, path: str) -> None:
        o_fields, u_fields = o.field_by_number(), u.field_by_number()
        for number in sorted(o_fields.keys() - u_fields.keys()):
            f = o_fields[number]
            at = f"{path}/{number}"
            self.add("REQUIRED_FIELD_REMOVED" if f.label == "required" else
                     "ONEOF_FIELD_REMOVED" if f.oneof is not None else "FIELD_REMOVED", at)
        for number in sorted(u_fields.keys() - o_fields.keys()):
            f = u_fields[number]
            at = f"{path}/{number}"
            self.add("REQUIRED_FIELD_ADDED" if f.label == "required" else
                     "ONEOF_FIELD_ADDED" if f.oneof in o.oneofs else "FIELD_ADDED", at)
        for number in sorted(o_fields.keys() & u_fields.keys()):
            self.field(o_fields[number], u_fields[number], f"{path}/{number}")
        for name in sorted(set(o.oneofs) - set(u.oneofs)):
            self.add("ONEOF_REMOVED", f"{path}/{name}")
        for name in sorted(set(u.oneofs) - set(o.oneofs)):
            self.add("ONEOF_ADDED", f"{path}/{name}")
        self.moved_to_oneof(o_fields, u, path)
        self.messages(o.messages, u.messages, path)
        self.enums(o.enums, u.enums, path)

    def moved_to_oneof(self, o_fields: dict[int, ProtoField], u: ProtoMessage,
                       path: str) -> None:
        original_oneofs = {f.oneof for f in o_fields.values() if f.oneof is not None}
        for oneof in u.oneofs:
            moved = [f for f in u.fields if f.oneof == oneof and f.number in o_fields
                     and o_fields[f.number].oneof is None]
            if oneof in original_oneofs:
                for f in moved:
                    self.add("FIELD_MOVED_TO_EXISTING_ONEOF", f"{path}/{f.number}")
            elif len(moved) > 1:
                self.add("MULTIPLE_FIELDS_MOVED_TO_ONEOF", f"{path}/{oneof}")

    def field(self, o: ProtoField, u: ProtoField, path: str) -> None:
        if o.name != u.name:
            self.add("FIELD_NAME_CHANGED", path)
        if o.kind != u.kind:
            self.add("FIELD_KIND_CHANGED", path)
            return
        if o.kind == "scalar":
            if not _wire_compatible(o.full_type, u.full_type):
                self.add("FIELD_SCALAR_KIND_CHANGED", path)
        elif self.local(self.original, o.full_type.replace(" ", "")) != self.local(
            self.update, u.full_type.replace(" ", "")
        ):
            self.add("FIELD_NAMED_TYPE_CHANGED", path)
        if (o.label == "required") != (u.label == "required"):
            self.add("REQUIRED_FIELD_ADDED" if u.label == "required" else
                     "REQUIRED_FIELD_REMOVED", path)
        if o.kind != "map" and (o.label == "repeated") != (u.label == "repeated"):
            delimited = o.kind == "message" or o.full_type in _LENGTH_DELIMITED
            self.add("FIELD_STRING_OR_BYTES_LABEL_CHANGED" if delimited
                     else "FIELD_NUMERIC_LABEL_CHANGED", path)


def protobuf_differences(original: ProtobufSchema,
                         update: ProtobufSchema) -> list[tuple[str, str]]:
    """Every difference (type, path) from `original` to `update`, compatible ones included."""
    diff = _Diff(original, update)
    diff.file()
    return diff.found


def protobuf_incompatibilities(reader: ProtobufSchema, writer: ProtobufSchema,
                               new_is_reader: bool) -> list[Incompatibility]:
    """The incompatible differences for `reader` reading what `writer` wrote."""
    del new_is_reader  # the original is always the writer's schema
    return [
        Incompatibility(kind, path, kind, style="protobuf")
        for kind, path in protobuf_differences(writer, reader)
        if kind not in COMPATIBLE_CHANGES
    ]
