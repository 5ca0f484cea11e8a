"""The safe decoder turns malformed bodies into DecodeError without ever allocating from a
declared count, including the 5-byte body that aborts kio's native reader."""

from __future__ import annotations

import contextlib
import io
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v8.request import ProduceRequest
from kio.serial import entity_writer

from strom.protocol.safe_decoder import DecodeError, decode, decode_exact


def metadata_body() -> bytes:
    request = MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=uuid.uuid4(), name="orders"),),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False)
    buf = io.BytesIO()
    entity_writer(MetadataRequest)(buf, request)
    return buf.getvalue()


def test_huge_declared_array_is_refused() -> None:
    with pytest.raises(DecodeError, match="array of"):
        decode(MetadataRequest, bytes.fromhex("ffffffff0f"))


def test_legacy_array_count_beyond_bytes_is_refused() -> None:
    # transactional_id null, acks 1, timeout 1000, then 2**31-1 topics in 0 bytes.
    body = bytes.fromhex("ffff" "0001" "000003e8" "7fffffff")
    with pytest.raises(DecodeError):
        decode(ProduceRequest, body)


def test_negative_array_count_other_than_null_is_refused() -> None:
    body = bytes.fromhex("ffff" "0001" "000003e8" "fffffffe")
    with pytest.raises(DecodeError, match="invalid array length"):
        decode(ProduceRequest, body)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode_exact(MetadataRequest, metadata_body() + b"\0")


def test_tagged_field_larger_than_the_body_is_refused() -> None:
    body = bytearray(metadata_body())
    body[-1] = 1  # one tagged field follows...
    body += bytes([0, 0x7F])  # tag 0 claiming 127 bytes
    with pytest.raises(DecodeError, match="past the end"):
        decode(MetadataRequest, bytes(body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_decode_error(raw: bytes) -> None:
    try:
        decode(MetadataRequest, raw)
        decode(ProduceRequest, raw)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_truncation_and_flip_of_a_valid_body(data: st.DataObject) -> None:
    body = bytearray(metadata_body())
    cut = data.draw(st.integers(0, len(body)))
    flip_at = data.draw(st.integers(0, len(body) - 1))
    body[flip_at] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(DecodeError):
        decode_exact(MetadataRequest, bytes(body[:cut]))
