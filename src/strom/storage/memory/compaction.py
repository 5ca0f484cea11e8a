"""Compaction of an in-memory partition, with the local engine's per-batch rules
(storage/local/cleaner_rewrite.filter_batch: Kafka's Cleaner.shouldRetainRecord, delete
horizons for tombstones and markers, aborted transactions' data removed, each producer's last
batch kept as a header).

One pass maps each key of the cleanable range to its last offset (in a dict-sized offset map:
the memory engine holds the whole log anyway), then filters every batch below the end of the
range. The range ends at the first open transaction, and before the first batch newer than
min.compaction.lag.ms. Emptied batches simply go: reads skip the gap.
"""

from __future__ import annotations

from strom.protocol.records import RecordsError, iter_records
from strom.storage.local.cleaner_map import SLOT_BYTES, AbortedIndex, OffsetMap
from strom.storage.local.cleaner_rewrite import RetentionRules, filter_batch
from strom.storage.local.cleaner_txn import TxnMarkers
from strom.storage.memory.partition import MemoryPartitionLog


def _cleanable_end(plog: MemoryPartitionLog, now_ms: int) -> int:
    """The index of the first batch the pass leaves alone."""
    unstable = plog.producer_state.first_unstable_offset()
    lag = plog.config.min_compaction_lag_ms
    for i, h in enumerate(plog.headers):
        if unstable is not None and h.last_offset >= unstable:
            return i
        if lag > 0 and h.max_timestamp > now_ms - lag:
            return i
    return len(plog.headers)


def _offset_map(plog: MemoryPartitionLog, end: int, aborted: AbortedIndex,
                max_decompressed_bytes: int) -> OffsetMap:
    """Each key of batches [0, end) -> the offset of its last record."""
    keys: dict[bytes, int] = {}
    for h, data in zip(plog.headers[:end], plog.batches[:end], strict=True):
        if h.is_control or aborted.aborted(h):
            continue
        try:
            for r in iter_records(data, max_decompressed_bytes=max_decompressed_bytes):
                if r.key is not None:
                    keys[r.key] = h.base_offset + r.offset_delta
        except RecordsError:
            continue  # an unreadable batch is kept as it is (filter_batch does the same)
    omap = OffsetMap(SLOT_BYTES * 4 * (len(keys) + 1), max_keys=len(keys) + 1)
    for key, offset in keys.items():
        omap.put(key, offset)
    return omap


def compact(plog: MemoryPartitionLog, now_ms: int, max_decompressed_bytes: int) -> bool:
    """One pass; returns whether it changed the log."""
    end = _cleanable_end(plog, now_ms)
    if end == 0:
        return False
    map_end = plog.headers[end - 1].last_offset + 1
    state = plog.producer_state
    aborted = AbortedIndex(state.aborted_ranges())
    omap = _offset_map(plog, end, aborted, max_decompressed_bytes)
    rules = RetentionRules(omap, map_end, now_ms, plog.config.delete_retention_ms,
                           max_decompressed_bytes, aborted, state.last_data_offsets(),
                           TxnMarkers(horizon_below=map_end, drop_below=map_end))
    kept: list[bytes] = []
    changed = False
    for h, data in zip(plog.headers[:end], plog.batches[:end], strict=True):
        out, _horizon = filter_batch(h, data, rules)
        if out is not data:
            changed = True
        if out is not None:
            kept.append(bytes(out))
    if changed:
        plog.replace_batches(kept + plog.batches[end:])
        state.prune_aborted(map_end)
    return changed
