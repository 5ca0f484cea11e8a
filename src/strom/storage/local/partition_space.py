"""PartitionSpace: how a LocalPartitionLog refuses appends while its disk is full and takes
them again by itself (no_space.py explains the episode).

Before an append (and before the producer checks of a client's append, so that the check and
the write still run with no await in between), `_ensure_writable` lets the append through, or
raises LogDirFull, or, at most every RETRY_INTERVAL_S, repairs first under the maintenance
lock (so retention and close wait): the active segment's file is cut back to the bytes the
partition knows (a failed append's partial bytes, should its own truncation have failed), the
batches after its last offset-index entry are validated (CRC, consecutive offsets ending at
the log end offset, timestamps within the time index's), and the rolled segments whose
indexes could not be saved are saved. The producer state needs no repair: a batch is applied
to it only after its write succeeded, so a batch whose write failed was never acknowledged,
is not in the log and is not a duplicate when it is retried.
"""

from __future__ import annotations

import asyncio
import logging
import os

from strom.protocol.batch_header import BatchHeader
from strom.storage.api import CorruptLog
from strom.storage.local.batch_scan import scan_batches
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.partition_state import PartitionState

log = logging.getLogger(__name__)


class PartitionSpace(PartitionState):
    """The no-space episode of a partition, seen from its append path."""

    async def _ensure_writable(self) -> None:
        """Returns at once (no await) when the partition takes writes; raises LogDirFailure
        if it is offline, LogDirFull while its disk is full and no repair is due."""
        self._check_open()
        episode = self._flusher.no_space
        if episode is None or episode.repaired:
            return
        if not episode.due():
            raise episode.refuse()
        episode.attempt_started()
        async with self._maintenance:
            self._check_open()
            if self._flusher.no_space is not episode:  # ended, or another one began
                raise episode.refuse()
            try:
                await self._repair_after_no_space()
            except CorruptLog as exc:
                raise self._flusher.fail(f"{self.directory.name}: re-validating the tail "
                                         "after a full disk", exc) from exc
        episode.repaired = True
        self._check_open()

    async def _repair_after_no_space(self) -> None:
        """Cuts and validates the active segment's tail, then saves the rolled segments'
        indexes that waited for space; raises LogDirFull if there is still none."""
        seg, leo = self._active, self._leo
        await asyncio.to_thread(_validate_tail, seg, leo)
        self._check_open()
        await self._flusher.save_unsaved(lambda s: s in self._segments)


def _validate_tail(seg: LogSegment, log_end_offset: int) -> None:
    """Blocking. The segment file holds exactly the batches the partition knows: bytes past
    them (a failed write) are cut off; CorruptLog if the file is shorter or its batches after
    the last offset-index entry do not end at `log_end_offset` or exceed the time index."""
    size = os.fstat(seg.fd).st_size
    if size < seg.size:
        raise CorruptLog(f"{seg.log_path} has {size} bytes, fewer than the {seg.size} written")
    if size > seg.size:
        log.warning("%s: cutting %d bytes of a failed append", seg.log_path, size - seg.size)
        os.ftruncate(seg.fd, seg.size)
    entry = seg.offset_index.last_entry()
    start, expected = ((entry[1], seg.base_offset + entry[0]) if entry is not None
                       else (0, seg.base_offset))
    largest = -1

    def note(_: int, h: BatchHeader) -> None:
        nonlocal largest
        largest = max(largest, h.max_timestamp)

    outcome = scan_batches(seg.fd, start, seg.size, expected, seg.base_offset, note)
    if outcome.problem is not None:
        raise CorruptLog(f"{seg.log_path} at position {outcome.valid_end}: {outcome.problem}")
    if outcome.next_offset != log_end_offset:
        raise CorruptLog(f"{seg.log_path}: the batches end at offset {outcome.next_offset}, "
                         f"the log at {log_end_offset}")
    if largest > seg.max_timestamp:
        raise CorruptLog(f"{seg.log_path}: a batch's timestamp {largest} is past the "
                         f"segment's largest known one, {seg.max_timestamp}")
