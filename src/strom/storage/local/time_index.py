"""TimeIndex: the sparse map from a segment's growing max timestamp to a relative offset.

On disk it is Kafka's format: 12-byte entries of (timestamp int64, relative offset int32),
big-endian. An entry (T, o) means: the largest timestamp of the batches up to offset
base_offset + o is T, and o is the last offset of the first batch that reached T. An entry is
added only when the max timestamp grew, so timestamps are strictly increasing. On roll and
close a final entry records the segment's largest timestamp, so the last entry of an inactive
segment's time index is its largest timestamp (Kafka's `largestTimestamp`).
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Final

from strom.storage.local.files import read_file, write_atomic

ENTRY_SIZE: Final = 12
TIME_INDEX_SUFFIX: Final = ".timeindex"
_SWAP: Final = sys.byteorder == "little"
_ENTRY: Final = struct.Struct(">qi")


class TimeIndex:
    __slots__ = ("max_entries", "offsets", "timestamps")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.timestamps: array[int] = array("q")
        self.offsets: array[int] = array("i")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def is_full(self) -> bool:
        return len(self.timestamps) >= self.max_entries

    def maybe_append(self, timestamp: int, relative_offset: int,
                     skip_full_check: bool = False) -> None:
        """Adds (timestamp, offset) if the timestamp grew and there is room (or skip_full_check,
        used once for the final entry on roll/close)."""
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return
        if timestamp < 0 or (not skip_full_check and self.is_full):
            return
        self.timestamps.append(timestamp)
        self.offsets.append(relative_offset)

    def last_entry(self) -> tuple[int, int] | None:
        if not self.timestamps:
            return None
        return self.timestamps[-1], self.offsets[-1]

    def offset_before(self, timestamp: int) -> int | None:
        """The relative offset of the last entry with a timestamp < `timestamp`, if any.

        Every batch up to and including that offset has max timestamp < `timestamp`.
        """
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.offsets[i] if i >= 0 else None

    def truncate_to_offset(self, relative_offset: int) -> None:
        """Drops entries pointing at or beyond `relative_offset`."""
        keep = len(self.offsets)
        while keep and self.offsets[keep - 1] >= relative_offset:
            keep -= 1
        del self.timestamps[keep:]
        del self.offsets[keep:]

    def to_bytes(self) -> bytes:
        out = bytearray(ENTRY_SIZE * len(self.timestamps))
        for i, (ts, off) in enumerate(zip(self.timestamps, self.offsets, strict=True)):
            _ENTRY.pack_into(out, i * ENTRY_SIZE, ts, off)
        return bytes(out)

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_bytes(), sync_dir=False)

    @classmethod
    def from_bytes(cls, data: bytes, max_entries: int,
                   max_relative_offset: int) -> TimeIndex | None:
        """Parses and validates; None if damaged (partial entry, not strictly increasing
        timestamps, offsets decreasing or outside [0, max_relative_offset))."""
        if len(data) % ENTRY_SIZE:
            return None
        index = cls(max_entries)
        timestamps, offsets = index.timestamps, index.offsets
        prev_ts = -1
        prev_off = 0
        for ts, off in _ENTRY.iter_unpack(data):
            if ts <= prev_ts or off < prev_off or off >= max_relative_offset:
                return None
            prev_ts, prev_off = ts, off
            timestamps.append(ts)
            offsets.append(off)
        return index

    @classmethod
    def load(cls, path: Path, max_entries: int,
             max_relative_offset: int) -> TimeIndex | None:
        data = read_file(path)
        if data is None:
            return None
        return cls.from_bytes(data, max_entries, max_relative_offset)


def peek_last_entry(path: Path, max_relative_offset: int) -> tuple[int, int] | None:
    """The last entry of a time index file without loading it: (-1, -1) if the file is empty,
    None if it is missing or its size or last entry is implausible."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return -1, -1
        if size % ENTRY_SIZE:
            return None
        data = os.pread(fd, ENTRY_SIZE, size - ENTRY_SIZE)
    finally:
        os.close(fd)
    if len(data) != ENTRY_SIZE:
        return None
    ts, off = _ENTRY.unpack(data)
    if ts < 0 or not 0 <= off < max_relative_offset:
        return None
    return ts, off
