"""strom.registry.wire: Confluent's wire format (magic byte, schema id, message indexes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.registry.wire import (
    HEADER_SIZE,
    WireFormatError,
    decode_header,
    decode_message_indexes,
    decode_varint,
    encode_header,
    encode_message_indexes,
    encode_varint,
    frame,
    has_magic_byte,
)


def test_header_is_magic_byte_and_big_endian_id() -> None:
    assert encode_header(1) == b"\x00\x00\x00\x00\x01"
    assert encode_header(0x01020304) == b"\x00\x01\x02\x03\x04"
    assert decode_header(b"\x00\x00\x00\x01\x00payload") == 256


@given(st.integers(0, 2**31 - 1), st.binary(max_size=20))
def test_header_round_trips(schema_id: int, payload: bytes) -> None:
    data = frame(schema_id, payload)
    assert decode_header(data) == schema_id
    assert data[HEADER_SIZE:] == payload
    assert has_magic_byte(data)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01",
                                  b"{\"json\": 1}"])
def test_not_wire_format(data: bytes) -> None:
    with pytest.raises(WireFormatError):
        decode_header(data)
    assert not has_magic_byte(data)
    assert not has_magic_byte(None)


@pytest.mark.parametrize("schema_id", [-1, 2**31])
def test_ids_out_of_range(schema_id: int) -> None:
    with pytest.raises(ValueError):
        encode_header(schema_id)


def test_varints_are_zigzag() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(-1) == b"\x01"
    assert encode_varint(1) == b"\x02"
    assert encode_varint(64) == b"\x80\x01"
    with pytest.raises(ValueError):
        encode_varint(2**31)


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_round_trips(value: int) -> None:
    data = encode_varint(value) + b"rest"
    assert decode_varint(data, 0) == (value, len(data) - 4)


def test_truncated_and_overlong_varints() -> None:
    with pytest.raises(WireFormatError):
        decode_varint(b"\x80", 0)
    with pytest.raises(WireFormatError):
        decode_varint(b"\xff\xff\xff\xff\xff\x01", 0)


def test_message_indexes_first_message_is_one_zero_byte() -> None:
    assert encode_message_indexes([0]) == b"\x00"
    assert decode_message_indexes(b"\x00", 0) == ([0], 1)
    # [1, 0]: count 2, then 1, 0 (zigzag: 4, 2, 0)
    assert encode_message_indexes([1, 0]) == b"\x04\x02\x00"
    assert decode_message_indexes(encode_header(7) + b"\x04\x02\x00xyz") == ([1, 0], 8)
    with pytest.raises(ValueError):
        encode_message_indexes([-1])


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=8), st.binary(max_size=8))
def test_message_indexes_round_trip(indexes: list[int], payload: bytes) -> None:
    data = frame(42, payload, indexes)
    assert decode_header(data) == 42
    decoded, offset = decode_message_indexes(data)
    assert decoded == indexes
    assert data[offset:] == payload


def test_bad_message_indexes() -> None:
    with pytest.raises(WireFormatError):
        decode_message_indexes(encode_varint(-3), 0)  # negative count
    with pytest.raises(WireFormatError):
        decode_message_indexes(encode_varint(2) + encode_varint(-1) + b"\x00", 0)
    with pytest.raises(WireFormatError):
        decode_message_indexes(encode_varint(5000), 0)
