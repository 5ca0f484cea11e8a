"""Confluent's wire format: what serializers put in front of every key and value.

    byte 0      magic byte 0
    bytes 1-4   the schema id, a 4-byte big-endian signed integer
    (Protobuf)  the message indexes: the path from the file's top-level messages to the
                message the payload is, as a zigzag-varint count then zigzag-varint indexes;
                the common case [0] (the first top-level message) is the single byte 0
    the rest    the payload in the schema's own encoding

This module is the part of the registry that the broker may use for validation on produce: it
imports nothing but the standard library, nothing else of strom.registry, and no third-party
package (an import-linter contract in pyproject.toml keeps it so). The broker imports
`strom.registry.wire` directly; `strom.registry`'s own __init__ imports nothing either.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

MAGIC_BYTE = 0
HEADER_SIZE = 5  # magic byte + 4-byte id
MAX_MESSAGE_INDEXES = 1024  # a bound against garbage: real nesting is a handful deep

_ID = struct.Struct(">i")


class WireFormatError(ValueError):
    """The bytes are not in Confluent's wire format (no magic byte, too short, bad varint)."""


def encode_header(schema_id: int) -> bytes:
    """The 5-byte prefix for `schema_id` (0 <= id <= 2**31-1)."""
    if not 0 <= schema_id <= 0x7FFFFFFF:
        raise ValueError(f"schema id {schema_id} out of range")
    return bytes([MAGIC_BYTE]) + _ID.pack(schema_id)


def decode_header(data: bytes | bytearray | memoryview) -> int:
    """The schema id of a framed payload; the payload itself starts at HEADER_SIZE."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"{len(data)} bytes: too short for the magic byte and a schema id")
    if data[0] != MAGIC_BYTE:
        raise WireFormatError(f"unknown magic byte {data[0]}")
    (schema_id,) = _ID.unpack_from(data, 1)
    return int(schema_id)


def has_magic_byte(data: bytes | bytearray | memoryview | None) -> bool:
    """True when `data` is long enough for a header and starts with the magic byte."""
    return data is not None and len(data) >= HEADER_SIZE and data[0] == MAGIC_BYTE


def encode_varint(value: int) -> bytes:
    """A zigzag varint (as Kafka's ByteUtils.writeVarint) of a 32-bit signed integer."""
    if not -(2**31) <= value <= 2**31 - 1:
        raise ValueError(f"{value} does not fit a 32-bit varint")
    n = ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(data: bytes | bytearray | memoryview, offset: int) -> tuple[int, int]:
    """(value, next offset) of the zigzag varint at `offset`."""
    n = 0
    shift = 0
    pos = offset
    while True:
        if pos >= len(data):
            raise WireFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 28:
            raise WireFormatError("varint longer than 5 bytes")
    n &= 0xFFFFFFFF
    return (n >> 1) ^ -(n & 1), pos


def encode_message_indexes(indexes: Sequence[int]) -> bytes:
    """Protobuf's message-index array; [0] is written as the single byte 0."""
    if list(indexes) == [0]:
        return b"\x00"
    if any(i < 0 for i in indexes):
        raise ValueError(f"negative message index in {list(indexes)}")
    return encode_varint(len(indexes)) + b"".join(encode_varint(i) for i in indexes)


def decode_message_indexes(
    data: bytes | bytearray | memoryview, offset: int = HEADER_SIZE
) -> tuple[list[int], int]:
    """(indexes, offset of the payload) of the message-index array at `offset`."""
    count, pos = decode_varint(data, offset)
    if count == 0:
        return [0], pos
    if count < 0 or count > MAX_MESSAGE_INDEXES:
        raise WireFormatError(f"invalid message-index count {count}")
    indexes = []
    for _ in range(count):
        index, pos = decode_varint(data, pos)
        if index < 0:
            raise WireFormatError(f"negative message index {index}")
        indexes.append(index)
    return indexes, pos


def frame(schema_id: int, payload: bytes, message_indexes: Sequence[int] | None = None) -> bytes:
    """A whole framed record value: header, message indexes (Protobuf only), payload."""
    indexes = b"" if message_indexes is None else encode_message_indexes(message_indexes)
    return encode_header(schema_id) + indexes + payload
