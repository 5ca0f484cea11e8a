"""PartitionCompaction: what a LocalPartitionLog offers the LogCleaner (cleaner.py).

The cleaner works on a snapshot of the segments and swaps cleaned ones in through
`replace_segments`, which re-checks under the maintenance lock that they are still the
partition's and changes the in-memory state only after the swap, without an await in between
(partition_log.py's concurrency model).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from strom.storage.local.log_segment import LogSegment
from strom.storage.local.partition_state import PartitionState

log = logging.getLogger(__name__)


class PartitionCompaction(PartitionState):
    """Hooks for the LogCleaner: the segments, loading them, replacing cleaned ones."""

    @property
    def closed(self) -> bool:
        """Closed, offline after an I/O failure or short of space: not to be cleaned."""
        return self._closed or self.offline or self.disk_full

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
