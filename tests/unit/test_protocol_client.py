"""The inter-broker client's codec without sockets: RequestBuilder drops the fields a version
lacks, requests are framed with request header v1 (v2, with tagged fields, for flexible
versions) and read back by the broker's own header parser and safe decoder, answers are read
with response header v0/v1 (ApiVersions always v0, and in v0 when the peer refused our
version), and versions are picked from both sides' ranges."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest
from kio.schema.errors import ErrorCode
from kio.static.primitive import i16

from strom.protocol.client import PeerUnavailable, VersionRange, kio_versions, pick_version
from strom.protocol.framing import parse_header
from strom.protocol.messages import (
    RequestBuilder,
    ResponseBuilder,
    decode_response,
    encode_request,
    encode_response,
    request_type,
    response_correlation_id,
)
from strom.protocol.safe_decoder import DecodeError, decode

METADATA = 3
API_VERSIONS = 18
ADD_PARTITIONS_TO_TXN = 24
WRITE_TXN_MARKERS = 27


def metadata_request(version: int) -> object:
    b = RequestBuilder(METADATA, version)
    return b.make("MetadataRequest", topics=(b.make("MetadataRequestTopic", name="t",
                                                    topic_id=None),),
                  allow_auto_topic_creation=False,
                  include_topic_authorized_operations=True,
                  include_cluster_authorized_operations=False)


def test_request_builder_drops_the_fields_a_version_lacks() -> None:
    old, new = metadata_request(0), metadata_request(12)
    assert type(old).__version__ == 0 and type(new).__version__ == 12
    assert not hasattr(old, "allow_auto_topic_creation")
    assert not hasattr(old.topics[0], "topic_id")  # type: ignore[attr-defined]
    assert new.allow_auto_topic_creation is False  # type: ignore[attr-defined]
    assert new.include_topic_authorized_operations is True  # type: ignore[attr-defined]
    b3, b5 = RequestBuilder(ADD_PARTITIONS_TO_TXN, 3), RequestBuilder(ADD_PARTITIONS_TO_TXN, 5)
    assert b5.has("AddPartitionsToTxnTransaction", "verify_only")
    assert not b3.has_class("AddPartitionsToTxnTransaction")
    assert b3.has("AddPartitionsToTxnRequest", "v3_and_below_transactional_id")


def test_a_request_of_a_fixed_version_has_header_v1() -> None:
    frame = encode_request(7, "strom-broker-3", metadata_request(1))  # type: ignore[arg-type]
    size, api_key, version, correlation_id, id_length = struct.unpack_from(">ihhih", frame)
    assert size == len(frame) - 4
    assert (api_key, version, correlation_id) == (METADATA, 1, 7)
    assert frame[14:14 + id_length] == b"strom-broker-3"
    body_offset = 14 + id_length - 4  # header v1 ends with the client id
    header = parse_header(frame[4:], request_type(METADATA, 1))  # type: ignore[arg-type]
    assert (header.client_id, header.body_offset) == ("strom-broker-3", body_offset)
    body, end = decode(request_type(METADATA, 1), frame[4:], body_offset)  # type: ignore[arg-type]
    assert body == metadata_request(1) and end == len(frame) - 4


def test_a_request_of_a_flexible_version_has_header_v2() -> None:
    request = metadata_request(12)
    frame = encode_request(8, "strom-broker-3", request)  # type: ignore[arg-type]
    _size, api_key, version, correlation_id, id_length = struct.unpack_from(">ihhih", frame)
    assert (api_key, version, correlation_id, id_length) == (METADATA, 12, 8, 14)
    # header v2: the client id stays a legacy string, then the header's tagged fields (none)
    assert frame[28] == 0
    header = parse_header(frame[4:], request_type(METADATA, 12))  # type: ignore[arg-type]
    assert header.body_offset == 25
    body, end = decode(request_type(METADATA, 12), frame[4:], 25)  # type: ignore[arg-type]
    assert body == request and end == len(frame) - 4


def test_a_request_without_a_client_id() -> None:
    frame = encode_request(1, None, metadata_request(4))  # type: ignore[arg-type]
    assert struct.unpack_from(">h", frame, 12) == (-1,)


def markers_response(version: int) -> object:
    b = ResponseBuilder(WRITE_TXN_MARKERS, version)
    return b.make("WriteTxnMarkersResponse", markers=(b.make(
        "WritableTxnMarkerResult", producer_id=5, topics=(b.make(
            "WritableTxnMarkerTopicResult", name="t", partitions=(b.make(
                "WritableTxnMarkerPartitionResult", partition_index=2,
                error_code=ErrorCode.not_leader_or_follower),)),)),))


@pytest.mark.parametrize("api_key,version", [(WRITE_TXN_MARKERS, 1), (METADATA, 1),
                                             (METADATA, 12)])
def test_an_answer_is_read_with_its_header_version(api_key: int, version: int) -> None:
    if api_key == WRITE_TXN_MARKERS:
        body = markers_response(version)
    else:
        b = ResponseBuilder(METADATA, version)
        body = b.make("MetadataResponse", throttle_time=timedelta(0), brokers=(b.make(
            "MetadataResponseBroker", node_id=1, host="h", port=9092, rack=None),),
            cluster_id="c", controller_id=1, topics=(),
            cluster_authorized_operations=-2147483648)
    frame = encode_response(api_key, version, 41, body)[4:]  # type: ignore[arg-type]
    assert response_correlation_id(frame) == 41
    assert decode_response(api_key, version, frame) == body


def api_versions_answer(version: int, error: ErrorCode) -> object:
    b = ResponseBuilder(API_VERSIONS, version)
    return b.make("ApiVersionsResponse", error_code=error, throttle_time=timedelta(0),
                  api_keys=(b.make("ApiVersion", api_key=API_VERSIONS, min_version=0,
                                   max_version=2),))


def test_api_versions_answers_have_header_v0_and_a_refusal_is_read_as_v0() -> None:
    ok = api_versions_answer(3, ErrorCode.none)
    frame = encode_response(API_VERSIONS, 3, 9, ok)[4:]  # type: ignore[arg-type]
    assert decode(type(ok), frame, 4) == (ok, len(frame))  # type: ignore[arg-type]
    assert decode_response(API_VERSIONS, 3, frame) == ok
    refusal = api_versions_answer(0, ErrorCode.unsupported_version)
    frame = encode_response(API_VERSIONS, 0, 9, refusal)[4:]  # type: ignore[arg-type]
    answer = decode_response(API_VERSIONS, 4, frame)
    assert type(answer).__version__ == 0
    assert answer.api_keys[0].max_version == 2  # type: ignore[attr-defined]


def test_an_answer_that_does_not_decode_raises() -> None:
    frame = encode_response(WRITE_TXN_MARKERS, 1, 3,
                            markers_response(1))[4:]  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_response(WRITE_TXN_MARKERS, 1, frame[:-3])
    with pytest.raises(DecodeError):
        decode_response(WRITE_TXN_MARKERS, 1, b"\x00\x00")
    with pytest.raises(DecodeError):
        response_correlation_id(b"\x00")
    # a huge declared array count is refused before anything is allocated
    bad = bytearray(frame[:6]) + b"\xff\xff\xff\x0f"
    with pytest.raises(DecodeError):
        decode_response(WRITE_TXN_MARKERS, 1, bytes(bad))


def test_kio_versions() -> None:
    assert kio_versions(WRITE_TXN_MARKERS) == VersionRange(1, 2)
    assert kio_versions(ADD_PARTITIONS_TO_TXN) == VersionRange(0, 5)
    assert kio_versions(9999) is None


def test_the_highest_version_both_sides_serve() -> None:
    peer = {ADD_PARTITIONS_TO_TXN: VersionRange(0, 5), WRITE_TXN_MARKERS: VersionRange(1, 1),
            METADATA: VersionRange(0, 99)}
    assert pick_version("p", peer, ADD_PARTITIONS_TO_TXN, max_version=5, min_version=4) == 5
    assert pick_version("p", peer, ADD_PARTITIONS_TO_TXN, max_version=3) == 3
    assert pick_version("p", peer, WRITE_TXN_MARKERS, max_version=2) == 1
    kio_metadata = kio_versions(METADATA)
    assert kio_metadata is not None
    assert pick_version("p", peer, METADATA, max_version=99) == kio_metadata.max_version
    with pytest.raises(PeerUnavailable,
                       match="p serves add_partitions_to_txn v0-3, this broker sends v4-5"):
        pick_version("p", {ADD_PARTITIONS_TO_TXN: VersionRange(0, 3)}, ADD_PARTITIONS_TO_TXN,
                     max_version=5, min_version=4)
    with pytest.raises(PeerUnavailable, match="does not serve"):
        pick_version("p", {}, WRITE_TXN_MARKERS, max_version=2)
    with pytest.raises(ValueError, match="kio does not know"):
        pick_version("p", peer, 9999, max_version=1)


def test_request_header_fields_are_the_body_class_constants() -> None:
    request = RequestBuilder(WRITE_TXN_MARKERS, 2).make("WriteTxnMarkersRequest", markers=())
    frame = encode_request(2**31 - 1, "c", request)
    assert struct.unpack_from(">hhi", frame, 4) == (WRITE_TXN_MARKERS, 2, 2**31 - 1)
    assert type(request).__api_key__ == i16(WRITE_TXN_MARKERS)
