"""Broker-side validation of a produce partition's records, after Kafka's LogValidator (v2).

The checks run in Kafka's order, each with Kafka's error code:

1. Framing (KafkaApis: ProduceRequest.validateRecords and the batch iterator): a size field
   below 14 or a magic outside 0..2 is CORRUPT_MESSAGE; no complete batch is INVALID_RECORD;
   magic 0/1 is INVALID_RECORD (produce v3+ takes magic 2 only); a second complete batch is
   INVALID_RECORD; zstd in produce v < 7 is UNSUPPORTED_COMPRESSION_TYPE. An incomplete tail
   after the one batch is dropped, as Kafka trims it.
2. UnifiedLog.analyzeAndValidateRecords: base offset != 0 is INVALID_RECORD; a batch larger
   than max.message.bytes is MESSAGE_TOO_LARGE; a batch under 61 bytes or with a bad CRC-32C
   is CORRUPT_MESSAGE.
3. LogValidator.validateBatch: last offset delta + 1 <= 0, a count <= 0 or a count that is not
   last offset delta + 1, a control batch, or a producer id without a base sequence is
   INVALID_RECORD. Codec ids 5..7 are UNSUPPORTED_COMPRESSION_TYPE (Kafka: an unexpected
   IllegalArgumentException, so UNKNOWN_SERVER_ERROR).
4. Records: malformed records, a wrong record count, leftover bytes, and (stricter than Kafka,
   which rewrites them) offset deltas other than 0..n-1 are INVALID_RECORD. Then, per record
   and collected into ``record_errors``: a null key on a compacted topic is INVALID_RECORD and
   a CreateTime timestamp outside the window is INVALID_TIMESTAMP, which wins if present.
   Compressed batches are decompressed up to ``max_decompressed_bytes``: more is
   MESSAGE_TOO_LARGE (so a Java producer splits the batch); undecodable data is INVALID_RECORD,
   and both win over record errors. The records are walked as they decompress, in memory
   bounded by record_stream's window whatever the decompressed size (record_stream).
5. Timestamps are rewritten in the copy like DefaultRecordBatch.setMaxTimestamp: LogAppendTime
   sets the timestamp-type bit and max_timestamp = now; CreateTime sets max_timestamp to the
   records' true maximum (and clears a client-set LogAppendTime bit). The CRC is recomputed
   only when something changed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from strom.protocol.batch_header import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MAX_TIMESTAMP_OFFSET,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    crc_matches,
    read_batch_header,
)
from strom.protocol.compression import CODEC_NAMES, NONE, ZSTD
from strom.protocol.record_builder import RecordInput, build_batch, reseal
from strom.protocol.record_errors import (
    RecordError,
    RecordsError,
    RecordsErrorCode,
    corrupt,
    invalid,
)
from strom.protocol.record_stream import (
    Chunks,
    parse_stream,
    record_chunks,
    record_summaries,
    walk_stream,
)
from strom.protocol.record_walk import Record, parse_records, walk_records

__all__ = [
    "Record",
    "RecordInput",
    "RecordsError",
    "RecordsErrorCode",
    "ValidatedBatch",
    "build_batch",
    "iter_records",
    "validate_produce_records",
]

NO_TIMESTAMP: Final = -1
LONG_MAX: Final = 2**63 - 1
DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 64 * 1024 * 1024
_RECORD_OVERHEAD_V0: Final = 14  # the smallest size field the batch iterator accepts
_HEADER_SIZE_UP_TO_MAGIC: Final = MAGIC_OFFSET + 1
# Kept when Kafka recomputes the attributes: codec, transactional, control, delete horizon.
_KEPT_ATTRIBUTES: Final = 0x77
_INT32: Final = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    data: bytearray  # the whole batch, copied out of the request, timestamps maybe rewritten
    header: BatchHeader  # after any rewrite
    record_count: int  # == last_offset_delta + 1


@dataclass(frozen=True, slots=True)
class _Policy:
    log_append: bool
    lo: int | None  # earliest accepted CreateTime timestamp; None: unbounded
    hi: int | None
    require_keys: bool

    def timestamp_error(self, header: BatchHeader, ts: int, index: int) -> str | None:
        if not self.log_append and ts != NO_TIMESTAMP:
            if (self.lo is not None and ts < self.lo) or (self.hi is not None and ts > self.hi):
                return (f"Timestamp {ts} of message with offset {index} is out of range. The "
                        f"timestamp should be within [{self.lo}, {self.hi}]")
        elif header.is_log_append_time:
            return "Producer should not set timestamp type to LogAppendTime."
        return None


def validate_produce_records(
    records: bytes | bytearray | memoryview, *, max_message_bytes: int, timestamp_type: str,
    now_ms: int, timestamp_before_max_ms: int, timestamp_after_max_ms: int,
    max_decompressed_bytes: int, require_keys: bool = False,
    deep_validate_compressed: bool = True, produce_version: int | None = None,
) -> list[ValidatedBatch]:
    """Validates one produce partition's `records`; raises RecordsError as Kafka would.

    Returns the single v2 batch (produce v3+ carries exactly one), copied, with its timestamps
    rewritten for the topic's `timestamp_type`. A compressed batch is decompressed (bounded by
    `max_decompressed_bytes`) when `deep_validate_compressed` or `require_keys`; otherwise only
    its header is checked and its max_timestamp is trusted.
    """
    if timestamp_type not in ("CreateTime", "LogAppendTime"):
        raise ValueError(f"unknown timestamp type {timestamp_type!r}")
    view = memoryview(records)
    size = _single_batch_size(view)
    header = _check_frame(view, size, max_message_bytes, produce_version)
    _check_fields(header)
    data = bytearray(view[:size])
    policy = _Policy(
        log_append=timestamp_type == "LogAppendTime",
        lo=None if timestamp_before_max_ms >= LONG_MAX else now_ms - timestamp_before_max_ms,
        hi=None if timestamp_after_max_ms >= LONG_MAX else now_ms + timestamp_after_max_ms,
        require_keys=require_keys)
    if header.compression == 0 or deep_validate_compressed or require_keys:
        max_ts = _validate_records(data, header, policy, max_decompressed_bytes)
    else:
        max_ts = _validate_shallow(header, policy)
    header = _set_max_timestamp(data, header, policy.log_append,
                                now_ms if policy.log_append else max_ts)
    return [ValidatedBatch(data, header, header.last_offset_delta + 1)]


def iter_records(batch: ValidatedBatch | bytes | bytearray | memoryview, *,
                 max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
                 ) -> Iterator[Record]:
    """The records of one v2 batch (decompressed if need be); raises RecordsError if malformed.

    The CRC is not checked here: validate first, or check it with batch_header.crc_matches.
    """
    data = batch.data if isinstance(batch, ValidatedBatch) else memoryview(batch)
    if len(data) < BATCH_HEADER_SIZE:
        raise corrupt(f"Record batch is shorter than the {BATCH_HEADER_SIZE}-byte header")
    header = read_batch_header(data)
    if header.magic != 2:
        raise corrupt(f"Record batch magic {header.magic} is not 2")
    if not BATCH_HEADER_SIZE <= header.size <= len(data):
        raise corrupt(f"Record batch size {header.size} does not fit {len(data)} bytes")
    view = memoryview(data)[: header.size]
    count = max(header.records_count, 0)
    if header.compression == NONE:
        return parse_records(view, BATCH_HEADER_SIZE, count)
    chunks = record_chunks(view[BATCH_HEADER_SIZE:], header.compression, max_decompressed_bytes)
    return parse_stream(chunks, count)


def _next_batch_size(view: memoryview, pos: int) -> int | None:
    """Kafka's ByteBufferLogInputStream.nextBatchSize: None when no whole batch is left."""
    remaining = len(view) - pos
    if remaining < LOG_OVERHEAD:
        return None
    (length,) = _INT32.unpack_from(view, pos + 8)
    if length < _RECORD_OVERHEAD_V0:
        raise corrupt(f"Record size {length} is less than the minimum record overhead "
                      f"({_RECORD_OVERHEAD_V0})")
    if remaining < _HEADER_SIZE_UP_TO_MAGIC:
        return None
    magic = struct.unpack_from(">b", view, pos + MAGIC_OFFSET)[0]
    if not 0 <= magic <= 2:
        raise corrupt(f"Invalid magic found in record: {magic}")
    return length + LOG_OVERHEAD if remaining >= length + LOG_OVERHEAD else None


