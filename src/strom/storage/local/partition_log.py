"""LocalPartitionLog: one partition's segments, implementing the PartitionLog protocol.

Concurrency model (one event loop): every change to the in-memory state happens in a
synchronous stretch without awaits, so appends are atomic and in order and a read sees a
consistent snapshot. Blocking work that may take long (fsync, loading an inactive segment's
indexes, unlinking) runs in threads; code after such an await re-checks what it relies on.
Deleting and replacing segments, and closing, also hold the maintenance lock.

The class is assembled from mixins over one state, each part in its own module and all
following the model above:

- partition_state.py: the fields, the high watermark and last stable offset, the checks
  before an operation, loading inactive segments' indexes in a thread;
- this module: the public offsets and sizes, append (and transaction markers), roll, flush,
  producer expiry, close;
- partition_reads.py: read, aborted transactions, offset_for_timestamp, max_timestamp;
- partition_retention.py: delete_records_before, run_retention;
- partition_compaction.py: the LogCleaner's hooks (segments, load_segments,
  replace_segments).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence

from strom.protocol.batch_header import read_batch_header
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    CorruptLog,
    LogDirFailure,
    PartitionOffsets,
    Placed,
    ProduceOutcome,
    batch_control_type,
)
from strom.storage.local.batch_scan import MAX_RELATIVE_OFFSET
from strom.storage.local.flush import now_ms
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.partition_compaction import PartitionCompaction
from strom.storage.local.partition_reads import PartitionReads
from strom.storage.local.partition_retention import PartitionRetention
from strom.storage.local.partition_space import PartitionSpace
from strom.storage.local.partition_state import PartitionHooks
from strom.storage.local.producer_snapshots import write_snapshot
from strom.storage.producer_checks import append_checked_marker, checked_append
from strom.storage.producer_state import ProducerStateManager, VerificationGuard

__all__ = ["LocalPartitionLog", "PartitionHooks"]

log = logging.getLogger(__name__)


class LocalPartitionLog(PartitionReads, PartitionRetention, PartitionCompaction,
                        PartitionSpace):
    """A partition's log in `<data_dir>/<topic>-<partition>/`. The constructor is
    PartitionState's: (topic, partition, directory, config, loaded, hooks, producer_state,
    snapshot_offset)."""

    # -- PartitionLog properties ---------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._lso

    @property
    def log_end_offset(self) -> int:
        return self._leo

    async def offsets(self) -> PartitionOffsets:
        return PartitionOffsets(self._lso, self.high_watermark, self.last_stable_offset,
                                self._leo)

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def producer_state(self) -> ProducerStateManager:
        return self._producer_state

    @property
    def recovery_point(self) -> int:
        """Everything below this offset is fsynced."""
        return self._flusher.recovery_point

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # -- append and roll -----------------------------------------------------------------

    async def produce(self, batches: Sequence[AppendBatch],
                      verification: VerificationGuard | None = None,
                      placed: Placed | None = None) -> ProduceOutcome:
        await self._ensure_writable()  # first: the check and the append must not await
        return await checked_append(self, batches, verification, placed)

    async def append(self, batches: Sequence[AppendBatch],
                     placed: Placed | None = None) -> AppendResult:
        meter = self._hooks.meters.meter  # metrics on: the append is timed
        started = 0.0 if meter is None else time.perf_counter()
        await self._ensure_writable()
        if not batches:
            return AppendResult(self._leo, self._leo - 1, self._lso)
        kinds = _control_types(batches)
        total, records, max_ts = _measure(batches)
        seg = self._active
        if seg.size and self._should_roll(seg, total, records, max_ts):
            seg = self._roll()
        base = self._leo
        try:
            next_offset = seg.append(batches, base, self.config.index_interval_bytes)
        except OSError as exc:  # the file was cut back: nothing of the batches remains
            raise self._flusher.fail_write(f"{seg.log_path}: an append", exc) from exc
        self._flusher.write_succeeded()
        self._leo = next_offset
        for b, kind in zip(batches, kinds, strict=True):  # before any await: see append
            self._producer_state.apply_batch(read_batch_header(b.data), kind)
        self._size += total
        self.appended_records += records
        self.appended_bytes += total
        if placed is not None:
            placed()
        if next_offset - self._flusher.recovery_point >= self.config.flush_messages:
            await self._flusher.flush_to(next_offset)
        self._hooks.appended(self.topic, self.partition)
        if meter is not None:
            meter.appended(time.perf_counter() - started)
        return AppendResult(base, next_offset - 1, self._lso)

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        await self._ensure_writable()  # first: the epoch check and the append must not await
        return await append_checked_marker(self, producer_id, producer_epoch, commit,
                                           coordinator_epoch)

    def _should_roll(self, seg: LogSegment, size: int, records: int, max_ts: int) -> bool:
        """Kafka's shouldRoll: segment.bytes, a full index, int32 relative offsets, segment.ms
        (from the first batch's max timestamp, or the segment's creation when it has none)."""
        config = self.config
        if seg.size + size > config.segment_bytes or seg.is_index_full():
            return True
        if self._leo + records - 1 - seg.base_offset > MAX_RELATIVE_OFFSET:
            return True
        if seg.rolling_timestamp >= 0:
            waited = max_ts - seg.rolling_timestamp
        else:
            waited = now_ms() - seg.created_ms
        return waited > config.segment_ms

    def _roll(self) -> LogSegment:
        old = self._active
        try:
            new = LogSegment.create(self.directory, self._leo,
                                    self.config.segment_index_bytes, now_ms())
        except OSError as exc:  # the active segment stays as it was
            raise self._flusher.fail_write(
                f"{self.directory.name}: creating the segment at offset {self._leo}",
                exc) from exc
        old.on_become_inactive()
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._active = new
        self._flusher.rolled(old, new.base_offset, self._snapshot_writer(new.base_offset))
        log.debug("%s: rolled a new segment at offset %d", self.directory.name, new.base_offset)
        return new

    def _snapshot_writer(self, offset: int) -> Callable[[], None]:
        """Writes the producer state as of now (everything below `offset`) when called."""
        self._snapshot_offset = offset
        data = self._producer_state.snapshot()
        directory = self.directory
        return lambda: write_snapshot(directory, offset, data)

    def expire_producers(self, now_ms: int) -> int:
        """Forgets producers idle for producer.id.expiration.ms; returns how many."""
        if self._closed:
            return 0
        return self._producer_state.expire(now_ms)

    # -- flush ---------------------------------------------------------------------------

    async def flush(self) -> None:
        await self._flusher.flush_to(self._leo)

    async def wait_durable(self, offset: int) -> None:
        """Returns once everything below `offset` is as durable as an acknowledged append
        (with flush.messages=1, fsynced: joins the fsync in flight or starts one); raises
        LogDirFailure if the partition is offline. For answering a duplicate batch."""
        self._check_open()
        if self.config.flush_messages == 1:
            await self._flusher.flush_to(min(offset, self._leo))

    def is_flush_due(self, now_ms: int) -> bool:
        """Whether flush.ms has passed since the last flush and there is something to flush."""
        flusher = self._flusher
        return (not self._closed and flusher.failure is None
                and not flusher.waiting_for_space and self._leo > flusher.recovery_point
                and now_ms - flusher.last_flush_ms >= self.config.flush_ms)

    # -- close ---------------------------------------------------------------------------

    async def close(self, deleting: bool) -> None:
        """Flushes and saves the active segment's indexes, then closes the fds; when the
        partition is being deleted, skips the flush and retires the fds instead. An offline
        partition is not written to: recovery validates it from its recovery point."""
        if self._closed:
            return
        self._closed = True
        async with self._maintenance:
            with contextlib.suppress(LogDirFailure):  # offline: logged when it happened
                await self._flusher.wait_idle()
            if not deleting and not self.offline:
                await self._persist_at_close()
            for seg in self._segments:
                fd = seg.detach_fd()
                if fd < 0:
                    continue
                if deleting:
                    self._hooks.retire_fd(fd)
                else:
                    os.close(fd)

    async def _persist_at_close(self) -> None:
        """Saves what a roll could not for lack of space, then the active segment; if either
        fails, the recovery point stays and the engine marks no clean shutdown."""
        try:
            await self._flusher.save_unsaved(lambda seg: seg in self._segments)
        except LogDirFailure:
            return  # logged when the episode began (or as the failure)
        active = self._active
        active.on_become_inactive()
        if active.size and (active.index_dirty or self._flusher.recovery_point < self._leo):
            try:
                await asyncio.to_thread(active.sync_log)
            except OSError as exc:
                self._flusher.fail(f"{active.log_path}: an fsync at close", exc)
                return
            try:
                await asyncio.to_thread(active.save_indexes)
            except OSError as exc:
                self._flusher.fail_write(f"{active.log_path}: saving indexes at close", exc)
                return
        self._flusher.recovery_point = self._leo
        writer = (self._snapshot_writer(self._leo)
                  if self._leo not in (0, self._snapshot_offset) else None)
        if writer is not None:
            try:
                await asyncio.to_thread(writer)
            except OSError:
                log.warning("%s: could not save the producer state snapshot; it will be "
                            "rebuilt from the log", self.directory.name, exc_info=True)


def _measure(batches: Sequence[AppendBatch]) -> tuple[int, int, int]:
    """(bytes, records, max timestamp) of an append; raises CorruptLog if it is too large."""
    total = 0
    records = 0
    max_ts = -1
    for b in batches:
        total += len(b.data)
        records += b.record_count
        if b.max_timestamp > max_ts:
            max_ts = b.max_timestamp
    if total > MAX_RELATIVE_OFFSET or records - 1 > MAX_RELATIVE_OFFSET or records < 1:
        raise CorruptLog(f"an append of {total} bytes and {records} records is too large")
    return total, records, max_ts


def _control_types(batches: Sequence[AppendBatch]) -> list[int | None]:
    """Each batch's marker type (None for data batches), read before anything is written: a
    malformed control batch is refused whole."""
    out = []
    for b in batches:
        try:
            out.append(batch_control_type(b.data))
        except ValueError as exc:
            raise CorruptLog(f"an unreadable control batch: {exc}") from None
    return out
