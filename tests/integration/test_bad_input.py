"""Malformed input gets Kafka's error code or a clean close of that one connection, the broker
keeps serving every other client, and nothing already written is lost."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32

from strom.protocol.records import build_batch
from strom.testing import EmbeddedBroker
from tests.integration.raw_client import RawClient


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def api_versions(version: int = 3) -> ApiVersionsRequest:
    return ApiVersionsRequest(client_software_name="raw", client_software_version="1")


def metadata(*names: str) -> MetadataRequest:
    return MetadataRequest(
        topics=tuple(MetadataRequestTopic(topic_id=None, name=n) for n in names),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False)


def produce(topic: str, records: bytes) -> ProduceRequest:
    return ProduceRequest(
        transactional_id=None, acks=i16(-1), timeout=timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic, partition_data=(
            PartitionProduceData(index=i32(0), records=records),)),))


def assert_serving(broker: EmbeddedBroker, topic: str, expected_end: int | None = None) -> None:
    """A fresh client still gets answers, and the topic's log is intact."""
    with RawClient(broker.port) as client:
        assert client.request(api_versions()).error_code == ErrorCode.none
        answer = client.request(metadata(topic))
        assert answer.topics[0].error_code == ErrorCode.none
    if expected_end is not None:
        plog = broker.server.engine.partition(topic, 0)
        assert plog.log_end_offset == expected_end


@pytest.fixture
def topic_with_data(broker: EmbeddedBroker) -> str:
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    with RawClient(broker.port) as client:
        client.request(api_versions())
        client.request(metadata(name))
        batch = build_batch([(b"k", b"v", [], 1_700_000_000_000)] * 3)
        part = client.request(produce(name, batch)).responses[0].partition_responses[0]
        assert part.error_code == ErrorCode.none
    return name


@pytest.mark.parametrize("payload", [
    b"\x00\x00\x00\x10garbage-garbage!",  # a frame whose header names no API
    struct.pack(">i", -5) + b"xx",  # negative frame size
    struct.pack(">i", 2**31 - 1),  # far over socket.request.max.bytes
    struct.pack(">i", 3) + b"abc",  # smaller than a request header
    b"\xff" * 64,
], ids=["garbage", "negative-size", "oversized", "tiny", "all-ff"])
def test_bad_frames_close_only_that_connection(broker: EmbeddedBroker, topic_with_data: str,
                                               payload: bytes) -> None:
    with RawClient(broker.port) as client:
        client.send_raw(payload)
        assert client.is_closed_by_peer()
    assert_serving(broker, topic_with_data, expected_end=3)


