"""PartitionState: a LocalPartitionLog's in-memory state and what all its parts share.

The offsets a partition reports (high watermark, last stable offset), the checks before an
operation, and loading inactive segments' indexes in a thread. The parts of LocalPartitionLog
(partition_log.py: append, roll, flush, close; partition_reads.py; partition_retention.py;
partition_compaction.py) are mixins over this class and follow the concurrency model that
partition_log.py's docstring explains: every change to this state happens in a synchronous
stretch without awaits, and code after an await re-checks what it relies on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strom.config.topic import LogConfig
from strom.storage.api import CorruptLog, UnknownTopic
from strom.storage.local.batch_scan import MAX_RELATIVE_OFFSET
from strom.storage.local.flush import LogFlusher
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.recovery import LoadedLog
from strom.storage.meter import MeterSlot, StorageMeter
from strom.storage.producer_state import ProducerStateManager


@dataclass(frozen=True, slots=True)
class PartitionHooks:
    """What a partition needs from its engine."""

    retire_fd: Callable[[int], None]  # closes a deleted segment's fd after a grace period
    log_start_changed: Callable[[], Awaitable[None]]  # durably checkpoints log start offsets
    appended: Callable[[str, int], None]  # the high watermark moved: wakes waiting fetches
    meters: MeterSlot = field(default_factory=MeterSlot)  # the engine's: metrics, if on


class PartitionState:
    """The fields of a partition's log in `<data_dir>/<topic>-<partition>/`."""

    def __init__(self, topic: str, partition: int, directory: Path, config: LogConfig,
                 loaded: LoadedLog, hooks: PartitionHooks,
                 producer_state: ProducerStateManager, snapshot_offset: int = -1) -> None:
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
        self.appended_records = 0  # strom.storage.api.PartitionLog
        self.appended_bytes = 0
        self._flusher = LogFlusher(self._leo, lambda: (self._leo, self._active.fd),
                                   directory.name, hooks.meters)
        self._maintenance = asyncio.Lock()
        self._closed = False
        self._producer_state = producer_state
        self._snapshot_offset = snapshot_offset  # the newest producer state snapshot's
        self._prune_aborted()

    # -- offsets -------------------------------------------------------------------------

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
        first_unstable = self._producer_state.first_unstable_offset()
        if first_unstable is None:
            return hw
        return min(max(first_unstable, self._lso), hw)

    def _prune_aborted(self) -> None:
        self._producer_state.prune_aborted(self._lso)

    # -- checks --------------------------------------------------------------------------

    @property
    def meter(self) -> StorageMeter | None:
        """The engine's metrics, None while they are off."""
        return self._hooks.meters.meter

    @property
    def offline(self) -> bool:
        """Whether an fsync or a write failed (other than for lack of space): appends and
        reads raise LogDirFailure until restart."""
        return self._flusher.failure is not None

    @property
    def disk_full(self) -> bool:
        """Whether a write failed for lack of space and the partition has not written since:
        appends raise LogDirFull, reads of committed records go on (partition_space.py)."""
        return self._flusher.no_space is not None

    def _check_open(self) -> None:
        if self._closed:
            raise UnknownTopic(f"{self.topic}-{self.partition} was deleted or closed")
        self._flusher.check()

    # -- loading inactive segments -------------------------------------------------------

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

    async def _largest_timestamp(self, seg: LogSegment) -> tuple[int, int]:
        """The segment's largest timestamp and its offset, loading its indexes if needed
        (for timestamp lookups and time-based retention)."""
        found = seg.largest_timestamp(self._max_relative(self._segments.index(seg)))
        if found is None:
            await self._load([seg])
            found = seg.max_timestamp, seg.offset_of_max_timestamp
        return found
