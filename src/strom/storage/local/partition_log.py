"""LocalPartitionLog: one partition's segments, implementing the PartitionLog protocol.

Concurrency model (one event loop): every change to the in-memory state happens in a
synchronous stretch without awaits, so appends are atomic and in order and a read sees a
consistent snapshot. Blocking work that may take long (fsync, loading an inactive segment's
indexes, unlinking) runs in threads; code after such an await re-checks what it relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from strom.config.topic import LogConfig
from strom.protocol.batch_header import read_batch_header
from strom.protocol.control_batch import build_control_batch
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    CorruptLog,
    FileRegion,
    InvalidProducerEpoch,
    LogDirFailure,
    OffsetOutOfRange,
    ProducerStateTracker,
    ReadResult,
    UnknownTopic,
    batch_control_type,
)
from strom.storage.local import retention
from strom.storage.local.batch_scan import MAX_RELATIVE_OFFSET
from strom.storage.local.flush import LogFlusher, now_ms
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.producer_snapshots import write_snapshot
from strom.storage.local.recovery import LoadedLog
from strom.storage.local.timestamps import search_segment

log = logging.getLogger(__name__)

_NO_CHUNKS: tuple[bytes | FileRegion, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionHooks:
    """What a partition needs from its engine."""

    retire_fd: Callable[[int], None]  # closes a deleted segment's fd after a grace period
    log_start_changed: Callable[[], Awaitable[None]]  # durably checkpoints log start offsets


class LocalPartitionLog:
    """A partition's log in `<data_dir>/<topic>-<partition>/`."""

    def __init__(self, topic: str, partition: int, directory: Path, config: LogConfig,
                 loaded: LoadedLog, hooks: PartitionHooks,
                 producer_state: ProducerStateTracker | None = None,
                 snapshot_offset: int = -1) -> None:
        self.topic = topic
        self.partition = partition
        self.directory = directory
        self.config = config
        self._hooks = hooks
        self._segments = loaded.segments
        self._bases = [seg.base_offset for seg in self._segments]
        self._active = self._segments[-1]
        self._lso = loaded.log_start_offset
        self._leo = loaded.log_end_offset
        self._size = sum(seg.size for seg in self._segments)
        self._flusher = LogFlusher(self._leo, lambda: (self._leo, self._active.fd))
        self._maintenance = asyncio.Lock()
        self._closed = False
        self._producer_state = producer_state
        self._snapshot_offset = snapshot_offset  # the newest producer state snapshot's
        self._prune_aborted()

    # -- PartitionLog properties ---------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._lso

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        """A single replica: everything appended is committed, except that with
        flush.messages=1 only what is fsynced is (Kafka advances it after the flush)."""
        if self.config.flush_messages == 1:
            return min(self._flusher.recovery_point, self._leo)
        return self._leo

    @property
    def last_stable_offset(self) -> int:
        """min(first unstable offset, high watermark), never below the log start offset."""
        hw = self.high_watermark
        state = self._producer_state
        first_unstable = None if state is None else state.first_unstable_offset()
        if first_unstable is None:
            return hw
        return min(max(first_unstable, self._lso), hw)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        if self._producer_state is None:
            return []
        return self._producer_state.aborted_transactions(fetch_offset, upper_bound)

    def _prune_aborted(self) -> None:
        if self._producer_state is not None:
            self._producer_state.prune_aborted(self._lso)

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def producer_state(self) -> ProducerStateTracker | None:
        return self._producer_state

    @property
    def recovery_point(self) -> int:
        """Everything below this offset is fsynced."""
        return self._flusher.recovery_point

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def offline(self) -> bool:
        """Whether an fsync or index write failed: appends and reads raise LogDirFailure."""
        return self._flusher.failure is not None

    def _check_open(self) -> None:
        if self._closed:
            raise UnknownTopic(f"{self.topic}-{self.partition} was deleted or closed")
        self._flusher.check()

    # -- append and roll -----------------------------------------------------------------

    async def append(self, batches: Sequence[AppendBatch]) -> AppendResult:
        self._check_open()
        if not batches:
            return AppendResult(self._leo, self._leo - 1, self._lso)
        total = 0
        records = 0
        max_ts = -1
        kinds = _control_types(batches)
        for b in batches:
            total += len(b.data)
            records += b.record_count
            if b.max_timestamp > max_ts:
                max_ts = b.max_timestamp
        if total > MAX_RELATIVE_OFFSET or records - 1 > MAX_RELATIVE_OFFSET or records < 1:
            raise CorruptLog(f"an append of {total} bytes and {records} records is too large")
        seg = self._active
        if seg.size and self._should_roll(seg, total, records, max_ts):
            seg = self._roll()
        base = self._leo
        try:
            next_offset = seg.append(batches, base, self.config.index_interval_bytes)
        except OSError as exc:
            raise self._flusher.fail(f"{seg.log_path}: an append", exc) from exc
        self._leo = next_offset
        if self._producer_state is not None:  # before any await: see PartitionLog.append
            for b, kind in zip(batches, kinds, strict=True):
                self._producer_state.apply_batch(read_batch_header(b.data), kind)
        self._size += total
        if next_offset - self._flusher.recovery_point >= self.config.flush_messages:
            await self._flusher.flush_to(next_offset)
        return AppendResult(base, next_offset - 1, self._lso)

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        self._check_open()
        state = self._producer_state
        if state is not None and state.check_marker(producer_id, producer_epoch) is not None:
            raise InvalidProducerEpoch(
                f"the transaction marker's epoch {producer_epoch} of producer {producer_id} is "
                f"older than the one {self.topic}-{self.partition} knows")
        ts = now_ms()
        data = build_control_batch(producer_id, producer_epoch, commit, ts, coordinator_epoch)
        return await self.append([AppendBatch(bytearray(data), 1, ts, ts)])

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
        old.on_become_inactive()
        new = LogSegment.create(self.directory, self._leo, self.config.segment_index_bytes,
                                now_ms())
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._active = new
        self._flusher.rolled(old, new.base_offset, self._snapshot_writer(new.base_offset))
        log.debug("%s: rolled a new segment at offset %d", self.directory.name, new.base_offset)
        return new

    def _snapshot_writer(self, offset: int) -> Callable[[], None] | None:
        """Writes the producer state as of now (everything below `offset`) when called."""
        if self._producer_state is None:
            return None
        self._snapshot_offset = offset
        data = self._producer_state.snapshot()
        directory = self.directory
        return lambda: write_snapshot(directory, offset, data)

    def expire_producers(self, now_ms: int) -> int:
        """Forgets producers idle for producer.id.expiration.ms; returns how many."""
        if self._producer_state is None or self._closed:
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
                and self._leo > flusher.recovery_point
                and now_ms - flusher.last_flush_ms >= self.config.flush_ms)

    # -- reads ---------------------------------------------------------------------------

    def _max_relative(self, i: int) -> int:
        """Upper bound of segment i's relative offsets: up to the next segment's base."""
        if i + 1 < len(self._segments):
            return self._segments[i + 1].base_offset - self._segments[i].base_offset
        return MAX_RELATIVE_OFFSET + 1

    async def _load(self, segments: Sequence[LogSegment]) -> None:
        """Loads inactive segments' indexes in a thread. A segment deleted meanwhile (its file
        may be gone) is skipped: callers re-check and retry (OffsetOutOfRange once the log
        start offset passed it); UnknownTopic if the partition was closed meanwhile."""
        jobs = [(seg, self._max_relative(self._segments.index(seg)))
                for seg in segments if seg in self._segments]
        interval = self.config.index_interval_bytes
        missing: list[LogSegment] = []

        def work() -> None:
            for seg, max_rel in jobs:
                try:
                    seg.ensure_loaded(max_rel, interval)
                except FileNotFoundError:
                    missing.append(seg)

        try:
            await asyncio.to_thread(work)
        except Exception:
            self._check_open()  # closed meanwhile: that is the error to report
            raise
        finally:
            self._drop_stale_fds([seg for seg, _ in jobs])
        self._check_open()
        for seg in missing:
            if seg in self._segments:
                raise CorruptLog(f"{seg.log_path} is missing")

    def _drop_stale_fds(self, segments: Sequence[LogSegment]) -> None:
        """Segments deleted or a partition closed meanwhile: their fds were opened after
        they were retired or closed. No read handed out a region of them: close (or retire)
        them now."""
        for seg in segments:
            if seg.fd < 0:
                continue
            if seg not in self._segments:
                self._hooks.retire_fd(seg.detach_fd())
            elif self._closed:
                os.close(seg.detach_fd())

    def _check_offset(self, offset: int) -> None:
        self._check_open()
        if not self._lso <= offset <= self._leo:
            raise OffsetOutOfRange(f"offset {offset} is outside [{self._lso}, {self._leo}] in "
                                   f"{self.topic}-{self.partition}")

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        """Whole batches below the high watermark (nothing unflushed with flush.messages=1),
        or with `committed` below the last stable offset."""
        while True:
            self._check_offset(offset)
            hw, lso = self.high_watermark, self.last_stable_offset
            if offset >= (lso if committed else hw):
                return ReadResult(_NO_CHUNKS, 0, hw, self._lso, lso)
            i = bisect_right(self._bases, offset) - 1
            segments = self._segments
            unloaded = []
            budget = max_bytes
            for j in range(i, len(segments)):
                if not segments[j].loaded:
                    unloaded.append(segments[j])
                budget -= segments[j].size
                if budget <= 0:
                    break
            if not unloaded:
                return self._read_loaded(i, offset, max_bytes, min_one_batch, committed)
            await self._load(unloaded)

    def _read_loaded(self, i: int, offset: int, max_bytes: int, min_one_batch: bool,
                     committed: bool) -> ReadResult:
        segments = self._segments
        hw, lso = self.high_watermark, self.last_stable_offset
        limit = lso if committed else hw
        seg = segments[i]
        found = seg.find_batch(offset)
        while found is None:
            i += 1
            if i >= len(segments) or not segments[i].loaded:
                raise CorruptLog(f"offset {offset} is missing from {self.directory}")
            seg = segments[i]
            found = seg.find_batch(offset)
        position, size = found
        if size > max_bytes:
            if not min_one_batch:
                return ReadResult(_NO_CHUNKS, 0, hw, self._lso, lso)
            return ReadResult((FileRegion(seg.fd, position, size),), size, hw, self._lso, lso)
        end = seg.find_end(position, min(max_bytes, self._readable_end(i, limit) - position))
        chunks: list[bytes | FileRegion] = [FileRegion(seg.fd, position, end - position)]
        total = end - position
        while end == seg.size and total < max_bytes and i + 1 < len(segments):
            i += 1
            seg = segments[i]
            if not seg.loaded or seg.base_offset >= limit:
                break
            end = seg.find_end(0, min(max_bytes - total, self._readable_end(i, limit)))
            if end:
                chunks.append(FileRegion(seg.fd, 0, end))
                total += end
        return ReadResult(chunks, total, hw, self._lso, lso)

    def _readable_end(self, i: int, hw: int) -> int:
        """The position in loaded segment i where the batches at or past `hw` start (a batch
        boundary: the recovery point is a log end offset or a segment's base offset, the last
        stable offset a transaction's first batch's base offset)."""
        seg = self._segments[i]
        if hw >= self._leo or (i + 1 < len(self._segments)
                               and hw >= self._segments[i + 1].base_offset):
            return seg.size
        found = seg.find_batch(hw)
        return seg.size if found is None else found[0]

    async def _largest_timestamp(self, seg: LogSegment) -> tuple[int, int]:
        found = seg.largest_timestamp(self._max_relative(self._segments.index(seg)))
        if found is None:
            await self._load([seg])
            found = seg.max_timestamp, seg.offset_of_max_timestamp
        return found

    async def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        from_offset = -1
        while True:
            self._check_open()
            if self._lso == self._leo:
                return None
            i = max(0, bisect_right(self._bases, from_offset) - 1)
            if i >= len(self._segments) or from_offset >= self._leo:
                return None
            seg = self._segments[i]
            largest, _ = await self._largest_timestamp(seg)
            if seg not in self._segments:
                continue  # deleted meanwhile
            i = self._segments.index(seg)
            if largest >= timestamp_ms:
                if not seg.loaded:
                    await self._load([seg])
                    continue
                found = search_segment(seg, timestamp_ms, self._lso)
                if found is not None:
                    return found
            if seg is self._active:
                return None
            from_offset = self._segments[i + 1].base_offset

    async def max_timestamp(self) -> tuple[int, int] | None:
        best = (-1, -1)
        for seg in list(self._segments):
            if seg in self._segments:
                ts, offset = await self._largest_timestamp(seg)
                if ts > best[0]:
                    best = (ts, offset)
        self._check_open()
        if best[0] < 0 or self._lso == self._leo:
            return None
        return best[1], best[0]

    # -- deletion ------------------------------------------------------------------------

    async def delete_records_before(self, offset: int) -> int:
        self._check_open()
        if offset == -1:  # Kafka's DeleteRecords: -1 means the high watermark
            offset = self.high_watermark
        if offset < 0 or offset > self._leo:
            raise OffsetOutOfRange(f"cannot delete records before {offset}: the log ends at "
                                   f"{self._leo} in {self.topic}-{self.partition}")
        if offset <= self._lso:
            return self._lso
        self._lso = offset
        self._prune_aborted()
        await self._hooks.log_start_changed()
        async with self._maintenance:
            if not self._closed:
                count = retention.count_log_start_breached(self._bases, self._lso)
                await self._delete_oldest(count)
        return self._lso

    async def run_retention(self, now_ms: int) -> int:
        """Deletes the oldest segments that retention selects; returns how many."""
        async with self._maintenance:
            if self._closed or self.offline:
                return 0
            config = self.config
            count = retention.count_log_start_breached(self._bases, self._lso)
            if retention.deletes_by_policy(config.cleanup_policy):
                sizes = [seg.size for seg in self._segments]
                count = max(count, retention.count_size_breached(sizes, config.retention_bytes))
                count = max(count, await self._count_time_breached(now_ms))
            await self._delete_oldest(count)
            return count

    async def _count_time_breached(self, now_ms: int) -> int:
        retention_ms = self.config.retention_ms
        count = 0
        if retention_ms < 0:
            return 0
        while count < len(self._segments) - 1:
            seg = self._segments[count]
            largest, _ = await self._largest_timestamp(seg)
            if largest < 0:
                largest = int(os.stat(seg.log_path).st_mtime * 1000)
            if not retention.retention_ms_breached(largest, now_ms, retention_ms):
                break
            count += 1
        return count

    async def _delete_oldest(self, count: int) -> None:
        """Drops the first `count` segments (never the active one); their fds are retired,
        not closed, so reads in flight can finish."""
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return
        removed = self._segments[:count]
        del self._segments[:count]
        del self._bases[:count]
        self._size -= sum(seg.size for seg in removed)
        self._lso = max(self._lso, self._segments[0].base_offset)
        self._prune_aborted()
        log.info("%s: deleted %d segment(s); log start offset %d", self.directory.name, count,
                 self._lso)
        try:  # a background roll flush may still be using a removed segment
            await self._flusher.wait_rolled()
        except Exception:
            log.exception("%s: a segment flush failed", self.directory.name)
        for seg in removed:
            if seg.fd >= 0:
                self._hooks.retire_fd(seg.detach_fd())

        def unlink() -> None:
            for seg in removed:
                seg.delete_files()

        await asyncio.to_thread(unlink)

    # -- compaction: hooks for the LogCleaner (cleaner.py) -------------------------------

    @property
    def closed(self) -> bool:
        """Closed, or offline after an I/O failure: not to be cleaned."""
        return self._closed or self.offline

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        """A snapshot of the segments, oldest first; the last one is the active segment."""
        return tuple(self._segments)

    async def load_segments(self, segments: Sequence[LogSegment]) -> None:
        """Opens inactive segments and loads their indexes, off the event loop."""
        await self._load([seg for seg in segments if not seg.loaded and seg in self._segments])

    async def replace_segments(self, old: Sequence[LogSegment],
                               swap: Callable[[], LogSegment]) -> bool:
        """Replaces the consecutive inactive segments `old` by the segment that `swap()`
        (blocking, run in a thread) puts in their place on disk. False, doing nothing, if the
        partition was closed or `old` are no longer its segments. The fds of `old` are
        retired, not closed, so reads in flight can finish."""
        async with self._maintenance:
            n = len(old)
            i = self._segments.index(old[0]) if old and old[0] in self._segments else -1
            if i < 0 or i + n >= len(self._segments) or self._segments[i:i + n] != list(old):
                return False
            await self._load(old)  # so that no read opens a replaced file by its name
            await self._flusher.wait_rolled()
            if self._closed:
                return False
            try:
                new = await asyncio.to_thread(swap)
            except BaseException:
                self._closed = True  # the files may have changed under the in-memory state
                log.critical("%s: replacing cleaned segments failed; the partition is closed "
                             "until restart (recovery completes or undoes the swap)",
                             self.directory.name)
                raise
            self._segments[i:i + n] = [new]
            self._bases[i:i + n] = [new.base_offset]
            self._size += new.size - sum(seg.size for seg in old)
            for seg in old:
                if seg.fd >= 0:
                    self._hooks.retire_fd(seg.detach_fd())
            return True

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
        active = self._active
        active.on_become_inactive()
        if active.size and (active.index_dirty or self._flusher.recovery_point < self._leo):
            try:
                await asyncio.to_thread(active.persist)
            except OSError as exc:
                self._flusher.fail(f"{active.log_path}: persisting at close", exc)
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
