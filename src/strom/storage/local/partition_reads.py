"""PartitionReads: a LocalPartitionLog's read path (fetch, aborted transactions, timestamps).

A read takes its snapshot of the segments in one synchronous stretch (partition_log.py's
concurrency model); when inactive segments must be loaded first, it awaits that and starts
over, re-checking the offset against a log start offset that may have moved meanwhile.
"""

from __future__ import annotations

from bisect import bisect_right

from strom.storage.api import CorruptLog, FileRegion, OffsetOutOfRange, ReadResult
from strom.storage.local.partition_state import PartitionState
from strom.storage.local.timestamps import search_segment

_NO_CHUNKS: tuple[bytes | FileRegion, ...] = ()


class PartitionReads(PartitionState):
    """Reads of a partition's log: whole batches as file regions, and timestamp lookups."""

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        return self._producer_state.aborted_transactions(fetch_offset, upper_bound)

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
                return self._read_loaded(i, offset, max_bytes, min_one_batch, hw, lso,
                                         committed)
            await self._load(unloaded)

    def _read_loaded(self, i: int, offset: int, max_bytes: int, min_one_batch: bool, hw: int,
                     lso: int, committed: bool) -> ReadResult:
        segments = self._segments
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

    # -- timestamps ----------------------------------------------------------------------

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
