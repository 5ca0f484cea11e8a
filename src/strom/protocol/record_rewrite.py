"""Rewriting a v2 record batch with a subset of its records, as Kafka's log cleaner does.

Kafka's cleaner (MemoryRecords.filterTo, buildRetainedRecordsInto) keeps a cleaned batch's
base offset and last offset delta, so every kept record keeps its offset delta (its offset
does not change) and the batch still spans its original offsets; the record count becomes the
number of kept records. Producer id, epoch and base sequence, the partition leader epoch, the
codec (snappy keeps its framing), the timestamp type and the transactional and control flags
are kept; record timestamps (base timestamp + delta) and headers are kept exactly.

KIP-534: a batch that keeps tombstones carries a *delete horizon*: attribute bit 0x40 set and
the base timestamp field holding the time after which its tombstones may be removed (record
timestamp deltas are then relative to it). Without a horizon the base timestamp is the first
kept record's timestamp, as a producer would write it.

`empty_batch` writes the header-only batch (record count 0) that stands for offsets whose
records were all removed (Kafka writes one to keep a producer's last sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from strom.protocol.batch_header import (
    _HEADER,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
)
from strom.protocol.compression import NONE, SNAPPY, XERIAL_MAGIC, compress
from strom.protocol.record_builder import MAGIC, encode_record, reseal
from strom.protocol.record_walk import Record

DELETE_HORIZON_MASK: Final = 0x40


def delete_horizon_ms(header: BatchHeader) -> int | None:
    """The batch's delete horizon (KIP-534), None if it has none."""
    return header.base_timestamp if header.attributes & DELETE_HORIZON_MASK else None


def _seal(out: bytearray) -> bytes:
    reseal(out)
    return bytes(out)


def rebuild_batch(header: BatchHeader, original: bytes | bytearray | memoryview,
                  records: Sequence[Record], *, horizon_ms: int | None) -> bytes:
    """The batch `original` (described by `header`) with only `records`, a non-empty ordered
    subset of its records as parsed, and the delete horizon `horizon_ms` (None: none)."""
    if not records:
        raise ValueError("a rebuilt batch needs at least one record")
    base_ts = header.base_timestamp
    stamps = [base_ts + r.timestamp_delta for r in records]
    new_base_ts = stamps[0] if horizon_ms is None else horizon_ms
    payload = bytearray()
    for r, ts in zip(records, stamps, strict=True):
        encode_record(payload, r.offset_delta, ts - new_base_ts, r.key, r.value, r.headers)
    codec = header.compression
    if codec != NONE:
        xerial = codec == SNAPPY and bytes(
            original[BATCH_HEADER_SIZE:BATCH_HEADER_SIZE + len(XERIAL_MAGIC)]) == XERIAL_MAGIC
        payload = bytearray(compress(codec, payload, snappy_xerial=xerial))
    attributes = header.attributes & ~DELETE_HORIZON_MASK
    if horizon_ms is not None:
        attributes |= DELETE_HORIZON_MASK
    max_ts = header.max_timestamp if header.is_log_append_time else max(stamps)
    size = BATCH_HEADER_SIZE + len(payload)
    out = bytearray(_HEADER.pack(
        header.base_offset, size - LOG_OVERHEAD, header.partition_leader_epoch, MAGIC, 0,
        attributes, header.last_offset_delta, new_base_ts, max_ts, header.producer_id,
        header.producer_epoch, header.base_sequence, len(records)))
    out += payload
    return _seal(out)


def empty_batch(base_offset: int, last_offset: int, timestamp: int,
                partition_leader_epoch: int) -> bytes:
    """A batch of no records spanning base_offset..last_offset (CreateTime, uncompressed, no
    producer), with `timestamp` as both its base and max timestamp."""
    if last_offset < base_offset:
        raise ValueError(f"offsets {base_offset}..{last_offset} are empty")
    out = bytearray(_HEADER.pack(
        base_offset, BATCH_HEADER_SIZE - LOG_OVERHEAD, partition_leader_epoch, MAGIC, 0, 0,
        last_offset - base_offset, timestamp, timestamp, -1, -1, -1, 0))
    return _seal(out)
