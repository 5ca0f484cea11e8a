"""Builds valid Kafka v2 record batches for tests (header, records, CRC-32C), standalone.

    data = make_batch(3, base_timestamp=1000)           # 3 records, timestamps 1000..1002
    batch = append_batch(make_batch(1, value_size=500)) # an AppendBatch for PartitionLog.append

`compression` only sets the attribute bits: the records are left uncompressed (storage never
decompresses, so that is enough to exercise its compressed-batch paths).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import crc32c

from strom.storage.api import AppendBatch, FileRegion, ReadResult
from strom.storage.local.files import read_region

_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = 61
COMPRESSION_GZIP = 0x01
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20


def zigzag_varint(value: int) -> bytes:
    zz = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zz & 0x7F
        zz >>= 7
        if zz:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_record(offset_delta: int, timestamp_delta: int, key: bytes | None,
                  value: bytes | None) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += zigzag_varint(timestamp_delta)
    body += zigzag_varint(offset_delta)
    for part in (key, value):
        if part is None:
            body += zigzag_varint(-1)
        else:
            body += zigzag_varint(len(part)) + part
    body += zigzag_varint(0)  # headers
    return zigzag_varint(len(body)) + bytes(body)


def make_batch(record_count: int = 1, base_timestamp: int = 0,
               timestamps: Sequence[int] | None = None, value_size: int = 10,
               values: Sequence[bytes] | None = None, compression: int = 0,
               attributes: int = 0, base_offset: int = 0, producer_id: int = -1,
               producer_epoch: int = -1, base_sequence: int = -1) -> bytearray:
    """A whole batch; record i has timestamp timestamps[i] (default base_timestamp + i)."""
    if timestamps is None:
        timestamps = [base_timestamp + i for i in range(record_count)]
    if values is None:
        values = [bytes([65 + i % 26]) * value_size for i in range(record_count)]
    assert len(timestamps) == record_count == len(values)
    first_ts = timestamps[0]
    records = b"".join(encode_record(i, ts - first_ts, None, v)
                       for i, (ts, v) in enumerate(zip(timestamps, values, strict=True)))
    attrs = (attributes | compression) & 0xFFFF
    size = HEADER_SIZE + len(records)
    buf = bytearray(size)
    _HEADER.pack_into(buf, 0, base_offset, size - 12, 0, 2, 0, attrs, record_count - 1,
                      first_ts, max(timestamps), producer_id, producer_epoch, base_sequence,
                      record_count)
    buf[HEADER_SIZE:] = records
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return buf


def append_batch(data: bytearray) -> AppendBatch:
    """An AppendBatch for a batch from make_batch (fields read back from its header)."""
    (_, _, _, _, _, _, last_delta, first_ts, max_ts, *_rest) = _HEADER.unpack_from(data, 0)
    return AppendBatch(data=data, record_count=last_delta + 1, max_timestamp=max_ts,
                       first_timestamp=first_ts)


def batch(record_count: int = 1, **kwargs: object) -> AppendBatch:
    """Shortcut: append_batch(make_batch(...))."""
    return append_batch(make_batch(record_count, **kwargs))  # type: ignore[arg-type]


def split_batches(data: bytes) -> list[bytes]:
    """Splits concatenated whole batches (what a read returns)."""
    out = []
    pos = 0
    while pos < len(data):
        length = struct.unpack_from(">i", data, pos + 8)[0]
        out.append(data[pos:pos + 12 + length])
        pos += 12 + length
    assert pos == len(data), "a partial batch at the end"
    return out


def batch_base_offset(data: bytes) -> int:
    return int(struct.unpack_from(">q", data, 0)[0])


def batch_last_offset(data: bytes) -> int:
    return batch_base_offset(data) + int(struct.unpack_from(">i", data, 23)[0])


async def crash_engine(engine: Any) -> None:
    """Simulates a crash of a LocalEngine: fds are closed with no flush, no index or
    checkpoint written and no clean-shutdown marker (background roll flushes finish first,
    so no thread is left using a closed fd)."""
    for parts in engine._logs.values():
        for plog in parts:
            await plog._flusher.wait_rolled()
            plog._closed = True
            for seg in plog._segments:
                fd = seg.detach_fd()
                if fd >= 0:
                    os.close(fd)
    engine._graveyard.close_all()
    engine._opened = False


def region_bytes(result: ReadResult) -> bytes:
    """The bytes of a ReadResult's chunks."""
    return b"".join(read_region(c) if isinstance(c, FileRegion) else c for c in result.chunks)


async def read_all(plog: Any, offset: int | None = None) -> list[bytes]:
    """Every batch of a partition log from `offset` (default: the log start offset)."""
    out: list[bytes] = []
    offset = plog.log_start_offset if offset is None else offset
    while offset < plog.log_end_offset:
        batches = split_batches(region_bytes(await plog.read(offset, 10**7, True)))
        out.extend(batches)
        offset = batch_last_offset(batches[-1]) + 1
    return out


@dataclass(frozen=True)
class Header:
    """The batch header fields producer state reads (BatchHeaderLike), for state tests."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    base_offset: int
    last_offset_delta: int
    max_timestamp: int = 1000
    is_control: bool = False
    is_transactional: bool = False
