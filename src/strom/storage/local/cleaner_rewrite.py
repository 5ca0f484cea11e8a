"""Writing one cleaned segment: the LogCleaner's per-record rules and the `.cleaned` file.

A record of the cleaned range is kept unless (Kafka's Cleaner.shouldRetainRecord):

* its offset is at or past the end of the offset map: kept, whatever it is;
* it is in a data batch of an aborted transaction: removed (Kafka discards such batches);
* it has no key: removed (a compacted topic cannot hold keyless records);
* the map has a later offset for its key: removed (superseded);
* it is a tombstone (null value) in a batch whose delete horizon has passed: removed.

A producer's last data batch (per the producer state) that loses all its records is kept as a
header-only batch with its producer id, epoch and sequences (Kafka's RETAIN_EMPTY), so that a
rebuild of the producer state from the log still finds the producer's last sequence.

A batch is copied byte for byte when nothing changes; re-encoded (record_rewrite) when some
records go or when it keeps tombstones and has no delete horizon yet (it then gets
now + delete.retention.ms, KIP-534). A run of batches that lost all their records becomes one
header-only empty batch spanning their offsets, so batches stay contiguous in offsets, as the
rest of the local engine (recovery, reads) requires. Control batches are kept as they are,
except a COMMIT/ABORT marker whose transaction has no data batch left (cleaner_txn): it gets a
delete horizon, and a later pass past the horizon removes it (it joins a run of emptied
batches).

Records are streamed, never listed: a first walk over a batch's records decides (how many are
kept, whether a kept one is a tombstone), and only a batch that changes is walked again, its
kept records going one by one into rebuild_batch, which compresses as it goes. A batch that
cannot be read to its end is kept as it is. So the rewrite holds the batch read, one record,
the rebuilt batch's compressed output and a small window, whatever the number of records.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from strom.protocol.batch_header import (
    _HEADER,
    BATCH_HEADER_SIZE,
    CONTROL_MASK,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    read_batch_header,
)
from strom.protocol.record_builder import MAGIC, reseal
from strom.protocol.record_rewrite import delete_horizon_ms, empty_batch, rebuild_batch
from strom.protocol.records import Record, RecordsError, iter_records
from strom.storage.local.batch_scan import MAX_RELATIVE_OFFSET
from strom.storage.local.cleaner_map import (
    AbortedIndex,
    CleaningAborted,
    OffsetMap,
    Source,
    read_batches,
)
from strom.storage.local.cleaner_txn import TxnMarkers
from strom.storage.local.log_segment import LogSegment

log = logging.getLogger(__name__)

_LONG_MAX: Final = 2**63 - 1  # delete.retention.ms may be Long.MAX_VALUE


@dataclass(frozen=True, slots=True)
class RetentionRules:
    omap: OffsetMap
    map_end: int
    now_ms: int
    delete_retention_ms: int
    max_decompressed_bytes: int
    aborted: AbortedIndex = field(default_factory=AbortedIndex)
    last_data_offsets: dict[int, int] = field(default_factory=dict)  # producer -> offset
    txns: TxnMarkers = field(default_factory=TxnMarkers)  # default: markers are kept


@dataclass(slots=True)
class CleanedSegment:
    segment: LogSegment  # in memory only: size and indexes of the `.cleaned` file, no fd
    changed: bool  # False if the file is a byte-for-byte copy of a single source
    pending_horizon_ms: int | None  # the earliest delete horizon of tombstones/markers kept


def _retain(offset: int, r: Record, rules: RetentionRules, horizon_passed: bool) -> bool:
    if offset >= rules.map_end:
        return True
    if r.key is None or rules.omap.get(r.key) > offset:
        return False
    return r.value is not None or not horizon_passed


def retained_empty_batch(h: BatchHeader) -> bytes:
    """The header-only batch that keeps a producer's last batch (Kafka's writeEmptyHeader):
    same offsets, producer id, epoch, base sequence and flags, no records, uncompressed."""
    attributes = h.attributes & (TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK)
    out = bytearray(_HEADER.pack(
        h.base_offset, BATCH_HEADER_SIZE - LOG_OVERHEAD, h.partition_leader_epoch, MAGIC, 0,
        attributes, h.last_offset_delta, h.max_timestamp, h.max_timestamp, h.producer_id,
        h.producer_epoch, h.base_sequence, 0))
    reseal(out)
    return bytes(out)


def _emptied(h: BatchHeader, data: bytes, rules: RetentionRules) -> bytes | None:
    """What a batch that lost all its records becomes: kept as a header if it is its
    producer's last batch, else nothing (it joins a run of emptied batches)."""
    if h.producer_id >= 0 and rules.last_data_offsets.get(h.producer_id) == h.last_offset:
        return data if h.records_count == 0 else retained_empty_batch(h)
    return None


