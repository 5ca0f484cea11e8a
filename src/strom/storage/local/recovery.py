"""Opening a partition directory: Kafka's LogLoader, simplified.

* Segment replacements by the LogCleaner that a crash interrupted are completed or undone
  (cleaner_swap.complete_swaps).
* Segment files are listed and sorted by base offset; stray temp files and index files
  without their log are removed.
* After a clean shutdown only the tail of the active segment is validated: the indexes saved
  at close are loaded and the batches after the last offset-index entry are checked.
* After a crash every segment that may hold offsets at or past the recovery point (the offset
  up to which everything was fsynced, from recovery-point-offset-checkpoint) is validated batch
  by batch. The log is truncated at the first torn or corrupt batch and later segments are
  deleted, so only whole, intact batches with consecutive offsets survive.
* Inactive segments below the recovery point are trusted and loaded lazily.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from strom.config.topic import LogConfig
from strom.protocol.batch_header import BATCH_HEADER_SIZE, MAX_TIMESTAMP_OFFSET
from strom.storage.local.batch_scan import MAX_RELATIVE_OFFSET, ScanOutcome, scan_batches
from strom.storage.local.cleaner_swap import complete_swaps
from strom.storage.local.files import TMP_SUFFIX, pread_exact, unlink_quietly
from strom.storage.local.log_segment import LOG_SUFFIX, LogSegment
from strom.storage.local.offset_index import INDEX_SUFFIX, OffsetIndex
from strom.storage.local.time_index import TIME_INDEX_SUFFIX, TimeIndex

log = logging.getLogger(__name__)

_SEGMENT_FILE: Final = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex)$")
_JUNK_SUFFIXES: Final = (TMP_SUFFIX, ".deleted")


@dataclass(slots=True)
class LoadedLog:
    segments: list[LogSegment]  # sorted by base offset; the last one is active and loaded
    log_start_offset: int
    log_end_offset: int


def list_segments(directory: Path, index_bytes: int, now_ms: int) -> list[LogSegment]:
    """The directory's segments, sorted; removes temp files and orphan index files."""
    logs: dict[int, int] = {}
    indexes: list[tuple[int, str]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            m = _SEGMENT_FILE.match(entry.name)
            if m is None:
                if entry.name.endswith(_JUNK_SUFFIXES):
                    unlink_quietly(Path(entry.path))
                continue
            if m.group(2) == LOG_SUFFIX:
                logs[int(m.group(1))] = entry.stat().st_size
            else:
                indexes.append((int(m.group(1)), entry.path))
    for base, path in indexes:
        if base not in logs:
            log.info("removing %s: its segment is gone", path)
            unlink_quietly(Path(path))
    return [LogSegment(directory, base, logs[base], index_bytes, now_ms) for base in sorted(logs)]


class LogLoader:
    """Loads one partition directory; `load()` is blocking (run it off the event loop)."""

    def __init__(self, directory: Path, config: LogConfig, clean_shutdown: bool,
                 log_start_checkpoint: int | None, recovery_point: int | None,
                 now_ms: int) -> None:
        self.directory = directory
        self.config = config
        self.clean_shutdown = clean_shutdown
        self.log_start_checkpoint = log_start_checkpoint if log_start_checkpoint else 0
        self.recovery_point = recovery_point if recovery_point is not None else -1
        self.now_ms = now_ms

    def load(self) -> LoadedLog:
        self.directory.mkdir(parents=True, exist_ok=True)
        complete_swaps(self.directory)  # a LogCleaner swap interrupted by a crash
        segments = list_segments(self.directory, self.config.segment_index_bytes, self.now_ms)
        log_end: int | None
        if not segments:
            segments = [self._new_segment(self.log_start_checkpoint)]
            log_end = self.log_start_checkpoint
        elif self.clean_shutdown:
            log_end = self._load_active_clean(segments[-1])
            if log_end is None:
                log_end = self._recover(segments, len(segments) - 1)
        else:
            log_end = self._recover(segments, self._first_unflushed(segments))
        log_start = max(self.log_start_checkpoint, segments[0].base_offset)
        if log_start > log_end:
            log.warning("%s: log start offset %d is past the log end offset %d; emptying the "
                        "log and starting it at %d", self.directory, log_start, log_end, log_start)
            for seg in segments:
                _delete_now(seg)
            segments = [self._new_segment(log_start)]
            log_end = log_start
        return LoadedLog(segments, log_start, log_end)

    def _new_segment(self, base_offset: int) -> LogSegment:
        return LogSegment.create(self.directory, base_offset, self.config.segment_index_bytes,
                                 self.now_ms)

    def _first_unflushed(self, segments: list[LogSegment]) -> int:
        """Index of the segment holding the recovery point: recovery starts there."""
        for i in range(len(segments) - 1, -1, -1):
            if segments[i].base_offset <= self.recovery_point:
                return i
        return 0

    def _scan(self, seg: LogSegment, start: int, expected_offset: int) -> ScanOutcome:
        interval = self.config.index_interval_bytes
        return scan_batches(seg.fd, start, seg.size, expected_offset, seg.base_offset,
                            lambda pos, h: seg.track_header(pos, h, interval))

    def _load_active_clean(self, seg: LogSegment) -> int | None:
        """After a clean shutdown: the saved indexes, then a check of the batches past the
        last offset-index entry. None if anything is off (then the segment is recovered)."""
        seg.open_for_append()
        if seg.size == 0:
            seg.loaded = True
            return seg.base_offset
        oi = OffsetIndex.load(seg.path(INDEX_SUFFIX), seg.offset_index.max_entries,
                              MAX_RELATIVE_OFFSET + 1, max(seg.size, 1))
        ti = TimeIndex.load(seg.path(TIME_INDEX_SUFFIX), seg.time_index.max_entries,
                            MAX_RELATIVE_OFFSET + 1)
        if oi is None or ti is None:
            log.info("%s: indexes missing or damaged; validating the whole segment", seg.log_path)
            return None
        seg.offset_index, seg.time_index = oi, ti
        last_time = ti.last_entry()
        if last_time is not None:
            seg.max_timestamp = last_time[0]
            seg.offset_of_max_timestamp = seg.base_offset + last_time[1]
        entry = oi.last_entry()
        start, expected = (entry[1], seg.base_offset + entry[0]) if entry else (0, seg.base_offset)
        if start > 0:
            first = pread_exact(seg.fd, BATCH_HEADER_SIZE, 0)
            if len(first) == BATCH_HEADER_SIZE:
                seg.rolling_timestamp = int.from_bytes(
                    first[MAX_TIMESTAMP_OFFSET:MAX_TIMESTAMP_OFFSET + 8], "big", signed=True)
        outcome = self._scan(seg, start, expected)
        if outcome.problem is not None:
            log.warning("%s: %s at position %d after a clean shutdown; validating the whole "
                        "segment", seg.log_path, outcome.problem, outcome.valid_end)
            _reset(seg)
            return None
        saved_ts, saved_rel = last_time if last_time is not None else (-1, -1)
        if seg.base_offset + saved_rel >= outcome.next_offset or seg.max_timestamp > saved_ts:
            log.warning("%s: the time index disagrees with the log; rebuilding", seg.log_path)
            _reset(seg)
            return None
        seg.loaded = True
        return outcome.next_offset

    def _recover(self, segments: list[LogSegment], first: int) -> int:
        """Validates segments[first:], truncating at the first bad batch and deleting the
        segments after it; returns the log end offset."""
        expected = segments[first].base_offset
        i = first
        while i < len(segments):
            seg = segments[i]
            if seg.base_offset != expected:
                log.warning("%s: segment base %d where offset %d was expected; deleting it and "
                            "the %d later segment(s)", self.directory, seg.base_offset, expected,
                            len(segments) - i - 1)
                break
            seg.open_for_append()
            _reset(seg)
            outcome = self._scan(seg, 0, seg.base_offset)
            expected = outcome.next_offset
            if outcome.problem is not None:
                log.warning("%s: %s at position %d; truncating %d bytes and deleting %d later "
                            "segment(s)", seg.log_path, outcome.problem, outcome.valid_end,
                            seg.size - outcome.valid_end, len(segments) - i - 1)
                seg.truncate_to(outcome.valid_end)
                i += 1
                break
            i += 1
        for seg in segments[i:]:
            _delete_now(seg)
        del segments[i:]
        for seg in segments[first:]:
            seg.loaded = True
            if seg is segments[-1]:
                os.fsync(seg.fd)  # so that the recovery point can be the log end offset
                seg.index_dirty = True  # the files may be stale: save the rebuilt ones
            else:
                seg.on_become_inactive()
                seg.persist()
        return expected


def _reset(seg: LogSegment) -> None:
    """Forgets what was learnt about a segment's content, to scan it from the start."""
    seg.offset_index = OffsetIndex(seg.offset_index.max_entries)
    seg.time_index = TimeIndex(seg.time_index.max_entries)
    seg.max_timestamp = seg.offset_of_max_timestamp = seg.rolling_timestamp = -1
    seg.bytes_since_index = 0


def _delete_now(seg: LogSegment) -> None:
    fd = seg.detach_fd()
    if fd >= 0:
        os.close(fd)
    seg.delete_files()

