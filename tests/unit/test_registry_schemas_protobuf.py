"""strom.registry.schemas for Protobuf: the .proto model, validation, forms, imports as
references, message indexes."""

from __future__ import annotations

import pytest

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas import ProtobufSchema, SchemaReference, SchemaType, parse_schema
from strom.registry.schemas.protobuf import MAX_FIELD_NUMBER
from strom.registry.wire import decode_message_indexes, encode_message_indexes


def proto(text: str, references: list[SchemaReference] | None = None,
          resolver: object = None) -> ProtobufSchema:
    parsed = parse_schema(text, "PROTOBUF", references or [], resolver)  # type: ignore[arg-type]
    assert isinstance(parsed, ProtobufSchema)
    assert parsed.schema_type is SchemaType.PROTOBUF
    return parsed


ORDER = """
syntax = "proto3";
package shop.v1;
// a comment that no form keeps
import "google/protobuf/timestamp.proto";
option java_package = "com.shop";

message Order {
  string id = 1;
  repeated Line lines = 2;
  map<string, int64> counts = 3;
  google.protobuf.Timestamp at = 4;
  oneof payment {
    string card = 5;
    Voucher voucher = 6;
  }
  optional Status status = 7;
  reserved 8, 10 to 12;
  reserved "old";
  message Line {
    string sku = 1;
    uint32 quantity = 2;
    enum Kind { KIND_UNSPECIFIED = 0; GOODS = 1; }
    Kind kind = 3;
  }
}
message Voucher { string code = 1; }
enum Status { STATUS_UNSPECIFIED = 0; PAID = 1; }
"""


def test_model_of_a_proto3_file() -> None:
    schema = proto(ORDER)
    assert (schema.syntax, schema.package) == ("proto3", "shop.v1")
    assert schema.imports == ["google/protobuf/timestamp.proto"]
    assert schema.options == ['java_package = "com.shop"']
    order = schema.messages[0]
    fields = {f.name: f for f in order.fields}
    assert fields["lines"].label == "repeated"
    assert fields["lines"].full_type == ".shop.v1.Order.Line"
    assert fields["lines"].kind == "message"
    assert fields["counts"].kind == "map"
    assert fields["counts"].full_type == "map<string, int64>"
    assert fields["at"].full_type == ".google.protobuf.Timestamp"
    assert fields["card"].oneof == "payment" and fields["voucher"].oneof == "payment"
    assert fields["voucher"].full_type == ".shop.v1.Voucher"
    assert fields["status"].kind == "enum" and fields["status"].label == "optional"
    assert fields["id"].label == ""
    assert order.oneofs == ["payment"]
    assert order.reserved_numbers == [(8, 8), (10, 12)]
    assert order.reserved_names == ["old"]
    line = order.messages[0]
    assert {f.name: f.full_type for f in line.fields}["kind"] == ".shop.v1.Order.Line.Kind"
    assert line.enums[0].values == {"KIND_UNSPECIFIED": 0, "GOODS": 1}
    assert schema.record_names() == ["shop.v1.Order", "shop.v1.Order.Line", "shop.v1.Voucher"]


def test_message_indexes() -> None:
    schema = proto(ORDER)
    assert schema.message_indexes("shop.v1.Order") == [0]
    assert schema.message_indexes("shop.v1.Order.Line") == [0, 0]
    assert schema.message_indexes("Voucher") == [1]
    assert schema.message_at([0, 0]).name == "Line"
    assert schema.message_at([1]).name == "Voucher"
    encoded = encode_message_indexes(schema.message_indexes("shop.v1.Order.Line"))
    assert schema.message_at(decode_message_indexes(encoded, 0)[0]).name == "Line"
    with pytest.raises(KeyError):
        schema.message_indexes("shop.v1.Nope")
    with pytest.raises(IndexError):
        schema.message_at([2])
    with pytest.raises(IndexError):
        schema.message_at([])


def test_canonical_drops_comments_and_normalized_sorts() -> None:
    schema = proto(ORDER)
    assert "comment" not in schema.canonical()
    assert schema.canonical().index("string id = 1") < schema.canonical().index("message Voucher")
    # the canonical text parses back to the same model
    again = proto(schema.canonical())
    assert again.normalized() == schema.normalized()
    shuffled = proto("""
syntax = "proto3";
option java_package = "com.shop";
import "google/protobuf/timestamp.proto";
package shop.v1;
enum Status { STATUS_UNSPECIFIED = 0; PAID = 1; }
message Voucher { string code = 1; }
message Order {
  message Line {
    enum Kind { KIND_UNSPECIFIED = 0; GOODS = 1; }
    Kind kind = 3;
    uint32 quantity = 2;
    string sku = 1;
  }
  reserved "old";
  reserved 10 to 12, 8;
  optional .shop.v1.Status status = 7;
  oneof payment { Voucher voucher = 6; string card = 5; }
  .google.protobuf.Timestamp at = 4;
  map<string, int64> counts = 3;
  repeated Order.Line lines = 2;
  string id = 1;
}
""")
    assert shuffled.identity() != schema.identity()
    assert shuffled.normalized() == schema.normalized()
    assert "  .shop.v1.Order.Line lines" not in schema.normalized()
    assert "  repeated .shop.v1.Order.Line lines = 2;" in schema.normalized()


