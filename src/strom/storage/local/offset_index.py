"""OffsetIndex: the sparse map from a segment's relative offsets to file positions.

On disk it is Kafka's format: 8-byte entries of (relative offset int32, position int32),
big-endian, no header. In memory it is two int32 arrays searched with bisect. The index is a
cache: it is persisted on roll and close and rebuilt from the log when missing or damaged.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from itertools import pairwise
from pathlib import Path
from typing import Final

from strom.storage.local.files import read_file, write_atomic

ENTRY_SIZE: Final = 8
INDEX_SUFFIX: Final = ".index"
_SWAP: Final = sys.byteorder == "little"


def _monotonic(values: array[int]) -> bool:
    return all(a < b for a, b in pairwise(values))


class OffsetIndex:
    """Entries (offset - base_offset, position) of the batch starting at position."""

    __slots__ = ("max_entries", "offsets", "positions")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.offsets: array[int] = array("i")
        self.positions: array[int] = array("i")

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def is_full(self) -> bool:
        return len(self.offsets) >= self.max_entries

    def append(self, relative_offset: int, position: int) -> None:
        """Adds an entry unless the index is full (a sparser index stays correct)."""
        if len(self.offsets) < self.max_entries:
            self.offsets.append(relative_offset)
            self.positions.append(position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch whose base offset <= relative_offset, else 0."""
        i = bisect_right(self.offsets, relative_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def position_floor(self, position: int) -> int:
        """The largest indexed position <= position, else 0."""
        i = bisect_right(self.positions, position) - 1
        return self.positions[i] if i >= 0 else 0

    def last_entry(self) -> tuple[int, int] | None:
        if not self.offsets:
            return None
        return self.offsets[-1], self.positions[-1]

    def truncate_to_position(self, position: int) -> None:
        """Drops entries at or beyond `position` (after the log is truncated there)."""
        keep = bisect_right(self.positions, position - 1)
        del self.offsets[keep:]
        del self.positions[keep:]

    def to_bytes(self) -> bytes:
        pairs = array("i", bytes(ENTRY_SIZE * len(self.offsets)))
        pairs[0::2] = self.offsets
        pairs[1::2] = self.positions
        if _SWAP:
            pairs.byteswap()
        return pairs.tobytes()

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_bytes(), sync_dir=False)

    @classmethod
    def from_bytes(cls, data: bytes, max_entries: int, max_relative_offset: int,
                   segment_size: int) -> OffsetIndex | None:
        """Parses and validates an index; None if it is damaged.

        Valid means: a whole number of entries, offsets and positions strictly increasing,
        offsets in [0, max_relative_offset) and positions in [0, segment_size).
        """
        if len(data) % ENTRY_SIZE:
            return None
        pairs = array("i")
        pairs.frombytes(data)
        if _SWAP:
            pairs.byteswap()
        index = cls(max_entries)
        index.offsets = pairs[0::2]
        index.positions = pairs[1::2]
        if not index.offsets:
            return index
        if index.offsets[0] < 0 or index.offsets[-1] >= max_relative_offset:
            return None
        if index.positions[0] < 0 or index.positions[-1] >= segment_size:
            return None
        if not (_monotonic(index.offsets) and _monotonic(index.positions)):
            return None
        return index

    @classmethod
    def load(cls, path: Path, max_entries: int, max_relative_offset: int,
             segment_size: int) -> OffsetIndex | None:
        data = read_file(path)
        if data is None:
            return None
        return cls.from_bytes(data, max_entries, max_relative_offset, segment_size)
