"""LogSegment: one `<base offset>.log` file of whole batches plus its OffsetIndex and TimeIndex.

Only the last (active) segment of a partition is written, always at its end. Inactive segments
are immutable; they are opened and their indexes loaded lazily, on first use.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    set_base_offset,
)
from strom.storage.api import AppendBatch, CorruptLog
from strom.storage.local.batch_scan import MIN_BATCH_LENGTH, scan_batches
from strom.storage.local.files import fsync_dir, pread_exact, unlink_quietly
from strom.storage.local.offset_index import ENTRY_SIZE as OFFSET_ENTRY_SIZE
from strom.storage.local.offset_index import INDEX_SUFFIX, OffsetIndex
from strom.storage.local.time_index import ENTRY_SIZE as TIME_ENTRY_SIZE
from strom.storage.local.time_index import TIME_INDEX_SUFFIX, TimeIndex, peek_last_entry

log = logging.getLogger(__name__)

LOG_SUFFIX: Final = ".log"
# base_offset, batch_length, leader_epoch, magic, crc, attributes, last_offset_delta,
# base_timestamp, max_timestamp: the first 43 bytes of a v2 batch header.
_PREFIX: Final = struct.Struct(">qiibIhiqq")
# batch_length, magic, last_offset_delta, max_timestamp (bytes 8..43) of a batch to append.
_APPEND_CHECK: Final = struct.Struct(">i4xb4x2xi8xq")
_SCAN_CHUNK: Final = 16 * 1024
_IOV_MAX: Final = 1024
_OPEN_APPEND: Final = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
_OPEN_READ: Final = os.O_RDONLY | os.O_CLOEXEC

# Fields of a header prefix tuple, as yielded by LogSegment.iter_headers.
H_BASE_OFFSET: Final = 0
H_LENGTH: Final = 1
H_ATTRIBUTES: Final = 5
H_LAST_DELTA: Final = 6
H_BASE_TIMESTAMP: Final = 7
H_MAX_TIMESTAMP: Final = 8


def segment_name(base_offset: int) -> str:
    """Kafka's file name stem: the base offset, 20 digits, zero padded."""
    return f"{base_offset:020d}"


def _write_all(fd: int, bufs: Sequence[bytearray]) -> None:
    for i in range(0, len(bufs), _IOV_MAX):
        chunk = bufs[i:i + _IOV_MAX]
        written = os.writev(fd, chunk)
        total = sum(len(b) for b in chunk)
        if written < total:  # rare: a signal or a nearly full disk
            rest = memoryview(b"".join(chunk))[written:]
            while rest:
                rest = rest[os.write(fd, rest):]