def test_proto2_groups_required_and_defaults() -> None:
    schema = proto("""
syntax = "proto2";
message A {
  required int32 a = 1 [default = 5];
  optional group G = 2 { optional int32 x = 1; }
  extensions 100 to 199;
}
service S { rpc M (A) returns (A); }
""")
    a = schema.messages[0]
    assert [(f.name, f.label, f.number) for f in a.fields] == [("a", "required", 1),
                                                               ("g", "optional", 2)]
    assert a.fields[0].options == ["default = 5"]
    assert a.messages[0].name == "G"
    assert "service S" in schema.normalized()
    assert proto("message M { optional string s = 1; }").syntax == "proto2"


INVALID = [
    "message {",
    'syntax = "proto3"; message M { int32 a = ; }',
    "garbage",
    'syntax = "proto4"; message M {}',
    'syntax = "proto3"; message M { int32 a = 0; }',
    f'syntax = "proto3"; message M {{ int32 a = {MAX_FIELD_NUMBER + 1}; }}',
    'syntax = "proto3"; message M { int32 a = 19000; }',
    'syntax = "proto3"; message M { int32 a = 1; string b = 1; }',
    'syntax = "proto3"; message M { int32 a = 1; string a = 2; }',
    'syntax = "proto3"; message M { int32 a = 5; reserved 5; }',
    'syntax = "proto3"; message M { int32 a = 6; reserved 4 to max; }',
    'syntax = "proto3"; message M { int32 old = 1; reserved "old"; }',
    'syntax = "proto3"; message M { required int32 a = 1; }',
    'syntax = "proto3"; message M { Missing a = 1; }',
    'syntax = "proto3"; message M { map<double, string> m = 1; }',
    'syntax = "proto3"; enum E { A = 1; }',
    'syntax = "proto3"; enum E { A = 0; B = 0; }',
    'syntax = "proto3"; enum E { A = 0; A = 1; }',
    'syntax = "proto3"; import "other.proto"; message M { int32 a = 1; }',
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_protos(text: str) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        proto(text)
    assert info.value.error_code == 42201


def test_enum_aliases_with_allow_alias() -> None:
    schema = proto('syntax = "proto3"; enum E { option allow_alias = true; A = 0; B = 0; }')
    assert schema.enums[0].allow_alias


def test_imports_are_references() -> None:
    common = proto('syntax = "proto3"; package common; message Money { int64 cents = 1; }')
    ref = SchemaReference("common/money.proto", "money", 1)
    order = proto('syntax = "proto3"; package shop; import "common/money.proto";\n'
                  "message Order { common.Money total = 1; }", [ref], lambda r: common)
    assert order.messages[0].fields[0].full_type == ".common.Money"
    assert order.references == (ref,)
    # a type of the import's import is not visible unless imported (here it is transitively
    # known: the model keeps the dependency's types, as protoc with public imports)
    with pytest.raises(InvalidSchemaError, match="no reference"):
        proto('syntax = "proto3"; import "common/money.proto"; message O { int32 a = 1; }')


def test_nested_scoping() -> None:
    schema = proto("""
syntax = "proto3";
package p;
message Outer {
  message Inner { int32 v = 1; }
  message Deep { Inner i = 1; Outer o = 2; p.Outer.Inner k = 3; }
}
""")
    deep = schema.messages[0].messages[1]
    assert [f.full_type for f in deep.fields] == [".p.Outer.Inner", ".p.Outer", ".p.Outer.Inner"]


def test_options_reserved_enums_and_well_known_types() -> None:
    schema = proto("""
syntax = "proto3";
import "google/protobuf/struct.proto";
message M {
  option deprecated = true;
  google.protobuf.Struct s = 1;
  google.protobuf.NullValue n = 2;
  .M self = 3;
}
enum E {
  option allow_alias = true;
  A = 0;
  B = 0;
  reserved 5 to 7;
  reserved "OLD";
}
""")
    message = schema.messages[0]
    assert message.options == ["deprecated = true"]
    assert [f.kind for f in message.fields] == ["message", "enum", "message"]
    assert (schema.enums[0].reserved_numbers, schema.enums[0].reserved_names) == ([(5, 7)],
                                                                                  ["OLD"])
    assert "  option allow_alias = true;" in schema.normalized()
    assert "  option deprecated = true;" in schema.normalized()


def test_empty_enum_is_invalid() -> None:
    with pytest.raises(InvalidSchemaError, match="no values"):
        proto('syntax = "proto3"; enum E {}')