def filter_batch(h: BatchHeader, data: bytes,
                 rules: RetentionRules) -> tuple[bytes | bytearray | None, int | None]:
    """(the batch to write: `data` itself if unchanged, a rebuilt batch, or None if nothing is
    left; the delete horizon of the tombstones or the marker it keeps, None if none). Batches
    must come in log order from the log start (rules.txns follows the transactions)."""
    if h.is_control:
        return _filter_marker(h, data, rules)
    kept, horizon = _filter_data(h, data, rules)
    if kept is not None:
        rules.txns.data_kept(h)
    return kept, horizon


def _filter_marker(h: BatchHeader, data: bytes,
                   rules: RetentionRules) -> tuple[bytes | bytearray | None, int | None]:
    """A control batch is kept as it is unless it is a marker whose transaction has no data
    left (cleaner_txn): then it gets a delete horizon, and once that has passed it goes."""
    if not rules.txns.removable(h, data):
        return data, None
    horizon = delete_horizon_ms(h)
    if horizon is None:
        horizon = min(rules.now_ms + rules.delete_retention_ms, _LONG_MAX)
        try:
            records = iter_records(data, max_decompressed_bytes=rules.max_decompressed_bytes)
            return rebuild_batch(h, records, horizon_ms=horizon), horizon
        except (RecordsError, ValueError):  # unreadable, or no record after all
            return data, None
    if rules.now_ms < horizon:
        return data, horizon
    if h.base_offset < rules.txns.drop_below:
        return None, None
    return data, None  # older snapshots might need it: a later pass may remove it


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the rules make of a data batch's records, found by a first walk over them."""

    kept: int
    removed: int
    tombstones: bool  # whether a kept record is a tombstone


def _kept_records(h: BatchHeader, data: bytes, rules: RetentionRules,
                  horizon_passed: bool) -> Iterator[Record]:
    base = h.base_offset
    for r in iter_records(data, max_decompressed_bytes=rules.max_decompressed_bytes):
        if _retain(base + r.offset_delta, r, rules, horizon_passed):
            yield r


def _plan(h: BatchHeader, data: bytes, rules: RetentionRules,
          horizon_passed: bool) -> _Plan | None:
    """The batch's plan, None (logged) if its records cannot be read."""
    kept = tombstones = 0
    try:
        for r in _kept_records(h, data, rules, horizon_passed):
            kept += 1
            tombstones += r.value is None
    except RecordsError as exc:
        log.warning("the log cleaner keeps the unreadable batch at offset %d as it is: %s",
                    h.base_offset, exc)
        return None
    return _Plan(kept, max(h.records_count, 0) - kept, tombstones > 0)


