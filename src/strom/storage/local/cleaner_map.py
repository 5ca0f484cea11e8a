"""The LogCleaner's offset map (Kafka's SkimpyOffsetMap) and its CRC-checked batch reader.

The map holds, for each key of the dirty section, the offset of its latest record. Keys of
up to 32 bytes are stored as they are; longer ones as a marker byte and a 32-byte BLAKE2b
digest (33 bytes, so a digest never equals a stored key), which bounds an entry's size. The
number of keys is bounded too (MAX_MAP_KEYS, Kafka's log.cleaner.dedupe.buffer.size): when
the next batch would not fit, the map ends before it and the rest of the dirty section waits
for the next cleaning. Records of aborted transactions (`AbortedIndex`) are not mapped: the
rewrite removes them, and they must not hide a key's committed record.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    crc_matches,
    read_batch_header,
)
from strom.protocol.records import Record, RecordsError, iter_records
from strom.storage.api import CorruptLog
from strom.storage.local.batch_scan import MIN_BATCH_LENGTH, RECOVERY_CHUNK
from strom.storage.local.files import pread_exact

log = logging.getLogger(__name__)

MAX_MAP_KEYS: Final = 1_000_000  # about 150 MB of dict entries at most
_RAW_KEY_MAX: Final = 32
_DIGEST_MARKER: Final = b"\x00"


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
    """key -> offset of its latest record in the mapped part of the dirty section."""

    __slots__ = ("_offsets",)

    def __init__(self) -> None:
        self._offsets: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._offsets)

    def put(self, key: bytes, offset: int) -> None:
        self._offsets[map_key(key)] = offset

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


def parse_batch(h: BatchHeader, data: bytes, max_decompressed_bytes: int) -> list[Record] | None:
    """The batch's records; None (logged) if they cannot be read: such a batch is kept as it
    is and its keys are not mapped, so nothing is removed because of it."""
    try:
        return list(iter_records(data, max_decompressed_bytes=max_decompressed_bytes))
    except RecordsError as exc:
        log.warning("the log cleaner keeps the unreadable batch at offset %d as it is: %s",
                    h.base_offset, exc)
        return None


def build_offset_map(sources: Sequence[Source], first_dirty: int, end: int, max_keys: int,
                     max_decompressed_bytes: int, should_stop: Callable[[], bool],
                     aborted: AbortedIndex | None = None) -> tuple[OffsetMap, int]:
    """Maps the keyed records with offsets in [first_dirty, end) (control batches and aborted
    transactions' batches aside); returns the map and the offset where it ends (`end` unless
    the map filled up first)."""
    omap = OffsetMap()
    aborted = aborted or AbortedIndex()
    for source in sources:
        for h, data in read_batches(source):
            if should_stop():
                raise CleaningAborted
            if h.last_offset < first_dirty or h.is_control or aborted.aborted(h):
                continue
            if h.base_offset >= end:
                return omap, end
            if len(omap) and len(omap) + h.records_count > max_keys:
                return omap, max(h.base_offset, first_dirty)
            for r in parse_batch(h, data, max_decompressed_bytes) or ():
                offset = h.base_offset + r.offset_delta
                if offset >= first_dirty and r.key is not None:
                    omap.put(r.key, offset)
    return omap, end
