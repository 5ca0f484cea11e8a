"""The LogCleaner's offset map (Kafka's SkimpyOffsetMap) and its CRC-checked batch reader.

The map holds, for each key of the dirty section, the offset of its latest record. As in
Kafka, a key is stood for by a 16-byte digest (BLAKE2b: in CPython it measured faster than
hashlib's MD5, 0.37 against 0.46 us a short key) and the map is one table allocated at once:
slots of SLOT_BYTES (24) holding a digest and an offset, open addressing, no Python object
per entry. Two keys with the same digest would share an entry (the older key's latest record
could be removed); Kafka accepts that risk with MD5's 16 bytes, and so does strom: among 5
million keys the probability of any collision is about 4e-26.

**Memory.** The table has log.cleaner.dedupe.buffer.size // 24 slots (128 MiB: 5,592,405),
fewer if the dirty section cannot need them (see `slots_for`: one key per offset of the
dirty section at most, so a small partition does not take 128 MiB), and at least MIN_SLOTS.
It is allocated when a cleaning starts and freed when the cleaning ends. The map is full at
LOAD_FACTOR x slots entries (Kafka's log.cleaner.io.buffer.load.factor, 0.9): 5,033,164 keys
for 128 MiB, as in Kafka.

**Probing.** The first HASHED_PROBES probes take their slot from successive windows of the
digest, then probing goes on linearly (Kafka reads successive 4-byte windows of the digest,
then probes linearly); about 2.6 probes a key on average while the map fills to 0.9. An
empty slot has a stored word of 0: the offset is stored plus one. A put or a get costs about
0.9 us (0.3 us of it BLAKE2b), next to about 3 us to parse a record (a dict took 0.2 us, but
about 175 bytes a key: 770,000 keys in 128 MiB).

**A full map.** Records are mapped one by one, streamed from each batch (iter_records, never
a list); when a new key does not fit, the map ends at that record's offset, which may lie
inside a batch (Kafka's buildOffsetMap also stops in the middle of a segment). A key already
in the map is always updated (it takes no slot; Kafka's full map stops at any keyed record).
The rewrite keeps every record at or past the map's end, and the next pass starts mapping
there (the first dirty offset), so a dirty section larger than the map, even a single batch
with more keys, is cleaned over several passes. The map holds at least one key whatever the
budget (MIN_SLOTS), so each pass makes progress; and LogCleaner refuses a buffer smaller
than MIN_DEDUPE_BUFFER_BYTES, as Kafka's Cleaner refuses at start an offset map "too small
to fit in even a single message" (slots x load factor <= 1).

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
DIGEST_BYTES: Final = 16
SLOT_BYTES: Final = DIGEST_BYTES + 8  # Kafka's bytesPerEntry with MD5
LOAD_FACTOR: Final = 0.9  # Kafka's log.cleaner.io.buffer.load.factor (its default)
HASHED_PROBES: Final = 9  # probes whose slot comes from the digest, before linear probing
MIN_SLOTS: Final = 2  # the smallest table that holds a key (2 x 0.9 > 1) and an empty slot
_SLOT_WORDS: Final = SLOT_BYTES // 8  # a slot's 8-byte words: digest, digest, offset + 1
_OFFSET_WORD: Final = 2  # the offset's word in its slot, 0 if the slot is empty


def capacity_of(slots: int) -> int:
    """How many keys a table of `slots` slots holds before it is full (Kafka's
    maxDesiredMapSize)."""
    return int(slots * LOAD_FACTOR)


def slots_for(keys: int) -> int:
    """The fewest slots (at least MIN_SLOTS) of a map that holds `keys` keys."""
    slots = max(MIN_SLOTS, -(-keys * 10 // 9))
    while capacity_of(slots) < keys:
        slots += 1
    return slots


MIN_DEDUPE_BUFFER_BYTES: Final = MIN_SLOTS * SLOT_BYTES


class CleaningAborted(Exception):
    """The partition was closed, deleted or changed, or the cleaner is stopping."""


@dataclass(frozen=True, slots=True)
class Source:
    """A segment file to read: a private fd (a dup of the segment's), its size and base."""

    base_offset: int
    fd: int
    size: int
    start: int = 0  # a batch boundary to start reading at


class OffsetMap:
    """key -> offset of its latest record in the mapped part of the dirty section: a table of
    SLOT_BYTES slots within `budget_bytes` (and for at most `max_keys` keys, if given)."""

    __slots__ = ("_room", "_slots", "_table", "_words", "entries")

    def __init__(self, budget_bytes: int, max_keys: int | None = None) -> None:
        slots = max(MIN_SLOTS, budget_bytes // SLOT_BYTES)
        if max_keys is not None:
            slots = min(slots, slots_for(max_keys))
        self._slots = slots
        self._table = bytearray(slots * SLOT_BYTES)
        self._words = memoryview(self._table).cast("q")
        self._room = capacity_of(slots)  # < slots: an empty slot always ends a probe sequence
        self.entries = 0

    @property
    def size_bytes(self) -> int:
        """The table's memory."""
        return len(self._table)

    @property
    def capacity(self) -> int:
        return capacity_of(self._slots)

    def __len__(self) -> int:
        return self.entries

    # put and get probe inline (no shared helper): a call per record costs about 10% here.

    def put(self, key: bytes, offset: int) -> bool:
        """Maps `key` to `offset`; False, changing nothing, if the key is new and the map is
        full."""
        digest = blake2b(key, digest_size=DIGEST_BYTES).digest()
        h = int.from_bytes(digest, "little")
        slots, table, words = self._slots, self._table, self._words
        i = h % slots
        attempt = 0
        while words[_SLOT_WORDS * i + _OFFSET_WORD]:
            if table.startswith(digest, SLOT_BYTES * i):
                words[_SLOT_WORDS * i + _OFFSET_WORD] = offset + 1
                return True
            attempt += 1
            i = (h >> (8 * attempt)) % slots if attempt < HASHED_PROBES else (i + 1) % slots
        if self._room <= 0:
            return False
        self._room -= 1
        self.entries += 1
        table[SLOT_BYTES * i:SLOT_BYTES * i + DIGEST_BYTES] = digest
        words[_SLOT_WORDS * i + _OFFSET_WORD] = offset + 1
        return True

    def get(self, key: bytes) -> int:
        """The latest offset of `key`, -1 if it is not in the map."""
        digest = blake2b(key, digest_size=DIGEST_BYTES).digest()
        h = int.from_bytes(digest, "little")
        slots, table, words = self._slots, self._table, self._words
        i = h % slots
        attempt = 0
        while stored := words[_SLOT_WORDS * i + _OFFSET_WORD]:
            if table.startswith(digest, SLOT_BYTES * i):
                return stored - 1
            attempt += 1
            i = (h >> (8 * attempt)) % slots if attempt < HASHED_PROBES else (i + 1) % slots
        return -1


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
    transactions' batches aside) within `budget_bytes` (a table no larger than the section's
    offsets can fill); returns the map and the offset where
    it ends (`end` unless the map filled up first: then the offset of the first record that
    did not fit, which may lie inside a batch)."""
    omap = OffsetMap(budget_bytes, max_keys=max(0, end - first_dirty))
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