def test_truncated_request_closes_connection(broker: EmbeddedBroker,
                                             topic_with_data: str) -> None:
    with RawClient(broker.port) as client:
        client.request(api_versions())
        frame = client.frame(metadata(topic_with_data))
        # Claim the full size but stop half way, then close our side.
        client.send_raw(frame[: len(frame) // 2])
        client.sock.shutdown(1)
        assert client.is_closed_by_peer()
    assert_serving(broker, topic_with_data, expected_end=3)


def test_malformed_body_that_aborts_kio_native_reader(broker: EmbeddedBroker,
                                                      topic_with_data: str) -> None:
    with RawClient(broker.port) as client:
        client.request(api_versions())
        header = struct.pack(">hhih", 3, 12, 7, -1) + b"\x00"  # Metadata v12, header v2
        body = bytes.fromhex("ffffffff0f")
        client.send_raw(struct.pack(">i", len(header) + len(body)) + header + body)
        assert client.is_closed_by_peer()
    assert_serving(broker, topic_with_data, expected_end=3)


def test_unknown_api_key_closes_connection(broker: EmbeddedBroker, topic_with_data: str) -> None:
    with RawClient(broker.port) as client:
        client.send_raw(struct.pack(">ihhih", 10, 999, 0, 1, -1))
        assert client.is_closed_by_peer()
    assert_serving(broker, topic_with_data, expected_end=3)


def test_unsupported_api_versions_version_gets_v0_answer(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        client.send_raw(struct.pack(">ihhih", 10, 18, 99, 42, -1))
        answer = client.read_response(18, 0)
        assert answer.error_code == ErrorCode.unsupported_version
        assert any(k.api_key == 0 for k in answer.api_keys)


def test_corrupt_crc_is_refused_and_log_untouched(broker: EmbeddedBroker,
                                                  topic_with_data: str) -> None:
    batch = bytearray(build_batch([(b"k", b"value", [], 1_700_000_000_000)]))
    batch[-1] ^= 0xFF
    with RawClient(broker.port) as client:
        client.request(api_versions())
        part = client.request(produce(topic_with_data, bytes(batch))).responses[0]
        assert part.partition_responses[0].error_code == ErrorCode.corrupt_message
    assert_serving(broker, topic_with_data, expected_end=3)


@pytest.mark.parametrize("name", ["", "..", "bad/name", "x" * 250, "spaces are bad"])
def test_invalid_topic_names(broker: EmbeddedBroker, name: str) -> None:
    with RawClient(broker.port) as client:
        client.request(api_versions())
        answer = client.request(metadata(name))
        assert answer.topics[0].error_code == ErrorCode.invalid_topic_exception


def test_request_larger_than_pre_api_versions_limit_is_refused(broker: EmbeddedBroker) -> None:
    limit = broker.server.config.get_int("socket.request.max.bytes.pre.auth")
    with RawClient(broker.port) as client:
        client.send_raw(struct.pack(">i", limit + 1) + b"\0" * 16)
        assert client.is_closed_by_peer()


def test_failed_acks_zero_produce_closes_the_connection(broker: EmbeddedBroker,
                                                        topic_with_data: str) -> None:
    """The producer waits for no answer, so Kafka closes the connection to make it notice."""
    request = ProduceRequest(
        transactional_id=None, acks=i16(0), timeout=timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic_with_data, partition_data=(
            PartitionProduceData(index=i32(99), records=build_batch(
                [(b"k", b"v", [], 1_700_000_000_000)])),)),))
    with RawClient(broker.port) as client:
        client.request(api_versions())
        client.send_raw(client.frame(request))
        assert client.is_closed_by_peer()
    assert_serving(broker, topic_with_data, expected_end=3)


def test_successful_acks_zero_produce_gets_no_answer(broker: EmbeddedBroker,
                                                     topic_with_data: str) -> None:
    request = ProduceRequest(
        transactional_id=None, acks=i16(0), timeout=timedelta(seconds=5),
        topic_data=(TopicProduceData(name=topic_with_data, partition_data=(
            PartitionProduceData(index=i32(0), records=build_batch(
                [(b"k", b"v", [], 1_700_000_000_000)])),)),))
    with RawClient(broker.port) as client:
        client.request(api_versions())
        client.send_raw(client.frame(request))
        # The next answer on this connection is the metadata's, not a produce response.
        answer = client.request(metadata(topic_with_data))
        assert answer.topics[0].error_code == ErrorCode.none
    assert_serving(broker, topic_with_data, expected_end=4)


def test_topic_id_lookup_before_v12_is_an_invalid_request(broker: EmbeddedBroker,
                                                          topic_with_data: str) -> None:
    from kio.schema.metadata.v11.request import MetadataRequest as MetadataV11
    from kio.schema.metadata.v11.request import MetadataRequestTopic as TopicV11

    info = broker.server.engine.topics()[topic_with_data]
    request = MetadataV11(topics=(TopicV11(topic_id=info.topic_id, name=None),),
                          allow_auto_topic_creation=False,
                          include_topic_authorized_operations=False)
    with RawClient(broker.port) as client:
        client.request(api_versions())
        answer = client.request(request)
    assert answer.brokers, "a full answer, not the generic error body"
    assert answer.topics[0].error_code == ErrorCode.invalid_request
