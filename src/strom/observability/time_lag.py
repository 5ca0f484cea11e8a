"""Consumer groups' time lag at scrape time: how old the oldest record a group has not consumed
is (now minus the timestamp of the record at its committed offset; 0 once caught up).

The record is read through the storage engine's read API, which may await, so the HTTP handler
awaits `TimeLag.refresh()` before rendering (as `StorageCollector.refresh()`). Timestamps are
cached by (topic, partition, offset): a committed offset that did not move costs no read, and
each refresh reads at most `MAX_READS_PER_REFRESH` new offsets (the others follow at later
scrapes), so a scrape's work is bounded whatever the number of groups.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.group_runtime import GroupRuntime
from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.protocol.record_errors import RecordsError
from strom.protocol.records import iter_records
from strom.storage.api import StorageEngine, StorageError, chunks_bytes

log = logging.getLogger(__name__)

MAX_READS_PER_REFRESH: Final = 100
READ_BYTES: Final = 64 * 1024  # past a transaction marker or two at the committed offset
MAX_DECOMPRESSED_BYTES: Final = 8 * 2**20  # one batch's records, to find the offset's
REFRESH_TIMEOUT_S: Final = 5.0

GroupPartition = tuple[str, str, int]  # (group, topic, partition)
Offsets = Callable[[], Mapping[tuple[str, int], int]]


def record_timestamp(data: bytes, offset: int) -> int | None:
    """The timestamp of the first data record at or after `offset` in `data` (whole batches,
    as a read returns them); None if `data` holds none (only markers, or nothing)."""
    view = memoryview(data)
    pos = 0
    while pos + BATCH_HEADER_SIZE <= len(view):
        header = read_batch_header(view, pos)
        if header.size < BATCH_HEADER_SIZE or pos + header.size > len(view):
            return None  # a partial batch at the end of the read
        batch = view[pos: pos + header.size]
        pos += header.size
        if header.is_control or header.next_offset <= offset:
            continue
        if header.is_log_append_time:
            return header.max_timestamp
        for record in iter_records(batch, max_decompressed_bytes=MAX_DECOMPRESSED_BYTES):
            if header.base_offset + record.offset_delta >= offset:
                return header.base_timestamp + record.timestamp_delta
    return None


def lag_seconds(timestamp_ms: int, now_ms: int) -> float:
    """How old a record is, in seconds (0 for one from the future: clocks differ)."""
    return max(now_ms - timestamp_ms, 0) / 1000


class TimeLag:
    """Each committed partition's time lag, as of the last refresh."""

    def __init__(self, groups: GroupRuntime, engine: StorageEngine, log_ends: Offsets,
                 clock: Callable[[], int]) -> None:
        self.groups = groups
        self.engine = engine
        self.log_ends = log_ends
        self.clock = clock
        self.cache: dict[tuple[str, int, int], int] = {}  # the record's timestamp
        self.lags: dict[GroupPartition, float] = {}

    def committed(self) -> Iterator[tuple[GroupPartition, int]]:
        """((group, topic, partition), committed offset) of the loaded shards' groups."""
        for shard in self.groups.runtime.shards():
            if shard.status is not ShardStatus.ACTIVE:
                continue
            core = shard.core
            for listing in core.list_groups():
                _, offsets = core.fetch_offsets(listing.group_id, None)
                for (topic, partition), committed in offsets.items():
                    if committed.offset >= 0:
                        yield (listing.group_id, topic, partition), committed.offset

    async def refresh(self) -> None:
        try:
            await asyncio.wait_for(self._refresh(), REFRESH_TIMEOUT_S)
        except TimeoutError:
            log.warning("metrics: reading the records at committed offsets took too long")

    async def _refresh(self) -> None:
        ends = self.log_ends()
        now_ms = self.clock()
        lags: dict[GroupPartition, float] = {}
        used: set[tuple[str, int, int]] = set()
        reads = 0
        for key, offset in sorted(self.committed()):
            _, topic, partition = key
            end = ends.get((topic, partition))
            if end is None:  # another broker serves it (or it is gone)
                continue
            if offset >= end:
                lags[key] = 0.0
                continue
            at = (topic, partition, offset)
            used.add(at)
            timestamp = self.cache.get(at)
            if timestamp is None:  # not read yet, or nothing found then: read (bounded)
                if reads >= MAX_READS_PER_REFRESH:
                    continue
                reads += 1
                timestamp = await self._read(topic, partition, offset)
                if timestamp is None:
                    continue
                self.cache[at] = timestamp
            lags[key] = lag_seconds(timestamp, now_ms)
        for at in [k for k in self.cache if k not in used]:
            del self.cache[at]
        self.lags = lags

    async def _read(self, topic: str, partition: int, offset: int) -> int | None:
        try:
            plog = self.engine.partition(topic, partition)
            # Below the log start (retention went past the group): the oldest record left.
            offset = max(offset, (await plog.offsets()).log_start)
            result = await plog.read(offset, READ_BYTES, True)
            return record_timestamp(chunks_bytes(result.chunks), offset)
        except (StorageError, OSError, RecordsError) as exc:
            log.debug("metrics: no time lag for %s-%d at %d: %s", topic, partition, offset,
                      exc)
            return None
