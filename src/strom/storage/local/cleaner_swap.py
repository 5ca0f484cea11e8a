"""Replacing segments by a cleaned one so that a crash at any point leaves a valid log.

Kafka's protocol (LocalLog.replaceSegments), for sources S1..Sk replaced by a segment with
S1's base offset b:

1. the cleaned batches are written to `b.log.cleaned` and fsynced (cleaner_rewrite);
2. `b.log.cleaned` is renamed to `b.log.swap` and the directory fsynced: the commit point;
3. the index files of S1..Sk and the `.log` files of S2..Sk are unlinked, directory fsynced;
4. `b.log.swap` is renamed over `b.log` (S1's), directory fsynced; then the new indexes are
   saved (they are caches: if a crash loses them they are rebuilt).

`complete_swaps`, run by LogLoader before it lists a partition's segments, finishes or undoes
what a crash interrupted: `.cleaned` files are deleted (the sources are intact); for each
`b.log.swap` (complete and fsynced) the segments whose base offset lies in (b, end of the
swap's batches) and b's indexes are deleted, then the swap is renamed to `b.log`. A cleaned
segment spans exactly its sources' offsets (emptied batches leave empty batches), so that
range is exactly S2..Sk.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from strom.storage.local.batch_scan import scan_batches
from strom.storage.local.files import fsync_dir, unlink_quietly
from strom.storage.local.log_segment import LOG_SUFFIX, segment_name
from strom.storage.local.offset_index import INDEX_SUFFIX
from strom.storage.local.time_index import TIME_INDEX_SUFFIX

log = logging.getLogger(__name__)

CLEANED_SUFFIX: Final = ".cleaned"
SWAP_SUFFIX: Final = ".swap"
_SWAP_FILE: Final = re.compile(r"^(\d{20})\.log\.swap$")
_LOG_FILE: Final = re.compile(r"^(\d{20})\.log$")

CrashHook = Callable[[str], None]  # called after each step, by name; tests raise from it


def _path(directory: Path, base_offset: int, suffix: str) -> Path:
    return directory / (segment_name(base_offset) + suffix)


def cleaned_path(directory: Path, base_offset: int) -> Path:
    return _path(directory, base_offset, LOG_SUFFIX + CLEANED_SUFFIX)


def _unlink_indexes(directory: Path, base_offset: int) -> None:
    unlink_quietly(_path(directory, base_offset, INDEX_SUFFIX))
    unlink_quietly(_path(directory, base_offset, TIME_INDEX_SUFFIX))


def swap_in(directory: Path, base_offset: int, replaced: Sequence[int], hook: CrashHook) -> None:
    """Steps 2-4 (blocking) for the cleaned file of `base_offset`, which replaces the segments
    with base offsets `replaced` (its own first)."""
    swap = _path(directory, base_offset, LOG_SUFFIX + SWAP_SUFFIX)
    os.replace(cleaned_path(directory, base_offset), swap)
    fsync_dir(directory)
    hook("swap")
    for base in replaced:
        _unlink_indexes(directory, base)
        if base != base_offset:
            unlink_quietly(_path(directory, base, LOG_SUFFIX))
    fsync_dir(directory)
    hook("delete")
    os.replace(swap, _path(directory, base_offset, LOG_SUFFIX))
    fsync_dir(directory)
    hook("rename")


def _swap_end(path: Path, base_offset: int) -> int:
    """The offset after the swap file's last valid batch."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        outcome = scan_batches(fd, 0, os.fstat(fd).st_size, base_offset, base_offset,
                               lambda _pos, _h: None)
    finally:
        os.close(fd)
    if outcome.problem is not None:
        log.warning("%s: %s at position %d (recovery will validate it)", path, outcome.problem,
                    outcome.valid_end)
    return outcome.next_offset


def complete_swaps(directory: Path) -> None:
    """Finishes interrupted segment replacements in a partition directory (blocking)."""
    swaps: list[int] = []
    logs: list[int] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(CLEANED_SUFFIX):
                log.info("removing %s: an interrupted cleaning", entry.path)
                unlink_quietly(Path(entry.path))
            elif m := _SWAP_FILE.match(entry.name):
                swaps.append(int(m.group(1)))
            elif m := _LOG_FILE.match(entry.name):
                logs.append(int(m.group(1)))
    for base in sorted(swaps):
        swap = _path(directory, base, LOG_SUFFIX + SWAP_SUFFIX)
        end = _swap_end(swap, base)
        replaced = [b for b in logs if base < b < end]
        log.warning("%s: completing an interrupted swap that replaces %d segment(s)", swap,
                    len(replaced) + 1)
        for b in [base, *replaced]:
            _unlink_indexes(directory, b)
            if b != base:
                unlink_quietly(_path(directory, b, LOG_SUFFIX))
        fsync_dir(directory)
        os.replace(swap, _path(directory, base, LOG_SUFFIX))
        fsync_dir(directory)
