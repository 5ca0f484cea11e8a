"""The fixed 61-byte header of a Kafka v2 record batch (magic 2), read without copying."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import crc32c

BATCH_HEADER_SIZE: Final = 61
# Bytes before the batchLength field's end: base_offset (8) + batch_length (4).
LOG_OVERHEAD: Final = 12
MAGIC_OFFSET: Final = 16
CRC_OFFSET: Final = 17
ATTRIBUTES_OFFSET: Final = 21  # the CRC covers from here to the end of the batch
MAX_TIMESTAMP_OFFSET: Final = 35

_HEADER: Final = struct.Struct(">qiibIhiqqqhii")

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_MASK: Final = 0x08
TRANSACTIONAL_MASK: Final = 0x10
CONTROL_MASK: Final = 0x20


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int  # bytes after the batch_length field
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """The whole batch's size in bytes."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)


def read_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Reads a header at `pos`; the caller checks that BATCH_HEADER_SIZE bytes remain."""
    return BatchHeader(*_HEADER.unpack_from(buf, pos))


def batch_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    """CRC-32C over the part of the batch at `pos` (of `size` bytes) that the CRC covers."""
    return int(crc32c.crc32c(memoryview(buf)[pos + ATTRIBUTES_OFFSET : pos + size]))


def crc_matches(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> bool:
    return batch_crc(buf, pos, header.size) == header.crc


def set_base_offset(buf: bytearray, pos: int, base_offset: int, leader_epoch: int) -> None:
    """Rewrites the fields outside the CRC that the log assigns."""
    struct.pack_into(">q", buf, pos, base_offset)
    struct.pack_into(">i", buf, pos + 12, leader_epoch)
