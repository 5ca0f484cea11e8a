"""Writing v2 record batches (magic 2), as a Kafka producer does: for tests and tools."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from strom.protocol.batch_header import (
    _HEADER,
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    CONTROL_MASK,
    CRC_OFFSET,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    batch_crc,
)
from strom.protocol.compression import NONE, compress

NO_TIMESTAMP: Final = -1
MAGIC: Final = 2

HeaderInput = tuple[str | bytes, bytes | None]
# (key, value, headers, timestamp_ms)
RecordInput = tuple[bytes | None, bytes | None, Sequence[HeaderInput], int]


def write_varint(out: bytearray, value: int) -> None:
    """Appends the zigzag varint (or varlong) encoding of a signed 64-bit value."""
    raw = (value << 1) ^ (value >> 63)
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def _write_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out.append(1)  # zigzag(-1)
        return
    write_varint(out, len(value))
    out += value


def encode_record(out: bytearray, offset_delta: int, timestamp_delta: int, key: bytes | None,
                  value: bytes | None, headers: Sequence[HeaderInput]) -> None:
    """Appends one record (length-prefixed) to `out`."""
    body = bytearray(b"\x00")  # attributes: unused, always 0
    write_varint(body, timestamp_delta)
    write_varint(body, offset_delta)
    _write_bytes(body, key)
    _write_bytes(body, value)
    write_varint(body, len(headers))
    for header_key, header_value in headers:
        _write_bytes(body, header_key.encode() if isinstance(header_key, str) else header_key)
        _write_bytes(body, header_value)
    write_varint(out, len(body))
    out += body


def build_batch(records: Sequence[RecordInput], *, compression: int = NONE,
                base_offset: int = 0, partition_leader_epoch: int = -1, producer_id: int = -1,
                producer_epoch: int = -1, base_sequence: int = -1, transactional: bool = False,
                control: bool = False, log_append_time: int | None = None,
                snappy_xerial: bool = False) -> bytes:
    """A v2 batch of `records` with a valid CRC, the way a producer writes one.

    base_timestamp is the first record's timestamp and max_timestamp the largest; with
    `log_append_time` the batch is LogAppendTime and max_timestamp is that time. An empty
    `records` gives the empty batch Kafka writes: count 0, last offset delta -1.
    """
    payload = bytearray()
    base_ts = records[0][3] if records else NO_TIMESTAMP
    for i, (key, value, headers, ts) in enumerate(records):
        encode_record(payload, i, ts - base_ts, key, value, headers)
    if compression != NONE:
        payload = bytearray(compress(compression, payload, snappy_xerial=snappy_xerial))
    attributes = compression & COMPRESSION_MASK
    attributes |= TRANSACTIONAL_MASK if transactional else 0
    attributes |= CONTROL_MASK if control else 0
    max_ts = max((r[3] for r in records), default=NO_TIMESTAMP)
    if log_append_time is not None:
        attributes |= TIMESTAMP_TYPE_MASK
        max_ts = log_append_time
    size = BATCH_HEADER_SIZE + len(payload)
    out = bytearray(_HEADER.pack(
        base_offset, size - LOG_OVERHEAD, partition_leader_epoch, MAGIC, 0, attributes,
        len(records) - 1, base_ts, max_ts, producer_id, producer_epoch, base_sequence,
        len(records)))
    out += payload
    reseal(out)
    return bytes(out)


def reseal(batch: bytearray) -> None:
    """Recomputes the CRC of a batch whose CRC-covered bytes were changed in place."""
    struct.pack_into(">I", batch, CRC_OFFSET, batch_crc(batch, 0, len(batch)))

