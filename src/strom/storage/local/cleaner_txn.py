"""Transaction markers and aborted transactions under compaction (Kafka's
CleanedTransactionMetadata and the delete horizon of markers, KIP-534).

**Markers.** While a cleaning pass rewrites the log from its start, `TxnMarkers` notes, per
producer, whether a transactional data batch of the producer was written out since the
producer's last marker (a batch that keeps records, or the header-only batch kept as the
producer's last one, RETAIN_EMPTY). A COMMIT or ABORT marker below the offset map's end whose
transaction has no data batch left (Kafka's `onControlBatchRead`):

1. gets a delete horizon = now + delete.retention.ms, stored as for tombstones (attribute bit
   0x40 and the base timestamp), the first time;
2. is removed by a later pass at or after its horizon (it joins a run of emptied batches, so
   offsets stay contiguous), if it lies below `drop_below` (see below).

A marker whose transaction still has a data batch in the log is never removed: a rebuild of the
producer state from the log would find the transaction open, and the last stable offset would
stay there.

**Aborted transactions.** After a pass whose rewrite reached the map's end, every data batch
of an aborted transaction whose marker lies below the map's end is gone (or kept without
records), so the cleaner drops those entries from the producer state (`prune_aborted`). The
swap and the prune run on the event loop, and a fetch reads its batches and lists its aborted
transactions without an await in between, so no read_committed reader gets an aborted record
whose transaction is no longer listed.

**Snapshots.** A producer state snapshot taken before such a prune still lists the pruned
entries, and one taken before a marker has the transaction open. Loading either after the
marker was removed would be wrong (an aborted entry without its marker makes a client drop the
producer's later committed batches of the same fetch; an open transaction without its marker
pins the last stable offset). So a marker is removed only if every snapshot on disk was taken
after a prune that covered it: `PrunedPasses` remembers (log end offset, map end) of each
pruning pass for the partition's producer state object, and a marker below the map end of a
pass whose log end offset is below every snapshot's offset may go (snapshots are taken at the
log end offset of the moment, so their offsets tell when they were taken). Without snapshots
on disk nothing is removed: a snapshot being written might still describe an older state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strom.protocol.batch_header import BatchHeader
from strom.protocol.control_batch import ABORT, COMMIT, control_type
from strom.storage.local.checkpoint import TopicPartition
from strom.storage.producer_state import ProducerStateManager

NOTHING: int = -1  # a bound below every offset


@dataclass(slots=True)
class TxnMarkers:
    """The marker rules of one cleaning pass and what it saw so far."""

    horizon_below: int = NOTHING  # markers below it may get a delete horizon (the map's end)
    drop_below: int = NOTHING  # markers below it may be removed once past their horizon
    _open_data: set[int] = field(default_factory=set)  # producers with a data batch kept

    def data_kept(self, h: BatchHeader) -> None:
        """A data batch was written out."""
        if h.is_transactional and h.producer_id >= 0:
            self._open_data.add(h.producer_id)

    def removable(self, h: BatchHeader, data: bytes) -> bool:
        """At a control batch, in log order: whether it is a COMMIT or ABORT marker below the
        horizon bound whose transaction has no data batch left."""
        had_data = h.producer_id in self._open_data
        self._open_data.discard(h.producer_id)
        if had_data or h.base_offset >= self.horizon_below or h.records_count != 1:
            return False
        try:
            return control_type(data) in (ABORT, COMMIT)
        except ValueError:
            return False


class PrunedPasses:
    """Per partition: the producer state object and (log end offset, map end) of the passes
    that pruned its aborted transactions."""

    def __init__(self) -> None:
        self._passes: dict[TopicPartition, tuple[ProducerStateManager, list[tuple[int, int]]]] = {}

    def forget_topic(self, topic: str) -> None:
        for key in [k for k in self._passes if k[0] == topic]:
            del self._passes[key]

    def pruned(self, key: TopicPartition, state: ProducerStateManager, log_end: int,
               map_end: int) -> None:
        """Records a pass that called state.prune_aborted(map_end) at log end `log_end`."""
        known = self._passes.get(key)
        if known is None or known[0] is not state:  # reopened: an earlier state is moot
            known = self._passes[key] = (state, [])
        if known[1] and known[1][-1][0] == log_end:  # nothing appended since: one entry
            map_end = max(map_end, known[1].pop()[1])
        known[1].append((log_end, map_end))

    def drop_below(self, key: TopicPartition, state: ProducerStateManager | None,
                   snapshots: list[int]) -> int:
        """The offset below which markers may be removed: the largest map end of a pruning
        pass of this state object whose log end lies below every snapshot (none: NOTHING)."""
        known = self._passes.get(key)
        if state is None or known is None or known[0] is not state or not snapshots:
            return NOTHING
        oldest = min(snapshots)
        done = [p for p in known[1] if p[0] < oldest]
        if not done:
            return NOTHING
        merged = (max(p[0] for p in done), max(p[1] for p in done))  # conservative
        known[1][:] = [merged] + [p for p in known[1] if p[0] >= oldest]
        return merged[1]
