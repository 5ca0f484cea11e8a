"""Compaction of a PostgreSQL partition with the local engine's per-batch rules
(storage/local/cleaner_rewrite.filter_batch: Kafka's Cleaner.shouldRetainRecord, delete
horizons for tombstones and markers, aborted transactions' data removed, each producer's last
batch kept as a header).

A pass reads the cleanable range twice, a page of rows at a time: first to map each key to
the offset of its last record (an OffsetMap bounded by log.cleaner.dedupe.buffer.size: if the
keys do not fit, the pass cleans the part they cover and the next pass goes on), then to filter
every batch of the mapped part; changed batches are rewritten in place (same base offset) and
emptied ones deleted, in one transaction. The cleanable range ends at the first open
transaction and before the first batch newer than min.compaction.lag.ms. A pass runs when
batches arrived since the last one, or when a kept tombstone's or marker's delete horizon has
passed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from strom.protocol.batch_header import read_batch_header
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import NotLeader
from strom.storage.local.cleaner_map import AbortedIndex, OffsetMap
from strom.storage.local.cleaner_rewrite import RetentionRules, filter_batch
from strom.storage.local.cleaner_txn import TxnMarkers

if TYPE_CHECKING:
    from strom.storage.postgres.partition import PostgresPartitionLog

PAGE_ROWS: Final = 500
PAGE: Final = """
SELECT base_offset, data FROM strom_batch
WHERE partition_id = $1 AND base_offset >= $2 AND base_offset < $3
ORDER BY base_offset LIMIT $4
"""
FIRST_YOUNG: Final = """
SELECT min(base_offset) FROM strom_batch WHERE partition_id = $1 AND max_timestamp > $2
"""
REWRITE: Final = """
UPDATE strom_batch SET data = $3::bytea, size = octet_length($3::bytea), max_timestamp = $4
WHERE partition_id = $1 AND base_offset = $2
"""
DROP: Final = "DELETE FROM strom_batch WHERE partition_id = $1 AND base_offset = $2"
HELD: Final = """
SELECT 1 FROM strom_partition WHERE partition_id = $1 AND leader_epoch = $2 FOR SHARE
"""


class CleanerProgress:
    """Per partition: where the last pass ended, and the earliest delete horizon it left."""

    __slots__ = ("cleaned_to", "pending_horizon_ms")

    def __init__(self) -> None:
        self.cleaned_to = -1
        self.pending_horizon_ms: int | None = None

    def due(self, committed: int, now_ms: int) -> bool:
        if committed > self.cleaned_to:
            return True
        return self.pending_horizon_ms is not None and now_ms >= self.pending_horizon_ms


async def _pages(plog: PostgresPartitionLog, start: int, end: int
                 ) -> AsyncIterator[list[tuple[int, bytes]]]:
    while start < end:
        with plog.db.health.statement(f"compaction of {plog.name}"):
            rows = await plog.db.pool.fetch(PAGE, plog.partition_id, start, end, PAGE_ROWS)
        if not rows:
            return
        yield [(r["base_offset"], r["data"]) for r in rows]
        start = rows[-1]["base_offset"] + 1


async def _cleanable_end(plog: PostgresPartitionLog, now_ms: int) -> int:
    end = plog.committed
    unstable = plog.state.first_unstable_offset()
    if unstable is not None:
        end = min(end, unstable)
    lag = plog.config.min_compaction_lag_ms
    if lag > 0:
        with plog.db.health.statement(f"compaction of {plog.name}"):
            young = await plog.db.pool.fetchval(FIRST_YOUNG, plog.partition_id, now_ms - lag)
        if young is not None:
            end = min(end, young)
    return end


async def _offset_map(plog: PostgresPartitionLog, end: int, aborted: AbortedIndex,
                      budget_bytes: int, max_decompressed_bytes: int) -> tuple[OffsetMap, int]:
    """The map of [log start, map end) and the map end (< end if the keys overflowed)."""
    # No larger than the range's offsets need (allocating the whole budget for a small
    # partition would stall the event loop for nothing).
    omap = OffsetMap(budget_bytes, max_keys=max(end - plog.log_start, 1))
    async for page in _pages(plog, 0, end):
        for base, data in page:
            h = read_batch_header(data)
            if h.is_control or aborted.aborted(h):
                continue
            try:
                records = list(iter_records(data, max_decompressed_bytes=max_decompressed_bytes))
            except RecordsError:
                continue  # an unreadable batch is kept as it is (filter_batch does the same)
            if len({r.key for r in records if r.key is not None}) > omap.capacity - len(omap):
                return omap, base  # this batch's keys may not fit: the map stops before it
            for r in records:
                if r.key is not None:
                    omap.put(r.key, base + r.offset_delta)
    return omap, end


async def compact(plog: PostgresPartitionLog, progress: CleanerProgress, now_ms: int,
                  budget_bytes: int, max_decompressed_bytes: int) -> bool:
    """One pass if one is due; returns whether it changed the log."""
    if plog.closed or not progress.due(plog.committed, now_ms):
        return False
    if plog.committed == plog.log_start:  # empty
        progress.cleaned_to = plog.committed
        return False
    async with plog.maintenance_lock:
        end = await _cleanable_end(plog, now_ms)
        state = plog.state
        aborted = AbortedIndex(state.aborted_ranges())
        omap, map_end = await _offset_map(plog, end, aborted, budget_bytes,
                                          max_decompressed_bytes)
        if map_end <= plog.log_start:
            progress.cleaned_to = plog.committed if map_end == end else progress.cleaned_to
            return False
        rules = RetentionRules(omap, map_end, now_ms, plog.config.delete_retention_ms,
                               max_decompressed_bytes, aborted, state.last_data_offsets(),
                               TxnMarkers(horizon_below=map_end, drop_below=map_end))
        changes: list[tuple[int, bytes | None, int]] = []
        horizon: int | None = None
        async for page in _pages(plog, 0, map_end):
            for base, data in page:
                out, kept_horizon = filter_batch(read_batch_header(data), data, rules)
                if kept_horizon is not None:
                    horizon = kept_horizon if horizon is None else min(horizon, kept_horizon)
                if out is None:
                    changes.append((base, None, -len(data)))
                elif out is not data:
                    changes.append((base, bytes(out), len(out) - len(data)))
        if changes:
            await _apply(plog, changes)
            state.prune_aborted(map_end)
        _count_run(plog, changes)
        progress.cleaned_to = plog.committed if map_end == end else map_end
        progress.pending_horizon_ms = horizon
        return bool(changes)


def _count_run(plog: PostgresPartitionLog, changes: list[tuple[int, bytes | None, int]]
               ) -> None:
    """A compaction of the partition, in the metrics (if on)."""
    meter = plog.db.meters.meter
    if meter is not None:
        meter.cleaned(-sum(delta for _, _, delta in changes))


async def _apply(plog: PostgresPartitionLog, changes: list[tuple[int, bytes | None, int]]
                 ) -> None:
    rewrites = [(plog.partition_id, base, data, read_batch_header(data).max_timestamp)
                for base, data, _ in changes if data is not None]
    drops = [(plog.partition_id, base) for base, data, _ in changes if data is None]
    with plog.db.health.statement(f"compaction of {plog.name}"):
        async with plog.db.pool.acquire() as conn, conn.transaction():
            # Only at the epoch held (the row lock keeps the lease from moving meanwhile).
            held = await conn.fetchval(HELD, plog.partition_id, plog.leader_epoch)
            if held is None:
                raise NotLeader(f"{plog.name}: its lease moved; not compacted")
            if rewrites:
                await conn.executemany(REWRITE, rewrites)
            if drops:
                await conn.executemany(DROP, drops)
    plog.size_bytes += sum(delta for _, _, delta in changes)
    plog.tail.clear()