def _single_batch_size(view: memoryview) -> int:
    size = _next_batch_size(view, 0)
    if size is None:
        raise invalid("Produce requests with version 3 and above must have at least one record "
                      "batch per partition")
    if view[MAGIC_OFFSET] != 2:
        raise invalid("Produce requests with version 3 and above are only allowed to contain "
                      "record batches with magic version 2")
    if _next_batch_size(view, size) is not None:
        raise invalid("Produce requests with version 3 and above are only allowed to contain "
                      "exactly one record batch")
    return size


def _check_frame(view: memoryview, size: int, max_message_bytes: int,
                 produce_version: int | None) -> BatchHeader:
    base_offset = struct.unpack_from(">q", view, 0)[0]
    if base_offset != 0:
        raise invalid(f"The baseOffset of the record batch in the append should be 0, but it "
                      f"is {base_offset}")
    if size > max_message_bytes:
        raise RecordsError(RecordsErrorCode.MESSAGE_TOO_LARGE,
                           f"The record batch size in the append is {size} bytes which exceeds "
                           f"the maximum configured value of {max_message_bytes}.")
    if size < BATCH_HEADER_SIZE:
        raise corrupt(f"Record batch is corrupt (the size {size} is smaller than the minimum "
                      f"allowed overhead {BATCH_HEADER_SIZE})")
    header = read_batch_header(view)
    if not crc_matches(view, 0, header):
        raise corrupt(f"Record is corrupt (stored crc = {header.crc})")
    if header.compression not in CODEC_NAMES:
        raise RecordsError(RecordsErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                           f"Unknown compression type id: {header.compression}")
    if header.compression == ZSTD and produce_version is not None and produce_version < 7:
        raise RecordsError(RecordsErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                           f"Produce requests with version {produce_version} are not allowed "
                           "to use ZStandard compression")
    return header


