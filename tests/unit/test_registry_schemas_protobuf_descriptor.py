"""Protobuf schemas as serialized FileDescriptorProtos (confluent-kafka's Python serializers
register and fetch them so): descriptors to .proto text and back, checked by loading them
into protobuf's own descriptor pool and round-tripping messages."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from strom.registry.errors import InvalidSchemaError
from strom.registry.schemas import ProtobufSchema, parse_schema
from strom.registry.schemas.protobuf_descriptor import (
    decode_descriptor,
    descriptor_to_text,
    schema_to_descriptor,
    serialized,
)

ORDER = """
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";
message Order {
  string id = 1;
  repeated Line lines = 2;
  map<string, int64> counts = 3;
  google.protobuf.Timestamp at = 4;
  oneof payment { string card = 5; Voucher voucher = 6; }
  optional Status status = 7;
  map<string, Status> by_name = 9;
  repeated int32 packed_ints = 10 [packed = true, deprecated = true];
  reserved 8, 11 to 12;
  reserved "old";
  message Line { string sku = 1; uint32 quantity = 2; }
}
message Voucher { string code = 1; }
enum Status {
  option allow_alias = true;
  STATUS_UNSPECIFIED = 0; PAID = 1; SETTLED = 1;
  reserved 5 to 6;
  reserved "GONE";
}
"""


def proto(text: str) -> ProtobufSchema:
    parsed = parse_schema(text, "PROTOBUF")
    assert isinstance(parsed, ProtobufSchema)
    return parsed


def b64(fd: descriptor_pb2.FileDescriptorProto) -> str:
    return base64.b64encode(fd.SerializeToString()).decode()


def test_our_descriptor_loads_into_protobuf_and_round_trips_messages() -> None:
    fd = schema_to_descriptor(proto(ORDER), "order.proto")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(fd)
    order_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v1.Order"))
    order = order_class(id="o-1", card="4242", status=1)
    order.lines.add(sku="apple", quantity=3)
    order.counts["apple"] = 3
    order.by_name["x"] = 1
    order.packed_ints.extend([1, 2])
    order.at.seconds = 10
    again = order_class.FromString(order.SerializeToString())
    assert again == order
    assert again.WhichOneof("payment") == "card"
    assert again.HasField("status")  # proto3 optional: presence kept
    descriptor = pool.FindMessageTypeByName("shop.v1.Order")
    assert descriptor.fields_by_name["counts"].message_type.GetOptions().map_entry
    assert [o.name for o in descriptor.oneofs] == ["payment", "_status"]
    assert fd.message_type[0].reserved_range[0].end == 9  # end exclusive


def test_base64_descriptor_registers_as_the_same_model() -> None:
    text_form = proto(ORDER)
    from_descriptor = proto(serialized(text_form, "order.proto"))
    assert from_descriptor.normalized() == text_form.normalized()
    assert from_descriptor.record_names() == text_form.record_names()
    assert "syntax = \"proto3\";" in from_descriptor.canonical()


def test_descriptors_compiled_by_protoc() -> None:
    # descriptor.proto (proto2: defaults, extension ranges, nested enums, reserved) and
    # timestamp.proto, as protoc compiled them into the protobuf package
    for module in (descriptor_pb2, timestamp_pb2):
        fd = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        schema = proto(b64(fd))
        assert {m.name for m in schema.messages} == {m.name for m in fd.message_type}
        # text -> descriptor -> text is a fixed point of the model
        again = proto(descriptor_to_text(schema_to_descriptor(schema, fd.name)))
        assert again.normalized() == schema.normalized()
    text = descriptor_to_text(
        descriptor_pb2.FileDescriptorProto.FromString(descriptor_pb2.DESCRIPTOR.serialized_pb))
    assert "extensions 1000 to 536870911;" in text
    assert 'optional bool deprecated = 3 [default = false];' in text
    assert 'option java_package = "com.google.protobuf";' in text


def test_decode_descriptor_tells_text_from_base64() -> None:
    assert decode_descriptor(ORDER) is None
    assert decode_descriptor("bm90IGEgZGVzY3JpcHRvcg===") is None  # base64, not a descriptor
    assert decode_descriptor("!!!") is None
    fd = schema_to_descriptor(proto(ORDER))
    decoded = decode_descriptor(b64(fd))
    assert decoded == fd


def test_services_and_public_imports_print() -> None:
    fd = descriptor_pb2.FileDescriptorProto(name="s.proto", package="p", syntax="proto3",
                                            dependency=["google/protobuf/empty.proto"],
                                            public_dependency=[0])
    fd.message_type.add(name="Req")
    method = fd.service.add(name="Svc").method.add(name="Call", input_type=".p.Req",
                                                   output_type=".google.protobuf.Empty")
    method.server_streaming = True
    text = descriptor_to_text(fd)
    assert 'import public "google/protobuf/empty.proto";' in text
    assert "rpc Call (.p.Req) returns (stream .google.protobuf.Empty);" in text
    assert proto(b64(fd)).services


def test_proto2_oneofs_groups_and_required_through_descriptors() -> None:
    schema = proto('syntax = "proto2"; package q;\n'
                   "message M { required int32 a = 1; oneof o { string s = 2; int64 n = 3; }\n"
                   '  optional string d = 4 [default = "x"]; }')
    fd = schema_to_descriptor(schema)
    assert fd.message_type[0].field[0].label == descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED
    assert fd.message_type[0].field[3].default_value == "x"
    again = proto(b64(fd))
    assert again.normalized() == schema.normalized()
    assert {f.name: f.oneof for f in again.messages[0].fields} == {
        "a": None, "s": "o", "n": "o", "d": None}


def test_file_options_both_ways_and_editions_refused() -> None:
    schema = proto('syntax = "proto3"; option optimize_for = LITE_RUNTIME;\n'
                   'option java_multiple_files = true; option (my.custom) = "x";\n'
                   'option java_package = "a.b"; message M {}')
    fd = schema_to_descriptor(schema)
    assert fd.options.optimize_for == descriptor_pb2.FileOptions.LITE_RUNTIME
    assert fd.options.java_multiple_files and fd.options.java_package == "a.b"
    text = descriptor_to_text(fd)
    assert "option optimize_for = LITE_RUNTIME;" in text
    assert "option java_multiple_files = true;" in text
    assert "custom" not in text  # custom options are not carried
    editions = descriptor_pb2.FileDescriptorProto(name="e.proto", syntax="editions")
    with pytest.raises(InvalidSchemaError):
        proto(b64(editions))
