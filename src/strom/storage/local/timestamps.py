"""Finding the first record with a timestamp >= a target in a segment (ListOffsets).

Batches are found through the time and offset indexes and a scan of batch headers: the first
batch whose max timestamp >= target holds the answer. Inside it:

* uncompressed CreateTime batch: the records are parsed and the first record with
  timestamp >= target (and offset >= log start offset) is returned, exactly like Kafka;
* LogAppendTime batch: every record has the batch's max timestamp: its first live record;
* compressed batch (not decompressed here): the first record if its timestamp (the batch's
  base timestamp) qualifies, else (max(base offset, log start), max timestamp), i.e. batch
  granularity. A batch with a delete horizon (compaction, KIP-534) holds the horizon in its
  base timestamp field, so only its max timestamp is used.
"""

from __future__ import annotations

from typing import Any, Final

from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
)
from strom.protocol.record_rewrite import DELETE_HORIZON_MASK
from strom.storage.api import CorruptLog
from strom.storage.local.log_segment import (
    H_ATTRIBUTES,
    H_BASE_OFFSET,
    H_BASE_TIMESTAMP,
    H_LAST_DELTA,
    H_LENGTH,
    H_MAX_TIMESTAMP,
    LogSegment,
)

_RECORDS_COUNT_OFFSET: Final = 57


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A zig-zag varint (or varlong) at `pos`, and the position after it."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise CorruptLog("a varint runs past its record")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def first_record_at_or_after(batch: bytes, target: int, min_offset: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record of an uncompressed batch with timestamp >=
    target and offset >= min_offset. Every length is checked against the bytes left."""
    base_offset = int.from_bytes(batch[0:8], "big", signed=True)
    base_ts = int.from_bytes(batch[27:35], "big", signed=True)
    count = int.from_bytes(batch[_RECORDS_COUNT_OFFSET:BATCH_HEADER_SIZE], "big", signed=True)
    pos, end = BATCH_HEADER_SIZE, len(batch)
    for _ in range(max(count, 0)):
        if pos >= end:
            break
        length, body = _varint(batch, pos, end)
        if length < 0 or body + length > end:
            raise CorruptLog("a record's length overruns its batch")
        record_end = body + length
        ts_delta, p = _varint(batch, body + 1, record_end)  # after the attributes byte
        offset_delta, _ = _varint(batch, p, record_end)
        offset, ts = base_offset + offset_delta, base_ts + ts_delta
        if ts >= target and offset >= min_offset:
            return offset, ts
        pos = record_end
    return None


def batch_first_at_or_after(h: BatchHeader, batch: bytes, target: int,
                            min_offset: int) -> tuple[int, int] | None:
    """As `_in_batch` answers, for a whole batch in memory (the memory and PostgreSQL
    engines)."""
    if h.attributes & TIMESTAMP_TYPE_MASK:
        return max(h.base_offset, min_offset), h.max_timestamp
    if h.attributes & COMPRESSION_MASK:
        if (h.base_offset >= min_offset and h.base_timestamp >= target
                and not h.attributes & DELETE_HORIZON_MASK):
            return h.base_offset, h.base_timestamp
        return max(h.base_offset, min_offset), h.max_timestamp
    return first_record_at_or_after(batch, target, min_offset)


def _in_batch(seg: LogSegment, pos: int, h: tuple[Any, ...], target: int,
              min_offset: int) -> tuple[int, int] | None:
    base, attrs, max_ts = h[H_BASE_OFFSET], h[H_ATTRIBUTES], h[H_MAX_TIMESTAMP]
    if attrs & TIMESTAMP_TYPE_MASK:
        return max(base, min_offset), max_ts
    if attrs & COMPRESSION_MASK:
        if (base >= min_offset and h[H_BASE_TIMESTAMP] >= target
                and not attrs & DELETE_HORIZON_MASK):
            return base, h[H_BASE_TIMESTAMP]
        return max(base, min_offset), max_ts
    batch = seg.read_batch(pos, LOG_OVERHEAD + h[H_LENGTH])
    return first_record_at_or_after(batch, target, min_offset)


def search_segment(seg: LogSegment, target: int, min_offset: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record in a loaded segment with timestamp >= target
    and offset >= min_offset (the log start offset), None if there is none."""
    before = seg.time_index.offset_before(target)
    start = seg.base_offset if before is None else seg.base_offset + before
    start = max(start, min_offset)
    for pos, h in seg.iter_headers(seg.offset_index.lookup(start - seg.base_offset)):
        if h[H_MAX_TIMESTAMP] < target or h[H_BASE_OFFSET] + h[H_LAST_DELTA] < min_offset:
            continue
        found = _in_batch(seg, pos, h, target, min_offset)
        if found is not None:
            return found
    return None
