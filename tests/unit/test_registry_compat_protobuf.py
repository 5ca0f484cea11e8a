"""Protobuf compatibility, table-driven, as Confluent's SchemaDiff: fields matched by number,
wire-compatible scalar changes, kinds and named types, labels, oneofs, messages and enums
added or removed, package and syntax; the transitive levels over three versions."""

from __future__ import annotations

import pytest

from strom.registry.compatibility import CompatibilityLevel, check_compatibility
from strom.registry.compatibility.protobuf import COMPATIBLE_CHANGES, protobuf_differences
from strom.registry.schemas import ProtobufSchema, parse_schema


def pb(body: str, package: str = "acme", syntax: str = "proto3") -> ProtobufSchema:
    header = f'syntax = "{syntax}";\n' + (f"package {package};\n" if package else "")
    parsed = parse_schema(header + body, "PROTOBUF")
    assert isinstance(parsed, ProtobufSchema)
    return parsed


B, BT = CompatibilityLevel.BACKWARD, CompatibilityLevel.BACKWARD_TRANSITIVE
F, FT = CompatibilityLevel.FORWARD, CompatibilityLevel.FORWARD_TRANSITIVE
FU, FUT = CompatibilityLevel.FULL, CompatibilityLevel.FULL_TRANSITIVE

USER = "message User { string name = 1; int32 age = 2; }"

CASES: list[tuple[str, list[str | tuple[str, str, str]], CompatibilityLevel, list[str]]] = [
    ("field added", [USER, "message User { string name = 1; int32 age = 2; string e = 3; }"],
     FU, []),
    ("field removed", [USER, "message User { string name = 1; }"], FU, []),
    ("field renamed", [USER, "message User { string full_name = 1; int32 age = 2; }"], FU, []),
    ("number reused with another kind",
     [USER, "message User { string name = 1; Other age = 2; }\nmessage Other {}"], B,
     ["FIELD_KIND_CHANGED"]),
    ("int32 -> int64 is wire compatible",
     [USER, "message User { string name = 1; int64 age = 2; }"], FU, []),
    ("int32 -> bool is wire compatible",
     [USER, "message User { string name = 1; bool age = 2; }"], FU, []),
    ("int32 -> sint32 is not",
     [USER, "message User { string name = 1; sint32 age = 2; }"], B,
     ["FIELD_SCALAR_KIND_CHANGED"]),
    ("int32 -> fixed32 is not",
     [USER, "message User { string name = 1; fixed32 age = 2; }"], B,
     ["FIELD_SCALAR_KIND_CHANGED"]),
    ("string <-> bytes", [USER, "message User { bytes name = 1; int32 age = 2; }"], FU, []),
    ("string -> int32", [USER, "message User { int32 name = 1; int32 age = 2; }"], B,
     ["FIELD_SCALAR_KIND_CHANGED"]),
    ("message type changed",
     ["message User { A a = 1; }\nmessage A { string x = 1; }\nmessage B { string x = 1; }",
      "message User { B a = 1; }\nmessage A { string x = 1; }\nmessage B { string x = 1; }"],
     B, ["FIELD_NAMED_TYPE_CHANGED"]),
    ("enum field -> int32", ["message User { E e = 1; }\nenum E { Z = 0; }",
                             "message User { int32 e = 1; }\nenum E { Z = 0; }"], B,
     ["FIELD_KIND_CHANGED"]),
    ("message removed", [USER + "\nmessage Extra { int32 x = 1; }", USER], B,
     ["MESSAGE_REMOVED"]),
    ("message added", [USER, USER + "\nmessage Extra { int32 x = 1; }"], B, []),
    ("message added is not forward", [USER, USER + "\nmessage Extra { int32 x = 1; }"], F,
     ["MESSAGE_REMOVED"]),
    ("nested message removed",
     ["message User { message Address { string s = 1; } }", "message User { }"], B,
     ["MESSAGE_REMOVED"]),
    ("enum value added", ["enum E { Z = 0; A = 1; }\nmessage M { E e = 1; }",
                          "enum E { Z = 0; A = 1; B = 2; }\nmessage M { E e = 1; }"], FU, []),
    ("enum value removed", ["enum E { Z = 0; A = 1; }\nmessage M { E e = 1; }",
                            "enum E { Z = 0; }\nmessage M { E e = 1; }"], FU, []),
    ("enum value renamed", ["enum E { Z = 0; A = 1; }\nmessage M { E e = 1; }",
                            "enum E { Z = 0; B = 1; }\nmessage M { E e = 1; }"], FU, []),
    ("enum added and removed", ["enum E { Z = 0; }\nmessage M { int32 e = 1; }",
                                "enum G { Z = 0; }\nmessage M { int32 e = 1; }"], FU, []),
    ("repeated numeric label changed",
     [USER, "message User { string name = 1; repeated int32 age = 2; }"], B,
     ["FIELD_NUMERIC_LABEL_CHANGED"]),
    ("repeated string label changed",
     [USER, "message User { repeated string name = 1; int32 age = 2; }"], FU, []),
    ("proto3 optional is compatible",
     [USER, "message User { optional string name = 1; int32 age = 2; }"], FU, []),
    ("required field added (proto2)",
     [("proto2", "acme", "message U { optional string a = 1; }"),
      ("proto2", "acme", "message U { optional string a = 1; required int32 b = 2; }")], B,
     ["REQUIRED_FIELD_ADDED"]),
    ("required field removed (proto2)",
     [("proto2", "acme", "message U { optional string a = 1; required int32 b = 2; }"),
      ("proto2", "acme", "message U { optional string a = 1; }")], B,
     ["REQUIRED_FIELD_REMOVED"]),
    ("optional made required (proto2)",
     [("proto2", "acme", "message U { optional string a = 1; }"),
      ("proto2", "acme", "message U { required string a = 1; }")], B,
     ["REQUIRED_FIELD_ADDED"]),
    ("oneof added around one field",
     [USER, "message User { oneof n { string name = 1; } int32 age = 2; }"], FU, []),
    ("fields moved into a new oneof",
     [USER, "message User { oneof n { string name = 1; int32 age = 2; } }"], B,
     ["MULTIPLE_FIELDS_MOVED_TO_ONEOF"]),
    ("field moved into an existing oneof",
     ["message User { oneof n { string name = 1; } int32 age = 2; }",
      "message User { oneof n { string name = 1; int32 age = 2; } }"], B,
     ["FIELD_MOVED_TO_EXISTING_ONEOF"]),
    ("oneof member added", ["message User { oneof n { string a = 1; } }",
                            "message User { oneof n { string a = 1; int32 b = 2; } }"], B, []),
    ("oneof member removed", ["message User { oneof n { string a = 1; int32 b = 2; } }",
                              "message User { oneof n { string a = 1; } }"], B,
     ["ONEOF_FIELD_REMOVED"]),
    ("package changed", [USER, ("proto3", "acme.v2", USER)], FU, []),
    ("syntax changed", [("proto2", "acme", "message U { optional string a = 1; }"),
                        ("proto3", "acme", "message U { optional string a = 1; }")], FU, []),
    ("map value type changed", ["message M { map<string, int32> m = 1; }",
                                "message M { map<string, string> m = 1; }"], B,
     ["FIELD_NAMED_TYPE_CHANGED"]),
    ("map -> scalar", ["message M { map<string, int32> m = 1; }", "message M { int32 m = 1; }"],
     B, ["FIELD_KIND_CHANGED"]),
    # three versions
    ("backward: latest only",
     [USER + "\nmessage X {}", USER, USER], B, []),
    ("backward transitive: v1 had a message v3 lacks",
     [USER + "\nmessage X {}", USER, USER], BT, ["MESSAGE_REMOVED"]),
    ("forward transitive",
     [USER, USER, USER + "\nmessage X {}"], FT, ["MESSAGE_REMOVED", "MESSAGE_REMOVED"]),
    ("full transitive with field changes",
     [USER, "message User { string name = 1; }",
      "message User { string name = 1; string email = 3; }"], FUT, []),
    ("full transitive: number 2 reused with another type",
     [USER, "message User { string name = 1; }", "message User { string name = 1; "
      "string age = 2; }"], FUT, ["FIELD_SCALAR_KIND_CHANGED", "FIELD_SCALAR_KIND_CHANGED"]),
    ("full: the reuse only checked against v2",
     [USER, "message User { string name = 1; }", "message User { string name = 1; "
      "string age = 2; }"], FU, []),
]