def _check_fields(header: BatchHeader) -> None:
    """LogValidator.validateBatch for a client's v2 batch."""
    count_from_offsets = header.last_offset_delta + 1
    if count_from_offsets <= 0:
        raise invalid(f"Batch has an invalid offset range: [0, {header.last_offset_delta}]")
    if header.records_count <= 0:
        raise invalid(f"Invalid reported count for record batch: {header.records_count}")
    if header.records_count != count_from_offsets:
        raise invalid(f"Inconsistent batch offset range [0, {header.last_offset_delta}] and "
                      f"count of records {header.records_count}")
    if header.is_control:
        raise invalid("Clients are not allowed to write control records")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise invalid(f"Invalid sequence number {header.base_sequence} in record batch with "
                      f"producerId {header.producer_id}")


def _validate_records(data: bytearray, header: BatchHeader, policy: _Policy,
                      max_decompressed_bytes: int) -> int:
    """Walks the records; returns the batch's true max timestamp (CreateTime semantics).

    A compressed batch is walked as it decompresses (record_stream), in bounded memory.
    """
    count = header.records_count
    if header.compression == NONE:
        lo_delta, hi_delta, null_keys = walk_records(data, BATCH_HEADER_SIZE, count)
    else:
        lo_delta, hi_delta, null_keys = walk_stream(
            _chunks(data, header, max_decompressed_bytes), count)
    if header.is_log_append_time:
        max_ts = header.max_timestamp
        suspect = True
    else:
        min_ts, max_ts = header.base_timestamp + lo_delta, header.base_timestamp + hi_delta
        if min_ts < -LONG_MAX - 1 or max_ts > LONG_MAX:
            # Java would wrap the long around; no producer writes such timestamps.
            raise invalid("Record timestamp (base timestamp + delta) overflows a long")
        suspect = not policy.log_append and (
            (policy.lo is not None and min_ts < policy.lo)
            or (policy.hi is not None and max_ts > policy.hi))
    if suspect or (policy.require_keys and null_keys):
        _raise_record_errors(_chunks(data, header, max_decompressed_bytes), header, policy)
    return max(NO_TIMESTAMP, max_ts)


def _chunks(data: bytearray, header: BatchHeader, max_decompressed_bytes: int) -> Chunks:
    """The batch's records section, decompressed chunk by chunk if need be."""
    section = memoryview(data)[BATCH_HEADER_SIZE:]
    if header.compression == NONE:
        return iter((section,))
    return record_chunks(section, header.compression, max_decompressed_bytes)


def _raise_record_errors(chunks: Chunks, header: BatchHeader, policy: _Policy) -> None:
    """The slow pass, run only when a record may be invalid: collects Kafka's RecordErrors."""
    errors: list[RecordError] = []
    any_timestamp_error = False
    for i, (timestamp_delta, null_key) in enumerate(record_summaries(chunks,
                                                                       header.records_count)):
        if policy.require_keys and null_key:
            errors.append((i, "Compacted topic cannot accept message without key"))
            continue
        ts = (header.max_timestamp if header.is_log_append_time
              else header.base_timestamp + timestamp_delta)
        message = policy.timestamp_error(header, ts, i)
        if message is not None:
            errors.append((i, message))
            any_timestamp_error = True
    if any_timestamp_error:
        raise RecordsError(RecordsErrorCode.INVALID_TIMESTAMP,
                           "One or more records have been rejected due to invalid timestamp",
                           tuple(errors))
    if errors:
        raise RecordsError(RecordsErrorCode.INVALID_RECORD,
                           f"One or more records have been rejected due to {len(errors)} record "
                           f"errors in total, and only showing the first three errors at most: "
                           f"{errors[:3]}", tuple(errors))


def _validate_shallow(header: BatchHeader, policy: _Policy) -> int:
    """A compressed batch checked by its header only: the window applies to base_timestamp
    and max_timestamp, and max_timestamp is trusted."""
    candidates = ((header.max_timestamp,) if header.is_log_append_time
                  else (header.base_timestamp, header.max_timestamp))
    for ts in candidates:
        message = policy.timestamp_error(header, ts, 0)
        if message is not None:
            raise RecordsError(RecordsErrorCode.INVALID_TIMESTAMP, message)
    return header.max_timestamp


def _set_max_timestamp(data: bytearray, header: BatchHeader, log_append: bool,
                       max_ts: int) -> BatchHeader:
    """DefaultRecordBatch.setMaxTimestamp on the copy: a no-op when nothing changes."""
    if header.is_log_append_time == log_append and header.max_timestamp == max_ts:
        return header
    attributes = (header.attributes & _KEPT_ATTRIBUTES) | (TIMESTAMP_TYPE_MASK if log_append
                                                           else 0)
    struct.pack_into(">h", data, ATTRIBUTES_OFFSET, attributes)
    struct.pack_into(">q", data, MAX_TIMESTAMP_OFFSET, max_ts)
    reseal(data)
    return read_batch_header(data)
