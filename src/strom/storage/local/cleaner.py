"""LogCleaner: log compaction for topics whose cleanup.policy includes `compact` (Kafka's).

`LocalEngine.run_cleaner(now_ms)`, called every log.cleaner.backoff.ms, runs one pass:

1. Survey each compacted partition. Its *first dirty offset* (cleaner-offset-checkpoint; the
   log start offset if there is none) splits the log into a clean and a dirty section. The
   *cleanable* section ends at the first segment that is active, not yet flushed (below the
   recovery point), reaches the first unstable offset (an open transaction's first offset),
   or, with min.compaction.lag.ms, dirty with a record newer than the lag (Kafka's segment
   granularity). Dirty ratio = dirty bytes / (clean + dirty bytes).
2. A partition is due when it has dirty bytes and its dirty ratio >= min.cleanable.dirty.ratio
   or its oldest dirty batch is older than max.compaction.lag.ms; or when the delete horizon
   of tombstones kept by an earlier cleaning has passed. Due partitions are cleaned one after
   another, dirtiest first.
3. Cleaning: build the offset map over the cleanable dirty section (cleaner_map; its memory
   is bounded by log.cleaner.dedupe.buffer.size, and when it fills up it ends there, maybe
   inside a batch: the rest waits for the next passes), then rewrite
   the segments from the log start to where the map ends, in groups of at most segment.bytes
   (cleaner_rewrite; aborted transactions' data batches are removed, and markers whose
   transaction has no data left get a delete horizon and later go: cleaner_txn), swapping
   each group in (cleaner_swap, crash-safe), oldest first. Then the aborted transactions
   below the map's end are dropped from the producer state and the first dirty offset moves
   to the map's end.

Reading and writing run in threads, one batch at a time with a check for a stop request in
between, streaming each batch's records (never a list of them); appends and reads go on
meanwhile (sources are read through private dup'd fds, and replaced segments' fds are retired,
not closed). Only the swap itself holds the partition's maintenance lock. A partition whose
cleaning fails is skipped until restart (Kafka's "uncleanable partitions").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from strom.config.topic import ConfigError
from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.storage.local.checkpoint import (
    TopicPartition,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from strom.storage.local.cleaner_map import (
    DEFAULT_DEDUPE_BUFFER_BYTES,
    MIN_DEDUPE_BUFFER_BYTES,
    AbortedIndex,
    CleaningAborted,
    Source,
    build_offset_map,
)
from strom.storage.local.cleaner_rewrite import (
    CleanedSegment,
    RetentionRules,
    group_segments,
    write_cleaned,
)
from strom.storage.local.cleaner_swap import CrashHook, cleaned_path, swap_in
from strom.storage.local.cleaner_txn import NOTHING, PrunedPasses, TxnMarkers
from strom.storage.local.files import pread_exact, unlink_quietly
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.partition_log import LocalPartitionLog
from strom.storage.local.producer_snapshots import list_snapshots

log = logging.getLogger(__name__)

CLEANER_CHECKPOINT: Final = "cleaner-offset-checkpoint"  # Kafka's: first dirty offsets
HORIZON_CHECKPOINT: Final = "cleaner-delete-horizon-checkpoint"  # earliest pending horizons
CRASH_POINTS: Final = ("cleaned", "swap", "delete", "rename", "indexes", "checkpoint")
NO_MAX_LAG: Final = 2**62


def compacts(cleanup_policy: str) -> bool:
    return "compact" in cleanup_policy.split(",")


def _no_hook(step: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class CleanTarget:
    """A partition of a compacted topic and its max.compaction.lag.ms."""

    plog: LocalPartitionLog
    max_compaction_lag_ms: int = NO_MAX_LAG


@dataclass(frozen=True, slots=True)
class LogToClean:
    first_dirty: int
    cleanable_end: int  # base offset of the first segment that may not be cleaned
    clean_bytes: int
    dirty_bytes: int

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def _key(plog: LocalPartitionLog) -> TopicPartition:
    return plog.topic, plog.partition


def _first_batch_timestamps(segments: Sequence[LogSegment]) -> list[int]:
    """Each segment's first batch max timestamp (Kafka's getFirstBatchTimestamp); blocking."""
    out = []
    for seg in segments:
        if seg.rolling_timestamp < 0 and seg.size >= BATCH_HEADER_SIZE:
            try:
                fd = os.open(seg.log_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # deleted meanwhile
            try:
                seg.rolling_timestamp = read_batch_header(
                    pread_exact(fd, BATCH_HEADER_SIZE, 0)).max_timestamp
            finally:
                os.close(fd)
        out.append(seg.rolling_timestamp)
    return out


class LogCleaner:
    def __init__(self, data_dir: Path, max_decompressed_bytes: int,
                 dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES) -> None:
        """`dedupe_buffer_bytes` (log.cleaner.dedupe.buffer.size) bounds the offset map; a
        value too small for a map that holds one key is refused, as Kafka's Cleaner refuses a
        map that cannot hold a single record ("log cleaning will never make progress")."""
        if dedupe_buffer_bytes < MIN_DEDUPE_BUFFER_BYTES:
            raise ConfigError(f"log.cleaner.dedupe.buffer.size {dedupe_buffer_bytes} is too "
                              f"small for an offset map that holds one key "
                              f"({MIN_DEDUPE_BUFFER_BYTES} bytes)")
        self.data_dir = data_dir
        self.max_decompressed_bytes = max_decompressed_bytes
        self.dedupe_buffer_bytes = dedupe_buffer_bytes
        self.crash_hook: CrashHook = _no_hook  # tests raise from it to simulate a crash
        self._first_dirty: dict[TopicPartition, int] = {}
        self._horizons: dict[TopicPartition, int] = {}
        self._uncleanable: set[TopicPartition] = set()
        self._pruned = PrunedPasses()
        self._stopping = False
        self._task: asyncio.Task[int] | None = None

    # -- lifecycle and checkpoints -------------------------------------------------------

    def load(self) -> None:
        """Reads the checkpoints (blocking; at engine open)."""
        self._stopping = False
        self._uncleanable.clear()
        self._first_dirty = read_offset_checkpoint(self.data_dir / CLEANER_CHECKPOINT)
        self._horizons = read_offset_checkpoint(self.data_dir / HORIZON_CHECKPOINT)

    async def stop(self) -> None:
        """Makes a pass in progress stop at its next batch and waits for it."""
        self._stopping = True
        task = self._task
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.debug("the last cleaner pass failed", exc_info=task.exception())

    def forget(self, topic: str) -> None:
        """Drops a deleted topic's checkpoint entries (written with the next cleaning)."""
        for entries in (self._first_dirty, self._horizons):
            for tp in [tp for tp in entries if tp[0] == topic]:
                del entries[tp]
        self._uncleanable = {tp for tp in self._uncleanable if tp[0] != topic}
        self._pruned.forget_topic(topic)

    async def _write_checkpoints(self) -> None:
        first_dirty, horizons = dict(self._first_dirty), dict(self._horizons)

        def write() -> None:
            write_offset_checkpoint(self.data_dir / CLEANER_CHECKPOINT, first_dirty)
            write_offset_checkpoint(self.data_dir / HORIZON_CHECKPOINT, horizons)

        await asyncio.to_thread(write)

    def first_dirty_offset(self, plog: LocalPartitionLog) -> int:
        """The checkpointed first dirty offset, or the log start offset if it has none or it
        lies outside the log (Kafka resets it the same way)."""
        offset = self._first_dirty.get(_key(plog))
        if offset is None or not plog.log_start_offset <= offset <= plog.log_end_offset:
            return plog.log_start_offset
        return offset

    # -- a pass ----------------------------------------------------------------------------

    async def run(self, targets: Sequence[CleanTarget], now_ms: int) -> int:
        """Cleans the due partitions; returns how many were cleaned. The pass runs as its own
        task: cancelling the caller does not interrupt a swap, and stop() waits for it."""
        if self._stopping or (self._task is not None and not self._task.done()):
            return 0
        self._task = asyncio.get_running_loop().create_task(self._run(targets, now_ms))
        return await asyncio.shield(self._task)

    async def _run(self, targets: Sequence[CleanTarget], now_ms: int) -> int:
        due: list[tuple[LogToClean, LocalPartitionLog]] = []
        for target in targets:
            if not target.plog.closed and _key(target.plog) not in self._uncleanable:
                todo = await self.survey(target, now_ms)
                if todo is not None:
                    due.append((todo, target.plog))
        due.sort(key=lambda item: item[0].dirty_ratio, reverse=True)
        cleaned = 0
        for todo, plog in due:
            if self._stopping:
                break
            try:
                await self.clean(plog, todo, now_ms)
                cleaned += 1
            except CleaningAborted as exc:
                log.info("%s: cleaning stopped: %s", plog.directory.name,
                         str(exc) or "a stop request")
            except Exception:
                log.exception("%s: cleaning failed; not cleaning it again until restart",
                              plog.directory.name)
                self._uncleanable.add(_key(plog))
        return cleaned

    async def survey(self, target: CleanTarget, now_ms: int) -> LogToClean | None:
        """The partition's clean and dirty sections if it is due for cleaning, else None."""
        plog = target.plog
        segs = plog.segments
        first_dirty = self.first_dirty_offset(plog)
        end = await self._cleanable_end(plog, segs, first_dirty, now_ms)
        dirty = [s for i, s in enumerate(segs[:end]) if segs[i + 1].base_offset > first_dirty]
        dirty_bytes = sum(s.size for s in dirty)
        clean_bytes = sum(s.size for s in segs[:end]) - dirty_bytes
        todo = LogToClean(first_dirty, segs[end].base_offset, clean_bytes, dirty_bytes)
        if dirty_bytes and todo.dirty_ratio >= plog.config.min_cleanable_dirty_ratio:
            return todo
        if dirty_bytes and target.max_compaction_lag_ms < NO_MAX_LAG:
            stamps = await asyncio.to_thread(_first_batch_timestamps, dirty)
            earliest = min((ts for ts in stamps if ts > 0), default=now_ms)
            if earliest < now_ms - target.max_compaction_lag_ms:
                return todo
        horizon = self._horizons.get(_key(plog))
        if end and horizon is not None and horizon <= now_ms:
            return todo
        return None

    async def _cleanable_end(self, plog: LocalPartitionLog, segs: Sequence[LogSegment],
                             first_dirty: int, now_ms: int) -> int:
        """Index of the first segment that may not be cleaned: the active one, one that is not
        wholly flushed, one that reaches the first unstable offset (Kafka never cleans an open
        transaction), or a dirty one with a record newer than min.compaction.lag.ms."""
        lag = plog.config.min_compaction_lag_ms
        state = plog.producer_state
        unstable = None if state is None else state.first_unstable_offset()
        for i in range(len(segs) - 1):
            next_base = segs[i + 1].base_offset
            if next_base > plog.recovery_point or (unstable is not None and next_base > unstable):
                return i
            if lag > 0 and next_base > first_dirty:
                found = segs[i].largest_timestamp(next_base - segs[i].base_offset)
                if found is None:
                    await plog.load_segments([segs[i]])
                    found = segs[i].max_timestamp, -1
                if found[0] > now_ms - lag:
                    return i
        return len(segs) - 1

    # -- cleaning one partition ----------------------------------------------------------

    async def clean(self, plog: LocalPartitionLog, todo: LogToClean, now_ms: int) -> None:
        """Compacts [log start, cleanable end) of a partition and advances its checkpoint."""
        everything = plog.segments
        segs = [s for s in everything if s.base_offset < todo.cleanable_end]
        ends = [everything[i + 1].base_offset for i in range(len(segs))]
        await plog.load_segments(segs)
        fds: list[int] = []
        try:
            sources = self._open_sources(plog, segs, fds)
            map_sources = [
                Source(src.base_offset, src.fd, src.size,
                       seg.offset_index.lookup(max(0, todo.first_dirty - seg.base_offset)))
                for src, seg, end in zip(sources, segs, ends, strict=True)
                if end > todo.first_dirty]
            state = plog.producer_state
            snapshots = [] if state is None else await asyncio.to_thread(
                list_snapshots, plog.directory)
            aborted = AbortedIndex(() if state is None else state.aborted_ranges())
            omap, map_end = await asyncio.to_thread(
                build_offset_map, map_sources, todo.first_dirty, todo.cleanable_end,
                self.dedupe_buffer_bytes, self.max_decompressed_bytes, partial(self._stop, plog),
                aborted)
            txns = TxnMarkers(NOTHING if state is None else map_end,
                              min(map_end, self._pruned.drop_below(_key(plog), state,
                                                                   snapshots)))
            rules = RetentionRules(omap, map_end, now_ms, plog.config.delete_retention_ms,
                                   self.max_decompressed_bytes, aborted,
                                   {} if state is None else state.last_data_offsets(), txns)
            count = sum(1 for s in segs if s.base_offset < map_end)
            spans = [(s.base_offset, end, s.size) for s, end in zip(segs, ends, strict=True)]
            pending = await self._rewrite(plog, segs[:count], sources[:count], spans[:count],
                                          rules)
        finally:
            for fd in fds:
                os.close(fd)
        size_before = sum(s.size for s in segs)
        size_after = sum(s.size for s in plog.segments[:-1]
                         if s.base_offset < todo.cleanable_end)
        log.info("%s: cleaned up to offset %d (%d keys mapped from offset %d); %d -> %d bytes",
                 plog.directory.name, map_end, len(omap), todo.first_dirty, size_before,
                 size_after)
        if plog.meter is not None:
            plog.meter.cleaned(max(size_before - size_after, 0))
        tp = _key(plog)
        if state is not None:  # every aborted record below map_end is gone now
            state.prune_aborted(map_end)
            self._pruned.pruned(tp, state, plog.log_end_offset, map_end)
        self._first_dirty[tp] = map_end
        if pending is None:
            self._horizons.pop(tp, None)
        else:
            self._horizons[tp] = pending
        self.crash_hook("checkpoint")
        await self._write_checkpoints()

    def _stop(self, plog: LocalPartitionLog) -> bool:
        return self._stopping or plog.closed

    def _open_sources(self, plog: LocalPartitionLog, segs: Sequence[LogSegment],
                      fds: list[int]) -> list[Source]:
        """Private dups of the segments' fds (appended to `fds`), so that retention or close
        cannot pull them from under the reads."""
        current = plog.segments
        sources = []
        for seg in segs:
            if seg.fd < 0 or seg not in current:
                raise CleaningAborted("a segment was deleted meanwhile")
            fds.append(os.dup(seg.fd))
            sources.append(Source(seg.base_offset, fds[-1], seg.size))
        return sources

    async def _rewrite(self, plog: LocalPartitionLog, segs: Sequence[LogSegment],
                       sources: Sequence[Source], spans: Sequence[tuple[int, int, int]],
                       rules: RetentionRules) -> int | None:
        """Writes and swaps in each group of segments; returns the earliest delete horizon of
        the tombstones and markers kept."""
        pending: int | None = None
        for group in group_segments(spans, plog.config.segment_bytes):
            old = [segs[i] for i in group]
            cleaned = await asyncio.to_thread(self._write_group, plog, old,
                                              [sources[i] for i in group], rules)
            horizon = cleaned.pending_horizon_ms
            if horizon is not None:
                pending = horizon if pending is None else min(pending, horizon)
            path = cleaned_path(plog.directory, old[0].base_offset)
            if not cleaned.changed:
                unlink_quietly(path)
                continue
            self.crash_hook("cleaned")
            swap = partial(self._swap, cleaned.segment, [s.base_offset for s in old])
            if not await plog.replace_segments(old, swap):
                unlink_quietly(path)
                raise CleaningAborted("the partition changed meanwhile")
        return pending

    def _write_group(self, plog: LocalPartitionLog, old: Sequence[LogSegment],
                     sources: Sequence[Source], rules: RetentionRules) -> CleanedSegment:
        config = plog.config
        seg = LogSegment(plog.directory, old[0].base_offset, 0, config.segment_index_bytes,
                         rules.now_ms)
        path = cleaned_path(plog.directory, seg.base_offset)
        try:
            return write_cleaned(path, seg, sources, rules, config.index_interval_bytes,
                                 partial(self._stop, plog))
        except Exception:
            unlink_quietly(path)
            raise

    def _swap(self, seg: LogSegment, replaced: Sequence[int]) -> LogSegment:
        """Swaps the cleaned file in and opens it (blocking; under the maintenance lock)."""
        swap_in(seg.directory, seg.base_offset, replaced, self.crash_hook)
        seg.fd = os.open(seg.log_path, os.O_RDONLY | os.O_CLOEXEC)
        seg.loaded = True
        try:
            seg.persist()
            self.crash_hook("indexes")
        except BaseException:
            os.close(seg.detach_fd())
            raise
        return seg