def _filter_data(h: BatchHeader, data: bytes,
                 rules: RetentionRules) -> tuple[bytes | bytearray | None, int | None]:
    if h.base_offset < rules.map_end and rules.aborted.aborted(h):
        return _emptied(h, data, rules), None
    horizon = delete_horizon_ms(h)
    passed = horizon is not None and rules.now_ms >= horizon
    plan = _plan(h, data, rules, passed)
    if plan is None:
        return data, None
    if not plan.kept:
        return _emptied(h, data, rules), None
    if not plan.tombstones:
        if not plan.removed:
            return data, None
        return rebuild_batch(h, _kept_records(h, data, rules, passed), horizon_ms=horizon), None
    if horizon is None:
        horizon = min(rules.now_ms + rules.delete_retention_ms, _LONG_MAX)
    elif not plan.removed:
        return data, horizon
    return rebuild_batch(h, _kept_records(h, data, rules, passed), horizon_ms=horizon), horizon


class _Writer:
    """Appends batches to the `.cleaned` file and tracks them in the output LogSegment,
    turning each run of emptied batches into one empty batch."""

    def __init__(self, file: os.PathLike[str], seg: LogSegment, index_interval: int) -> None:
        self.out = open(file, "wb")  # noqa: SIM115 (closed by close())
        self.seg = seg
        self.interval = index_interval
        self.run: tuple[int, int, int, int] | None = None  # base, last, max ts, leader epoch

    def write(self, data: bytes | bytearray) -> None:
        self._end_run()
        h = read_batch_header(data)
        if self.seg.size + h.size > MAX_RELATIVE_OFFSET:
            raise RuntimeError("the cleaned segment would not fit int32 positions")
        self.out.write(data)
        self.seg.track_header(self.seg.size, h, self.interval)
        self.seg.size += h.size

    def emptied(self, h: BatchHeader) -> None:
        if self.run is None:
            self.run = (h.base_offset, h.last_offset, h.max_timestamp, h.partition_leader_epoch)
        else:
            base, _, max_ts, epoch = self.run
            self.run = (base, h.last_offset, max(max_ts, h.max_timestamp), epoch)

    def _end_run(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            self.write(empty_batch(*run))

    def finish(self, mtime_ns: int) -> None:
        self._end_run()
        self.out.flush()
        os.fsync(self.out.fileno())
        os.utime(self.out.fileno(), ns=(mtime_ns, mtime_ns))  # retention reads it if no ts
        self.out.close()

    def close(self) -> None:
        self.out.close()


def write_cleaned(path: Path, seg: LogSegment, sources: Sequence[Source], rules: RetentionRules,
                  index_interval: int, should_stop: Callable[[], bool]) -> CleanedSegment:
    """Writes the cleaned batches of `sources` (consecutive segments) to `path` and fsyncs it;
    `seg` is the empty in-memory segment that describes the output."""
    writer = _Writer(path, seg, index_interval)
    changed = len(sources) > 1
    pending: int | None = None
    try:
        for source in sources:
            for h, data in read_batches(source):
                if should_stop():
                    raise CleaningAborted
                kept, horizon = filter_batch(h, data, rules)
                if kept is None:
                    writer.emptied(h)
                else:
                    writer.write(kept)
                changed |= kept is not data
                if horizon is not None:
                    pending = horizon if pending is None else min(pending, horizon)
        writer.finish(max(os.fstat(s.fd).st_mtime_ns for s in sources))
    finally:
        writer.close()
    seg.on_become_inactive()
    return CleanedSegment(seg, changed, pending)


def group_segments(spans: Sequence[tuple[int, int, int]], max_bytes: int) -> list[range]:
    """Kafka's groupSegmentsBySize: consecutive segments (base offset, end offset, size) merged
    while their total size stays within `max_bytes` (segment.bytes) and their offsets within
    an int32 of the first base; returns index ranges into `spans`."""
    groups: list[range] = []
    i = 0
    while i < len(spans):
        j, size = i + 1, spans[i][2]
        while (j < len(spans) and size + spans[j][2] <= max_bytes
               and spans[j][1] - 1 - spans[i][0] <= MAX_RELATIVE_OFFSET):
            size += spans[j][2]
            j += 1
        groups.append(range(i, j))
        i = j
    return groups
