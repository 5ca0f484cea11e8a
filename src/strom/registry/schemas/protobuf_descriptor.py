"""Protobuf schemas as serialized FileDescriptorProtos, the form confluent-kafka's Python
ProtobufSerializer registers (base64 of the descriptor's bytes) and its deserializer asks for
(`GET /schemas/ids/{id}?format=serialized`).

- descriptor_to_text(): a descriptor printed as .proto text (type names fully qualified), which
  the text parser then reads: a registered descriptor becomes the same model, forms and
  compatibility as a .proto text (Confluent also stores the text form).
- schema_to_descriptor(): a parsed schema as a FileDescriptorProto (fields, labels, types,
  maps as map-entry messages, oneofs with proto3 optional's synthetic oneofs, enums, reserved
  ranges, defaults), for `format=serialized`. Of the options, the standard file options,
  map_entry, allow_alias, packed and deprecated are carried; custom options are not.
"""

from __future__ import annotations

import base64
import binascii
import re

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas.protobuf import (
    SCALARS,
    ProtobufSchema,
    ProtoEnum,
    ProtoField,
    ProtoMessage,
)

F = descriptor_pb2.FieldDescriptorProto
_TYPE_NAMES = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64", F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool", F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}
_TYPES = {name: number for number, name in _TYPE_NAMES.items()}
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+\Z")


