"""Rewriting a v2 record batch with a subset of its records, as Kafka's log cleaner does.

Kafka's cleaner (MemoryRecords.filterTo, buildRetainedRecordsInto) keeps a cleaned batch's
base offset and last offset delta, so every kept record keeps its offset delta (its offset
does not change) and the batch still spans its original offsets; the record count becomes the
number of kept records. Producer id, epoch and base sequence, the partition leader epoch, the
codec, the timestamp type and the transactional and control flags are kept; record timestamps
(base timestamp + delta) and headers are kept exactly. A snappy batch is rewritten with
xerial framing, the one that can be written piece by piece (compress_stream), whichever
framing it had.

KIP-534: a batch that keeps tombstones carries a *delete horizon*: attribute bit 0x40 set and
the base timestamp field holding the time after which its tombstones may be removed (record
timestamp deltas are then relative to it). Without a horizon the base timestamp is the first
kept record's timestamp, as a producer would write it.

`empty_batch` writes the header-only batch (record count 0) that stands for offsets whose
records were all removed (Kafka writes one to keep a producer's last sequence).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from strom.protocol.batch_header import (
    _HEADER,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
)
from strom.protocol.compress_stream import CompressingWriter
from strom.protocol.record_builder import MAGIC, encode_record, reseal
from strom.protocol.record_walk import Record

DELETE_HORIZON_MASK: Final = 0x40
NO_TIMESTAMP: Final = -1


def delete_horizon_ms(header: BatchHeader) -> int | None:
    """The batch's delete horizon (KIP-534), None if it has none."""
    return header.base_timestamp if header.attributes & DELETE_HORIZON_MASK else None


def _seal(out: bytearray) -> bytes:
    reseal(out)
    return bytes(out)


def rebuild_batch(header: BatchHeader, records: Iterable[Record], *,
                  horizon_ms: int | None) -> bytearray:
    """The batch described by `header` with only `records`, a non-empty ordered subset of its
    records as parsed, and the delete horizon `horizon_ms` (None: none).

    `records` is consumed lazily: each record is encoded into a small window that is
    compressed as it fills (compress_stream), so the rebuild holds the compressed output and
    one window, never a list of records nor the whole uncompressed payload. The header, whose
    base timestamp (without a horizon: the first kept record's), max timestamp, record count,
    size and CRC are known only then, is written last into the 61 bytes reserved for it.
    """
    out = bytearray(BATCH_HEADER_SIZE)
    writer = CompressingWriter(header.compression, out)
    pending = writer.pending
    base_ts = header.base_timestamp
    new_base_ts = horizon_ms
    max_ts = NO_TIMESTAMP
    count = 0
    for r in records:
        ts = base_ts + r.timestamp_delta
        if new_base_ts is None:
            new_base_ts = ts
        max_ts = ts if count == 0 or ts > max_ts else max_ts
        encode_record(pending, r.offset_delta, ts - new_base_ts, r.key, r.value, r.headers)
        count += 1
        writer.spill()
    if count == 0 or new_base_ts is None:
        raise ValueError("a rebuilt batch needs at least one record")
    writer.finish()
    attributes = header.attributes & ~DELETE_HORIZON_MASK
    if horizon_ms is not None:
        attributes |= DELETE_HORIZON_MASK
    if header.is_log_append_time:
        max_ts = header.max_timestamp
    _HEADER.pack_into(
        out, 0, header.base_offset, len(out) - LOG_OVERHEAD, header.partition_leader_epoch,
        MAGIC, 0, attributes, header.last_offset_delta, new_base_ts, max_ts,
        header.producer_id, header.producer_epoch, header.base_sequence, count)
    reseal(out)
    return out


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
