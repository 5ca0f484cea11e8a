"""The newest committed batches of a partition, kept in the broker's memory so that consumers
at the tail read without a database round trip (only the partition's owner appends, so the
cache is never stale; compaction and reloads clear it)."""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

DEFAULT_TAIL_BYTES: Final = 1024 * 1024


class TailCache:
    __slots__ = ("_bases", "_data", "_head", "_lasts", "bytes", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_TAIL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bases: list[int] = []
        self._lasts: list[int] = []
        self._data: list[bytes] = []
        self._head = 0  # entries before it are evicted
        self.bytes = 0

    def clear(self) -> None:
        self._bases, self._lasts, self._data = [], [], []
        self._head = 0
        self.bytes = 0

    def add(self, base_offset: int, last_offset: int, data: bytes) -> None:
        """The next committed batch (offsets above every cached one)."""
        self._bases.append(base_offset)
        self._lasts.append(last_offset)
        self._data.append(data)
        self.bytes += len(data)
        while self.bytes > self.max_bytes and self._head < len(self._data) - 1:
            self.bytes -= len(self._data[self._head])
            self._data[self._head] = b""
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._data):
            del self._bases[:self._head], self._lasts[:self._head], self._data[:self._head]
            self._head = 0

    def covers(self, offset: int) -> bool:
        """Whether the batch holding `offset` (or the first one after it) is cached."""
        return self._head < len(self._bases) and self._bases[self._head] <= offset

    def read(self, offset: int, limit: int, max_bytes: int,
             min_one_batch: bool) -> tuple[list[bytes], int]:
        """Whole batches from the one holding `offset`, none starting at or past `limit`,
        within `max_bytes` (the first one regardless with `min_one_batch`)."""
        chunks: list[bytes] = []
        total = 0
        for i in range(bisect_left(self._lasts, offset, self._head), len(self._data)):
            if self._bases[i] >= limit:
                break
            data = self._data[i]
            if total + len(data) > max_bytes and (chunks or not min_one_batch):
                break
            chunks.append(data)
            total += len(data)
        return chunks, total
