"""Transactional offset commits waiting for their transaction's end (Kafka's
GroupMetadata.pendingTransactionalOffsetCommits), indexed by group and by transaction.

A group's records all live on one `__consumer_offsets` partition, so a transaction's pending
offsets there are those of (partition, producer id). Every offset record gets a sequence number
in the order the coordinator writes (and replay reads) them, which is the partition's log order:
at a COMMIT the pending offset replaces the committed one only if it is the newer record (Kafka
compares the records' log offsets; a plain OffsetCommit may land while a transaction is open).
"""

from __future__ import annotations

from dataclasses import dataclass

from strom.coordinator.group.model import CommittedOffset, TopicPartition

TxnKey = tuple[int, int]  # (__consumer_offsets partition, producer id)
GroupOffsets = dict[TopicPartition, "PendingOffset"]


@dataclass(frozen=True, slots=True)
class PendingOffset:
    seq: int  # the record's place in the coordinator's write order
    offset: CommittedOffset


class PendingTxnOffsets:
    def __init__(self) -> None:
        # group id -> producer id -> partition -> pending offset
        self._by_group: dict[str, dict[int, GroupOffsets]] = {}
        self._by_txn: dict[TxnKey, set[str]] = {}  # the groups a transaction committed for
        # (group id, partition) -> seq of the record that set the committed offset
        self._committed_seq: dict[tuple[str, TopicPartition], int] = {}
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, partition: int, producer_id: int, group_id: str, tp: TopicPartition,
            offset: CommittedOffset) -> None:
        """A transactional offset record was written (or replayed)."""
        by_producer = self._by_group.setdefault(group_id, {})
        by_producer.setdefault(producer_id, {})[tp] = PendingOffset(self._next_seq(), offset)
        self._by_txn.setdefault((partition, producer_id), set()).add(group_id)

    def note_committed(self, group_id: str, tp: TopicPartition) -> None:
        """A plain offset record for `tp` was written (or replayed)."""
        self._committed_seq[(group_id, tp)] = self._next_seq()

    def forget_committed(self, group_id: str, tp: TopicPartition) -> None:
        self._committed_seq.pop((group_id, tp), None)

    def discard(self, group_id: str, tp: TopicPartition) -> None:
        """A plain tombstone for `tp` was written (or replayed): the group's pending offsets
        for it go, whichever transaction wrote them (Kafka's replay of a tombstone)."""
        by_producer = self._by_group.get(group_id)
        if by_producer is None:
            return
        for producer_id in [p for p, offsets in by_producer.items() if tp in offsets]:
            del by_producer[producer_id][tp]
            if not by_producer[producer_id]:
                del by_producer[producer_id]
        if not by_producer:
            del self._by_group[group_id]

    def has_pending(self, group_id: str) -> bool:
        return group_id in self._by_group

    def pending_partitions(self, group_id: str) -> set[TopicPartition]:
        return {tp for offsets in self._by_group.get(group_id, {}).values() for tp in offsets}

    def take(self, partition: int, producer_id: int) -> dict[str, GroupOffsets]:
        """Removes and returns the transaction's pending offsets, by group."""
        out: dict[str, GroupOffsets] = {}
        for group_id in sorted(self._by_txn.pop((partition, producer_id), ())):
            by_producer = self._by_group.get(group_id, {})
            offsets = by_producer.pop(producer_id, None)
            if not by_producer:
                self._by_group.pop(group_id, None)
            if offsets:
                out[group_id] = offsets
        return out

    def replaces(self, group_id: str, tp: TopicPartition, pending: PendingOffset,
                 has_current: bool) -> bool:
        """Whether a committed transaction's offset replaces the current one (Kafka's
        `currentOffsetOpt.forall(_.olderThan(pending))`); if so it becomes the current one."""
        key = (group_id, tp)
        if has_current and self._committed_seq.get(key, -1) > pending.seq:
            return False
        self._committed_seq[key] = pending.seq
        return True
