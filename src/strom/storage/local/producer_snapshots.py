"""Producer state snapshots (`<offset>.snapshot`, Kafka's names) and rebuilding the state.

A snapshot named `o` holds the producer state after every batch below offset `o`. It is
written when a segment rolls (after the rolled segment is fsynced, so it never describes data
that a crash can lose) and at a clean close; the two newest are kept. At open, the newest
readable snapshot at or below the recovered log end offset is loaded and the batches from its
offset to the log end are replayed (`apply_batch`, in log order). Snapshots past the log end
(the log lost data in a crash) are deleted. With no usable snapshot the whole log is replayed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from strom.protocol.batch_header import BatchHeader
from strom.protocol.control_batch import CONTROL_KEY_WINDOW, control_type
from strom.storage.local.batch_scan import scan_batches
from strom.storage.local.files import unlink_quietly, write_atomic
from strom.storage.local.log_segment import LogSegment
from strom.storage.producer_state import ProducerStateManager

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX: Final = ".snapshot"
SNAPSHOTS_KEPT: Final = 2
MAX_SNAPSHOT_BYTES: Final = 256 * 1024 * 1024
_SNAPSHOT_FILE: Final = re.compile(r"^(\d{20})\.snapshot$")


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def list_snapshots(directory: Path) -> list[int]:
    """Offsets of the directory's snapshots, ascending."""
    offsets = []
    with os.scandir(directory) as entries:
        for entry in entries:
            m = _SNAPSHOT_FILE.match(entry.name)
            if m is not None:
                offsets.append(int(m.group(1)))
    return sorted(offsets)


def write_snapshot(directory: Path, offset: int, data: bytes) -> None:
    """Writes (fsynced, atomically) the snapshot at `offset`, then deletes all but the
    SNAPSHOTS_KEPT newest (blocking)."""
    write_atomic(snapshot_path(directory, offset), data)
    for old in list_snapshots(directory)[:-SNAPSHOTS_KEPT]:
        unlink_quietly(snapshot_path(directory, old))


def _read(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > MAX_SNAPSHOT_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def load_latest(directory: Path, tracker: ProducerStateManager, log_end_offset: int) -> int:
    """Loads the newest valid snapshot at or below `log_end_offset` into `tracker` and deletes
    those above it; returns its offset, or -1 if there is none (the tracker stays empty)."""
    offsets = list_snapshots(directory)
    for offset in offsets:
        if offset > log_end_offset:
            log.info("%s: deleting producer state snapshot %d past the log end %d", directory,
                     offset, log_end_offset)
            unlink_quietly(snapshot_path(directory, offset))
    for offset in reversed([o for o in offsets if o <= log_end_offset]):
        data = _read(snapshot_path(directory, offset))
        if data is None:
            continue
        try:
            tracker.load_snapshot(data)
        except ValueError as exc:
            log.warning("%s: ignoring producer state snapshot %d: %s", directory, offset, exc)
            continue
        return offset
    return -1


def read_control_type(fd: int, pos: int, h: BatchHeader) -> int | None:
    """The marker type of the control batch at `pos` of `fd` (a small pread), None if it is
    unreadable (logged; it then closes no transaction)."""
    data = os.pread(fd, min(h.size, CONTROL_KEY_WINDOW), pos)
    try:
        return control_type(data)
    except ValueError as exc:
        log.warning("the control batch at offset %d is unreadable: %s", h.base_offset, exc)
        return None


def replay(segments: Sequence[LogSegment], tracker: ProducerStateManager,
           from_offset: int) -> int:
    """Applies the headers of every batch whose last offset is >= from_offset, in log order,
    with the marker type of control batches (blocking; opens and closes its own fds).
    Returns how many batches were applied."""
    applied = 0
    fd = -1

    def on_batch(pos: int, h: BatchHeader) -> None:
        nonlocal applied
        if h.last_offset >= from_offset:
            kind = read_control_type(fd, pos, h) if h.is_control else None
            tracker.apply_batch(h, kind)
            applied += 1

    for i, seg in enumerate(segments):
        nxt = segments[i + 1].base_offset if i + 1 < len(segments) else None
        if nxt is not None and nxt <= from_offset:
            continue
        fd = os.open(seg.log_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            outcome = scan_batches(fd, 0, size, seg.base_offset, seg.base_offset, on_batch)
        finally:
            os.close(fd)
        if outcome.problem is not None:
            log.warning("%s: replaying producer state stopped at position %d: %s",
                        seg.log_path, outcome.valid_end, outcome.problem)
            break
    return applied


def rebuild(directory: Path, segments: Sequence[LogSegment], tracker: ProducerStateManager,
            log_end_offset: int, now_ms: int) -> int:
    """Loads the newest snapshot and replays the log after it (blocking); returns the
    loaded snapshot's offset (-1 if none)."""
    start = load_latest(directory, tracker, log_end_offset)
    if start < log_end_offset:
        applied = replay(segments, tracker, max(start, 0))
        log.debug("%s: producer state replayed %d batch(es) from offset %d", directory,
                  applied, max(start, 0))
    tracker.expire(now_ms)
    return start