def build(version: str | tuple[str, str, str]) -> ProtobufSchema:
    if isinstance(version, tuple):
        syntax, package, body = version
        return pb(body, package, syntax)
    return pb(version)


def types_of(messages: list[str]) -> list[str]:
    return [m.split("type=")[1].rstrip("}") for m in messages if "Difference{" in m]


@pytest.mark.parametrize(("versions", "level", "expected"),
                         [pytest.param(v, lvl, e, id=c) for c, v, lvl, e in CASES])
def test_evolution(versions: list[str | tuple[str, str, str]], level: CompatibilityLevel,
                   expected: list[str]) -> None:
    *old, new = [build(v) for v in versions]
    messages = check_compatibility(new, list(enumerate(old, start=1)), level)
    assert types_of(messages) == expected
    assert (messages == []) == (expected == [])


def test_message_wording() -> None:
    old = pb(USER)
    new = pb("message User { string name = 1; sint32 age = 2; }")
    assert check_compatibility(new, [(1, old)], B)[0] == (
        "Found incompatible change: Difference{fullPath='#/User/2', "
        "type=FIELD_SCALAR_KIND_CHANGED}")


def test_compatible_differences_are_listed() -> None:
    found = protobuf_differences(pb(USER), pb("message User { string n = 1; }",
                                              package="other"))
    assert found == [("PACKAGE_CHANGED", "#/"), ("FIELD_REMOVED", "#/User/2"),
                     ("FIELD_NAME_CHANGED", "#/User/1")]
    assert all(kind in COMPATIBLE_CHANGES for kind, _ in found)


def test_named_types_compare_without_the_package() -> None:
    a = pb("message User { A a = 1; }\nmessage A {}", package="one")
    b = pb("message User { A a = 1; }\nmessage A {}", package="two")
    assert check_compatibility(b, [(1, a)], FU) == []


def test_enum_constant_renamed_is_a_compatible_difference() -> None:
    found = protobuf_differences(pb("enum E { Z = 0; A = 1; }"), pb("enum E { Z = 0; B = 1; }"))
    assert found == [("ENUM_CONST_CHANGED", "#/E/1")]
