"""PartitionRetention: deleting a LocalPartitionLog's oldest segments (DeleteRecords, retention).

Which segments go is decided by retention.py; this applies it. The log start offset moves and
segments leave the in-memory state in synchronous stretches (partition_log.py's concurrency
model), segments under the maintenance lock that also serializes compaction's swaps and close;
their fds are retired, not closed, and their files are unlinked in a thread afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os

from strom.storage.api import OffsetOutOfRange
from strom.storage.local import retention
from strom.storage.local.partition_state import PartitionState
from strom.storage.meter import retention_reasons

log = logging.getLogger(__name__)


class PartitionRetention(PartitionState):
    """Moving a partition's log start offset and deleting the segments below it."""

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
            by_start = retention.count_log_start_breached(self._bases, self._lso)
            by_size = by_time = 0
            if retention.deletes_by_policy(config.cleanup_policy):
                sizes = [seg.size for seg in self._segments]
                by_size = retention.count_size_breached(sizes, config.retention_bytes)
                by_time = await self._count_time_breached(now_ms)
            count = max(by_start, by_size, by_time)
            before = len(self._segments)
            await self._delete_oldest(count)
            meter = self.meter
            gone = before - len(self._segments)  # never the active one
            if meter is not None and gone > 0:
                for reason, deleted in retention_reasons(
                        min(by_start, gone), min(by_size, gone), min(by_time, gone)).items():
                    meter.retention_deleted(reason, deleted)
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
