"""The LogCleaner's offset map (Kafka's SkimpyOffsetMap) and its CRC-checked batch reader.

The map holds, for each key of the dirty section, the offset of its latest record. Keys of
up to 32 bytes are stored as they are; longer ones as a marker byte and a 32-byte BLAKE2b
digest (33 bytes, so a digest never equals a stored key), which bounds an entry's size.

**Memory.** The map's memory is bounded by log.cleaner.dedupe.buffer.size (Kafka's setting,
128 MiB by default), counted per entry as it grows (`entry_bytes`): ENTRY_OVERHEAD_BYTES (126)
for the dict entry with its share of the hash table and the int offset, plus the key's bytes
object rounded up to pymalloc's 16-byte size classes (48 bytes for a key of up to 15 bytes,
80 for a digest). The 126 bytes were measured with tracemalloc by inserting 1.5 million keys
(1 to 33 bytes) with offsets above 2**31 into a dict and taking, after each insertion past
the 1000th, the peak traced memory (the old and new hash tables coexist while the dict
grows) per entry: at most 126 bytes (worst at 43,691 entries, just after a resize; 96 bytes
per entry outside resizes), of which the int is 32. A 128 MiB map holds about 770,000 short
keys (Kafka's, 24 bytes an entry at a 0.9 load factor, about 5 million). In a pass over 5
million records, peak RSS grew by about 80% of the budget (the estimate is an upper bound).

**A full map.** Records are mapped one by one, streamed from each batch (iter_records, never a
list); when a new key does not fit, the map ends at that record's offset, which may lie inside
a batch (Kafka's buildOffsetMap also stops in the middle of a segment). The rewrite keeps every
record at or past the map's end, and the next pass starts mapping there (the first dirty
offset), so a dirty section larger than the map, even a single batch with more keys, is
cleaned over several passes. The first key always goes in, so each pass makes progress
whatever the budget; and LogCleaner refuses a buffer too small for one entry of the largest
size (MAX_ENTRY_BYTES), as Kafka's Cleaner refuses at start an offset map "too small to fit
in even a single message" (slots x load factor <= 1; without that check its map would end
at once, before any record, and no pass would make progress).

Records of aborted transactions (`AbortedIndex`) are not mapped: the rewrite removes them, and
they must not hide a key's committed record. A batch whose records cannot be read to the end
may have had its first records mapped; the rewrite keeps such a batch as it is, so no record
that the map calls the latest of its key is removed.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

from strom.config.broker import BROKER_SETTINGS
from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    crc_matches,
    read_batch_header,
)
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import CorruptLog
from strom.storage.local.batch_scan import MIN_BATCH_LENGTH, RECOVERY_CHUNK
from strom.storage.local.files import pread_exact

log = logging.getLogger(__name__)

DEFAULT_DEDUPE_BUFFER_BYTES: Final = int(BROKER_SETTINGS["log.cleaner.dedupe.buffer.size"])
ENTRY_OVERHEAD_BYTES: Final = 126  # dict entry and table share at a resize, int offset
_BYTES_OBJECT_HEADER: Final = 33  # sys.getsizeof(b"")
_SIZE_CLASS: Final = 16  # pymalloc's alignment
_RAW_KEY_MAX: Final = 32
_DIGEST_MARKER: Final = b"\x00"


def entry_bytes(stored_key_length: int) -> int:
    """The map's memory for one entry whose stored key has this length (at most 33)."""
    key_object = _BYTES_OBJECT_HEADER + stored_key_length
    return ENTRY_OVERHEAD_BYTES + -(-key_object // _SIZE_CLASS) * _SIZE_CLASS


MAX_ENTRY_BYTES: Final = entry_bytes(_RAW_KEY_MAX + 1)


class CleaningAborted(Exception):
    """The partition was closed, deleted or changed, or the cleaner is stopping."""


@dataclass(frozen=True, slots=True)
class Source:
    """A segment file to read: a private fd (a dup of the segment's), its size and base."""

    base_offset: int
    fd: int
    size: int
    start: int = 0  # a batch boundary to start reading at


def map_key(key: bytes) -> bytes:
    if len(key) <= _RAW_KEY_MAX:
        return key
    return _DIGEST_MARKER + blake2b(key, digest_size=_RAW_KEY_MAX).digest()


class OffsetMap:
    """key -> offset of its latest record in the mapped part of the dirty section, within a
    memory budget (bytes, counted by entry_bytes)."""

    __slots__ = ("_offsets", "budget_bytes", "used_bytes")

    def __init__(self, budget_bytes: int) -> None:
        self._offsets: dict[bytes, int] = {}
        self.budget_bytes = budget_bytes
        self.used_bytes = 0

    def __len__(self) -> int:
        return len(self._offsets)

    def put(self, key: bytes, offset: int) -> bool:
        """Maps `key` to `offset`; False, changing nothing, if the key is new and does not fit
        (the first key always fits)."""
        stored = map_key(key)
        offsets = self._offsets
        if stored not in offsets:
            cost = entry_bytes(len(stored))
            if self.used_bytes + cost > self.budget_bytes and offsets:
                return False
            self.used_bytes += cost
        offsets[stored] = offset
        return True

    def get(self, key: bytes) -> int:
        """The latest offset of `key`, -1 if it is not in the map."""
        return self._offsets.get(map_key(key), -1)


class AbortedIndex:
    """The offset ranges (first data offset .. ABORT marker offset) of aborted transactions,
    per producer: a transactional data batch of the producer inside one was aborted."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, ranges: Iterable[tuple[int, int, int]] = ()) -> None:
        by_producer: dict[int, list[tuple[int, int]]] = {}
        for producer_id, first, last in ranges:
            by_producer.setdefault(producer_id, []).append((first, last))
        self._firsts: dict[int, list[int]] = {}
        self._lasts: dict[int, list[int]] = {}
        for producer_id, spans in by_producer.items():
            spans.sort()
            self._firsts[producer_id] = [first for first, _ in spans]
            self._lasts[producer_id] = [last for _, last in spans]

    def __len__(self) -> int:
        return sum(len(firsts) for firsts in self._firsts.values())

    def aborted(self, h: BatchHeader) -> bool:
        """Whether `h` is a data batch of an aborted transaction."""
        if h.is_control or not h.is_transactional:
            return False
        firsts = self._firsts.get(h.producer_id)
        if firsts is None:
            return False
        i = bisect_right(firsts, h.base_offset) - 1
        return i >= 0 and h.base_offset <= self._lasts[h.producer_id][i]


def read_batches(source: Source) -> Iterator[tuple[BatchHeader, bytes]]:
    """The whole batches of a segment file from `source.start`, each checked (sane header,
    CRC-32C): a bad one raises CorruptLog, so the cleaner never re-seals corrupt data."""
    fd, pos, end = source.fd, source.start, source.size
    buf = b""
    buf_start = pos
    while pos < end:
        rel = pos - buf_start
        if rel + BATCH_HEADER_SIZE > len(buf):
            buf, buf_start, rel = pread_exact(fd, min(RECOVERY_CHUNK, end - pos), pos), pos, 0
        if len(buf) < BATCH_HEADER_SIZE:
            raise CorruptLog(f"a truncated batch header at position {pos}")
        h = read_batch_header(buf, rel)
        if h.batch_length < MIN_BATCH_LENGTH or h.magic != 2 or pos + h.size > end:
            raise CorruptLog(f"an implausible batch header at position {pos}")
        if rel + h.size > len(buf):
            buf, buf_start, rel = pread_exact(fd, max(RECOVERY_CHUNK, h.size), pos), pos, 0
        data = buf[rel:rel + h.size]
        if len(data) != h.size or not crc_matches(data, 0, h):
            raise CorruptLog(f"a CRC mismatch in the batch at offset {h.base_offset}")
        yield h, data
        pos += h.size


def _map_batch(omap: OffsetMap, h: BatchHeader, data: bytes, first_dirty: int,
               max_decompressed_bytes: int) -> int | None:
    """Maps the keyed records of one batch at or past `first_dirty`, streamed; returns the
    offset of the first record that did not fit (the map's end), None if all did. A batch
    that cannot be read to its end is logged; what was mapped of it stays."""
    base = h.base_offset
    put = omap.put
    try:
        for r in iter_records(data, max_decompressed_bytes=max_decompressed_bytes):
            offset = base + r.offset_delta
            if r.key is not None and offset >= first_dirty and not put(r.key, offset):
                return offset
    except RecordsError as exc:
        log.warning("the log cleaner keeps the unreadable batch at offset %d as it is: %s",
                    base, exc)
    return None


def build_offset_map(sources: Sequence[Source], first_dirty: int, end: int, budget_bytes: int,
                     max_decompressed_bytes: int, should_stop: Callable[[], bool],
                     aborted: AbortedIndex | None = None) -> tuple[OffsetMap, int]:
    """Maps the keyed records with offsets in [first_dirty, end) (control batches and aborted
    transactions' batches aside) within `budget_bytes`; returns the map and the offset where
    it ends (`end` unless the map filled up first: then the offset of the first record that
    did not fit, which may lie inside a batch)."""
    omap = OffsetMap(budget_bytes)
    aborted = aborted or AbortedIndex()
    for source in sources:
        for h, data in read_batches(source):
            if should_stop():
                raise CleaningAborted
            if h.last_offset < first_dirty or h.is_control or aborted.aborted(h):
                continue
            if h.base_offset >= end:
                return omap, end
            map_end = _map_batch(omap, h, data, first_dirty, max_decompressed_bytes)
            if map_end is not None:
                return omap, map_end
    return omap, end