def decode_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The FileDescriptorProto `text` is the base64 of, or None when it is not one (then it is
    .proto text)."""
    if not _BASE64.match(text) or "syntax" in text:
        return None
    try:
        data = base64.b64decode(text, validate=False)
        return descriptor_pb2.FileDescriptorProto.FromString(data)
    except (binascii.Error, DecodeError, ValueError):
        return None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field_line(f: descriptor_pb2.FieldDescriptorProto, proto3: bool, map_entries: dict[
        str, descriptor_pb2.DescriptorProto], in_oneof: bool = False) -> str:
    options = []
    if f.options.HasField("packed"):
        options.append(f"packed = {str(f.options.packed).lower()}")
    if f.options.deprecated:
        options.append("deprecated = true")
    if f.HasField("default_value"):
        default = _quote(f.default_value) if f.type in (F.TYPE_STRING, F.TYPE_BYTES) \
            else f.default_value
        options.append(f"default = {default}")
    suffix = f" [{', '.join(options)}]" if options else ""
    if f.type_name in map_entries:
        entry = map_entries[f.type_name]
        key, value = entry.field[0], entry.field[1]
        value_type = value.type_name or _TYPE_NAMES[value.type]
        return f"map<{_TYPE_NAMES[key.type]}, {value_type}> {f.name} = {f.number}{suffix};"
    kind = f.type_name if f.type_name else _TYPE_NAMES[f.type]
    if f.label == F.LABEL_REPEATED:
        label = "repeated "
    elif f.label == F.LABEL_REQUIRED:
        label = "required "
    elif (not proto3 or f.proto3_optional) and not in_oneof:
        label = "optional "
    else:
        label = ""
    return f"{label}{kind} {f.name} = {f.number}{suffix};"


def _message_text(m: descriptor_pb2.DescriptorProto, scope: str, proto3: bool,
                  depth: int) -> list[str]:
    pad = "  " * depth
    full = f"{scope}.{m.name}"
    entries = {f"{full}.{n.name}": n for n in m.nested_type if n.options.map_entry}
    lines = [f"{pad}message {m.name} {{"]
    done_oneofs: set[int] = set()
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            if f.oneof_index in done_oneofs:
                continue
            done_oneofs.add(f.oneof_index)
            lines.append(f"{pad}  oneof {m.oneof_decl[f.oneof_index].name} {{")
            lines += [f"{pad}    {_field_line(g, proto3, entries, True)}" for g in m.field
                      if g.HasField("oneof_index") and g.oneof_index == f.oneof_index]
            lines.append(f"{pad}  }}")
        else:
            lines.append(f"{pad}  {_field_line(f, proto3, entries)}")
    for r in m.reserved_range:
        lines.append(f"{pad}  reserved {r.start} to {r.end - 1};")
    if m.reserved_name:
        lines.append(f"{pad}  reserved {', '.join(_quote(n) for n in m.reserved_name)};")
    for x in m.extension_range:
        lines.append(f"{pad}  extensions {x.start} to {x.end - 1};")
    for nested in m.nested_type:
        if not nested.options.map_entry:
            lines += _message_text(nested, full, proto3, depth + 1)
    for enum in m.enum_type:
        lines += _enum_text(enum, depth + 1)
    return [*lines, f"{pad}}}"]


def _enum_text(e: descriptor_pb2.EnumDescriptorProto, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}enum {e.name} {{"]
    if e.options.allow_alias:
        lines.append(f"{pad}  option allow_alias = true;")
    lines += [f"{pad}  {v.name} = {v.number};" for v in e.value]
    lines += [f"{pad}  reserved {r.start} to {r.end};" for r in e.reserved_range]
    if e.reserved_name:
        lines.append(f"{pad}  reserved {', '.join(_quote(n) for n in e.reserved_name)};")
    return [*lines, f"{pad}}}"]


def descriptor_to_text(fd: descriptor_pb2.FileDescriptorProto) -> str:
    """The descriptor as .proto text (comment-free, type names fully qualified)."""
    syntax = fd.syntax or "proto2"
    if syntax not in ("proto2", "proto3"):
        raise InvalidSchemaError(f"Invalid schema of type PROTOBUF, details: syntax {syntax}")
    proto3 = syntax == "proto3"
    lines = [f'syntax = "{syntax}";']
    if fd.package:
        lines.append(f"package {fd.package};")
    public = set(fd.public_dependency)
    lines += [f'import {"public " if i in public else ""}{_quote(name)};'
              for i, name in enumerate(fd.dependency)]
    for option, value in fd.options.ListFields():
        if isinstance(value, str):
            lines.append(f"option {option.name} = {_quote(value)};")
        elif isinstance(value, bool):
            lines.append(f"option {option.name} = {str(value).lower()};")
        elif option.enum_type is not None:
            lines.append(f"option {option.name} = {option.enum_type.values_by_number[value].name};")
    scope = f".{fd.package}" if fd.package else ""
    for m in fd.message_type:
        lines += _message_text(m, scope, proto3, 0)
    for e in fd.enum_type:
        lines += _enum_text(e, 0)
    for service in fd.service:
        rpcs = " ".join(
            f"rpc {m.name} ({'stream ' if m.client_streaming else ''}{m.input_type}) returns "
            f"({'stream ' if m.server_streaming else ''}{m.output_type});" for m in service.method)
        lines.append(f"service {service.name} {{ {rpcs} }}")
    return "\n".join(lines) + "\n"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _add_field(out: descriptor_pb2.DescriptorProto, f: ProtoField, msg: ProtoMessage,
               types: dict[str, str], proto3: bool) -> None:
    field = out.field.add(name=f.name, number=f.number, json_name=_camel(f.name))
    if f.kind == "map":
        key, _, value = f.full_type[4:-1].partition(",")
        entry_name = "".join(p[:1].upper() + p[1:] for p in f.name.split("_")) + "Entry"
        entry = out.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        value_kind = types.get(value.strip(), "")
        for number, name, kind, category in ((1, "key", key.strip(), ""),
                                             (2, "value", value.strip(), value_kind)):
            _set_type(entry.field.add(name=name, number=number, json_name=name,
                                      label=F.LABEL_OPTIONAL), kind, category)
        field.label = F.LABEL_REPEATED
        field.type = F.TYPE_MESSAGE
        field.type_name = f"{msg.full_name}.{entry_name}"
        return
    field.label = {"repeated": F.LABEL_REPEATED, "required": F.LABEL_REQUIRED}.get(
        f.label, F.LABEL_OPTIONAL)
    _set_type(field, f.full_type, f.kind)
    for option in f.options:
        name, _, value = (part.strip() for part in option.partition("="))
        if name == "packed":
            field.options.packed = value == "true"
        elif name == "deprecated":
            field.options.deprecated = value == "true"
        elif name == "default":
            field.default_value = value[1:-1] if value.startswith('"') else value
    if f.oneof is not None:
        field.oneof_index = msg.oneofs.index(f.oneof)
    elif proto3 and f.label == "optional":
        field.proto3_optional = True


def _set_type(field: descriptor_pb2.FieldDescriptorProto, kind: str, category: str) -> None:
    if kind in SCALARS:
        field.type = _TYPES[kind]
    else:
        field.type = F.TYPE_ENUM if category == "enum" else F.TYPE_MESSAGE
        field.type_name = kind


def _enum_descriptor(e: ProtoEnum, out: descriptor_pb2.EnumDescriptorProto) -> None:
    out.name = e.name
    if e.allow_alias:
        out.options.allow_alias = True
    for name, number in e.values.items():
        out.value.add(name=name, number=number)
    for start, end in e.reserved_numbers:
        out.reserved_range.add(start=start, end=end)
    out.reserved_name.extend(e.reserved_names)


def _message_descriptor(msg: ProtoMessage, out: descriptor_pb2.DescriptorProto,
                        types: dict[str, str], proto3: bool) -> None:
    out.name = msg.name
    for name in msg.oneofs:
        out.oneof_decl.add(name=name)
    for f in msg.fields:
        _add_field(out, f, msg, types, proto3)
    for field in out.field:  # proto3 optional: one synthetic oneof each, after the real ones
        if field.proto3_optional:
            field.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add(name=f"_{field.name}")
    for nested in msg.messages:
        _message_descriptor(nested, out.nested_type.add(), types, proto3)
    for e in msg.enums:
        _enum_descriptor(e, out.enum_type.add())
    for start, end in msg.reserved_numbers:
        out.reserved_range.add(start=start, end=end + 1)
    out.reserved_name.extend(msg.reserved_names)


def schema_to_descriptor(schema: ProtobufSchema,
                         name: str = "schema.proto") -> descriptor_pb2.FileDescriptorProto:
    """The schema as a FileDescriptorProto named `name`."""
    fd = descriptor_pb2.FileDescriptorProto(name=name, package=schema.package or None,
                                            dependency=schema.imports)
    proto3 = schema.syntax == "proto3"
    if proto3:
        fd.syntax = "proto3"
    _file_options(schema.options, fd.options)
    for msg in schema.messages:
        _message_descriptor(msg, fd.message_type.add(), schema.types, proto3)
    for e in schema.enums:
        _enum_descriptor(e, fd.enum_type.add())
    return fd


def _file_options(options: list[str], out: descriptor_pb2.FileOptions) -> None:
    """The standard file options (java_package, go_package, optimize_for...); custom options
    are not carried."""
    fields = out.DESCRIPTOR.fields_by_name
    for option in options:
        name, _, value = (part.strip() for part in option.partition("="))
        field = fields.get(name)
        if field is None:
            continue
        if field.enum_type is not None and value in field.enum_type.values_by_name:
            setattr(out, name, field.enum_type.values_by_name[value].number)
        elif field.type == field.TYPE_BOOL:
            setattr(out, name, value == "true")
        elif field.type == field.TYPE_STRING and value.startswith('"'):
            setattr(out, name, value[1:-1].replace('\\"', '"').replace("\\\\", "\\"))


def serialized(schema: ProtobufSchema, name: str = "schema.proto") -> str:
    """The schema as Confluent's `format=serialized`: base64 of the descriptor's bytes."""
    return base64.b64encode(schema_to_descriptor(schema, name).SerializeToString()).decode()