class LogSegment:
    """A segment's in-memory state; positions and relative offsets fit in int32."""

    __slots__ = ("_load_lock", "_peeked", "base_offset", "bytes_since_index", "created_ms",
                 "directory", "fd", "index_dirty", "loaded", "max_timestamp",
                 "offset_index", "offset_of_max_timestamp", "rolling_timestamp", "size",
                 "time_index")

    def __init__(self, directory: Path, base_offset: int, size: int, index_bytes: int,
                 created_ms: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.size = size
        self.fd = -1
        self.loaded = False
        self.offset_index = OffsetIndex(max(1, index_bytes // OFFSET_ENTRY_SIZE))
        self.time_index = TimeIndex(max(1, index_bytes // TIME_ENTRY_SIZE))
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.rolling_timestamp = -1  # the first batch's max timestamp (Kafka's segment.ms base)
        self.created_ms = created_ms
        self.bytes_since_index = 0
        self.index_dirty = False
        self._peeked: tuple[int, int] | None = None
        self._load_lock = threading.Lock()

    # -- files --------------------------------------------------------------------------

    def path(self, suffix: str) -> Path:
        return self.directory / (segment_name(self.base_offset) + suffix)

    @property
    def log_path(self) -> Path:
        return self.path(LOG_SUFFIX)

    @classmethod
    def create(cls, directory: Path, base_offset: int, index_bytes: int,
               now_ms: int) -> LogSegment:
        """A new empty active segment (an existing file of that name is emptied)."""
        seg = cls(directory, base_offset, 0, index_bytes, now_ms)
        seg.fd = os.open(seg.log_path, _OPEN_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        seg.loaded = True
        seg.index_dirty = True
        return seg

    def open_for_append(self) -> None:
        if self.fd < 0:
            self.fd = os.open(self.log_path, _OPEN_APPEND)

    def detach_fd(self) -> int:
        """Hands the fd over (to be closed after a grace period); -1 if it was not open."""
        fd, self.fd = self.fd, -1
        return fd

    def delete_files(self) -> None:
        """Unlinks the log first, so a crash leaves at worst orphan indexes (removed on open)."""
        unlink_quietly(self.log_path)
        unlink_quietly(self.path(INDEX_SUFFIX))
        unlink_quietly(self.path(TIME_INDEX_SUFFIX))

    def persist(self) -> None:
        """fsyncs the log, then writes both indexes (blocking; run it in a thread)."""
        self.sync_log()
        self.save_indexes()

    def sync_log(self) -> None:
        """fsyncs the log (blocking). After a failure the kernel may have dropped the dirty
        pages: never retry it as if nothing happened."""
        if self.fd >= 0:
            os.fsync(self.fd)

    def save_indexes(self) -> None:
        """Writes both indexes and fsyncs the directory (blocking). A failure (a full disk)
        leaves the previous index files in place and may be retried."""
        self.offset_index.save(self.path(INDEX_SUFFIX))
        self.time_index.save(self.path(TIME_INDEX_SUFFIX))
        fsync_dir(self.directory)
        self.index_dirty = False

    def truncate_to(self, position: int) -> None:
        """Cuts the log at `position`, the end of the last valid batch of a full scan (whose
        index entries are therefore all before it)."""
        os.ftruncate(self.fd, position)
        self.size = position
        self.offset_index.truncate_to_position(position)
        self.index_dirty = True

    # -- append -------------------------------------------------------------------------

    def append(self, batches: Sequence[AppendBatch], first_offset: int,
               index_interval: int) -> int:
        """Writes the batches at the end with offsets from `first_offset`; returns the next
        offset. Either all batches are written or (on an I/O error) none."""
        offset = first_offset
        datas: list[bytearray] = []
        max_timestamps: list[int] = []
        for b in batches:
            data = b.data
            if len(data) < BATCH_HEADER_SIZE:
                raise CorruptLog(f"a batch of {len(data)} bytes is shorter than its header")
            length, magic, last_delta, max_ts = _APPEND_CHECK.unpack_from(data, 8)
            if (length != len(data) - LOG_OVERHEAD or magic != 2
                    or last_delta != b.record_count - 1):
                raise CorruptLog("batch length, magic or record count disagree with its header")
            set_base_offset(data, 0, offset, 0)
            offset += b.record_count
            datas.append(data)
            max_timestamps.append(max_ts)  # the header's, as recovery will see it
        position = self.size
        try:
            _write_all(self.fd, datas)
        except BaseException:
            os.ftruncate(self.fd, position)
            raise
        if position == 0:
            self.rolling_timestamp = max_timestamps[0]
        offset = first_offset
        for b, max_ts in zip(batches, max_timestamps, strict=True):
            size = len(b.data)
            last = offset + b.record_count - 1
            self.track(position, offset, last, max_ts, size, index_interval)
            position += size
            offset = last + 1
        self.size = position
        self.index_dirty = True
        return offset

    def track(self, position: int, base: int, last: int, max_ts: int, size: int,
              index_interval: int) -> None:
        """Updates the max timestamp and the sparse indexes for one batch (Kafka's rule: an
        entry before a batch once more than index.interval.bytes were written since the last)."""
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
            self.offset_of_max_timestamp = last
        if self.bytes_since_index > index_interval:
            self.offset_index.append(base - self.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp,
                                         self.offset_of_max_timestamp - self.base_offset)
            self.bytes_since_index = 0
        self.bytes_since_index += size

    def track_header(self, position: int, h: BatchHeader, index_interval: int) -> None:
        if position == 0:
            self.rolling_timestamp = h.max_timestamp
        self.track(position, h.base_offset, h.last_offset, h.max_timestamp, h.size,
                   index_interval)

    def on_become_inactive(self) -> None:
        """Makes the time index's last entry the segment's largest timestamp (roll, close)."""
        if self.max_timestamp >= 0:
            before = len(self.time_index)
            self.time_index.maybe_append(self.max_timestamp,
                                         self.offset_of_max_timestamp - self.base_offset,
                                         skip_full_check=True)
            self.index_dirty |= len(self.time_index) != before

    def is_index_full(self) -> bool:
        return self.offset_index.is_full or self.time_index.is_full

    # -- lazy loading of inactive segments -----------------------------------------------

    def ensure_loaded(self, max_relative_offset: int, index_interval: int) -> None:
        """Opens the file and loads (or rebuilds and saves) the indexes; blocking, run it in a
        thread. `max_relative_offset` is next segment's base offset - base_offset."""
        with self._load_lock:
            if not self.loaded:
                self._load(max_relative_offset, index_interval)

    def _load(self, max_relative_offset: int, index_interval: int) -> None:
        if self.fd < 0:
            self.fd = os.open(self.log_path, _OPEN_READ)
        oi = OffsetIndex.load(self.path(INDEX_SUFFIX), self.offset_index.max_entries,
                              max_relative_offset, max(self.size, 1))
        ti = TimeIndex.load(self.path(TIME_INDEX_SUFFIX), self.time_index.max_entries,
                            max_relative_offset)
        if oi is None or ti is None or not self._tail_agrees(oi, ti, max_relative_offset):
            self.rebuild_indexes(max_relative_offset, index_interval)
            self.on_become_inactive()
            self.persist()
        else:
            self.offset_index, self.time_index = oi, ti
            last = ti.last_entry()
            if last is not None:
                self.max_timestamp = last[0]
                self.offset_of_max_timestamp = self.base_offset + last[1]
        self.loaded = True

    def _tail_agrees(self, oi: OffsetIndex, ti: TimeIndex, max_relative_offset: int) -> bool:
        """Checks loaded indexes against the batches after the last offset-index entry: that
        entry starts a batch with its offset, the batches reach the end of the file, and the
        time index's last entry (the segment's largest timestamp) is not smaller than theirs."""
        entry = oi.last_entry()
        start, expected = (entry[1], self.base_offset + entry[0]) if entry else (0,
                                                                                 self.base_offset)
        tail_max = -1
        try:
            for _, h in self.iter_headers(start):
                if h[H_BASE_OFFSET] != expected:
                    return False
                expected = h[H_BASE_OFFSET] + h[H_LAST_DELTA] + 1
                tail_max = max(tail_max, h[H_MAX_TIMESTAMP])
        except CorruptLog:
            return False
        last = ti.last_entry()
        largest, largest_rel = last if last is not None else (-1, -1)
        return (expected - self.base_offset <= max_relative_offset and tail_max <= largest
                and largest_rel < expected - self.base_offset)

    def rebuild_indexes(self, max_relative_offset: int, index_interval: int) -> None:
        """Rebuilds the indexes by validating every batch; CorruptLog if one is bad."""
        log.warning("rebuilding the indexes of %s", self.log_path)
        self.offset_index = OffsetIndex(self.offset_index.max_entries)
        self.time_index = TimeIndex(self.time_index.max_entries)
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self.bytes_since_index = 0
        outcome = scan_batches(self.fd, 0, self.size, self.base_offset, self.base_offset,
                               lambda pos, h: self.track_header(pos, h, index_interval))
        overlaps = outcome.next_offset - self.base_offset > max_relative_offset
        if outcome.problem is not None or overlaps:
            raise CorruptLog(f"{self.log_path} at position {outcome.valid_end}: "
                             f"{outcome.problem or 'offsets overlap the next segment'}")

    def largest_timestamp(self, max_relative_offset: int) -> tuple[int, int] | None:
        """(largest timestamp, its offset) or (-1, -1) if none; None if the segment must be
        loaded to know. Cheap for inactive segments: it reads the time index's last entry."""
        if self.loaded:
            return self.max_timestamp, self.offset_of_max_timestamp
        if self._peeked is None:
            entry = peek_last_entry(self.path(TIME_INDEX_SUFFIX), max_relative_offset)
            if entry is None:
                return None
            ts, rel = entry
            self._peeked = (ts, self.base_offset + rel if ts >= 0 else -1)
        return self._peeked

    # -- reads ---------------------------------------------------------------------------

    def iter_headers(self, start: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """(position, header prefix) of each batch from `start` (a batch boundary) to the end.
        Raises CorruptLog on an implausible header: the indexes or the file lie."""
        fd, end = self.fd, self.size
        pos = start
        buf = b""
        buf_start = buf_end = start
        while pos < end:
            if pos + _PREFIX.size > buf_end:
                buf = pread_exact(fd, min(_SCAN_CHUNK, end - pos), pos)
                buf_start, buf_end = pos, pos + len(buf)
                if len(buf) < _PREFIX.size:
                    raise CorruptLog(f"{self.log_path}: a truncated batch header at {pos}")
            h = _PREFIX.unpack_from(buf, pos - buf_start)
            length = h[H_LENGTH]
            if length < MIN_BATCH_LENGTH or h[3] != 2 or pos + LOG_OVERHEAD + length > end:
                raise CorruptLog(f"{self.log_path}: an implausible batch header at {pos}")
            yield pos, h
            pos += LOG_OVERHEAD + length

    def find_batch(self, offset: int) -> tuple[int, int] | None:
        """(position, size) of the batch containing `offset`, None if past this segment."""
        start = self.offset_index.lookup(offset - self.base_offset)
        for pos, h in self.iter_headers(start):
            if h[H_BASE_OFFSET] + h[H_LAST_DELTA] >= offset:
                if h[H_BASE_OFFSET] > offset:
                    raise CorruptLog(f"{self.log_path}: offset {offset} is missing")
                return pos, LOG_OVERHEAD + h[H_LENGTH]
        return None

    def find_end(self, start: int, budget: int) -> int:
        """The end of the longest run of whole batches from `start` within `budget` bytes."""
        limit = start + budget
        if self.size <= limit:
            return self.size
        pos = max(start, self.offset_index.position_floor(limit))
        for p, h in self.iter_headers(pos):
            if p + LOG_OVERHEAD + h[H_LENGTH] > limit:
                return p
        return self.size

    def read_batch(self, position: int, size: int) -> bytes:
        data = pread_exact(self.fd, size, position)
        if len(data) != size:
            raise CorruptLog(f"{self.log_path}: short read at {position}")
        return data
