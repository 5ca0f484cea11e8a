"""Checks of the partitions' contents against the writes: lost writes, duplicates, reorders,
inconsistent offsets and phantom reads (the Kafka taxonomy of Jepsen's analyses of Redpanda
21.10.1 and Bufstream 0.1.0). Each returns its anomalies, each with the fewest events that
show it."""

from __future__ import annotations

import itertools
from collections import defaultdict

from strom.testing.history import Event, Position, ProduceAcked, ProduceFailed, TopicPartition
from strom.testing.history_index import (
    Anomaly,
    AnomalyKind,
    HistoryIndex,
    Indexed,
    Status,
    anomaly,
)


def write_evidence(ix: HistoryIndex, value: str) -> list[Indexed[Event] | None]:
    """The attempt, the outcome and the transaction's end of `value` (those recorded)."""
    txn = ix.txn_of(value)
    return [ix.attempts.get(value), ix.outcomes.get(value),
            ix.txn_ends.get(txn) if txn is not None else None]


def written_values(ix: HistoryIndex) -> list[str]:
    """Every value with an attempt or an outcome, attempts first, in history order."""
    return list(dict.fromkeys([*ix.attempts, *ix.outcomes]))


def lost_writes(ix: HistoryIndex) -> list[Anomaly]:
    """A value that must be in the log (acknowledged, or of a committed transaction) is
    missing from a final read of its partition."""
    found: list[Anomaly] = []
    final_values: dict[int, set[str]] = {}
    for value in written_values(ix):
        tp = ix.topic_partition(value)
        if tp is None or ix.write_status(value) is not Status.MUST:
            continue
        for final in ix.final_reads.get(tp, ()):
            if final.index not in final_values:
                final_values[final.index] = ix.final_values(final)
            if value not in final_values[final.index]:
                fr = final.event
                found.append(anomaly(
                    AnomalyKind.LOST_WRITE,
                    f"{value!r} was written to {tp.topic}/{tp.partition} for good, but the final "
                    f"{fr.isolation} read by {fr.consumer} (to offset {fr.end_offset}) lacks it",
                    *write_evidence(ix, value), final))
                break
    return found


def duplicates(ix: HistoryIndex) -> list[Anomaly]:
    """A value read at two different positions: one write stored twice."""
    found: list[Anomaly] = []
    for value, reads in ix.reads_by_value.items():
        first_at: dict[Position, Indexed[Event]] = {}
        for read in reads:
            first_at.setdefault(read.event.position, read)
        if len(first_at) > 1:
            where = ", ".join(str(p) for p in first_at)
            found.append(anomaly(AnomalyKind.DUPLICATE, f"{value!r} read at {where}",
                                 ix.attempts.get(value), *first_at.values()))
    return found


def inconsistent_offsets(ix: HistoryIndex) -> list[Anomaly]:
    """Two values acknowledged or read at one position (an offset assigned twice), or a value
    read only at positions other than the one its acknowledgement reported."""
    found = offsets_acknowledged_twice(ix)
    values_at: dict[Position, dict[str, Indexed[Event]]] = defaultdict(dict)
    for read in ix.reads:
        values_at[read.event.position].setdefault(read.event.value, read)
    for position, first_reads in values_at.items():
        if len(first_reads) > 1:
            values = ", ".join(repr(v) for v in first_reads)
            found.append(anomaly(AnomalyKind.INCONSISTENT_OFFSET,
                                 f"{position} read as {values}", *first_reads.values()))
    for value in ix.reads_by_value:
        acked = ix.acked(value)
        positions = ix.read_positions(value)
        if acked is None or acked.event.position in positions:
            continue
        where = ", ".join(str(p) for p in positions)
        found.append(anomaly(
            AnomalyKind.INCONSISTENT_OFFSET,
            f"{value!r} acknowledged at {acked.event.position} but read at {where}",
            acked, ix.reads_by_value[value][0]))
    return found


def offsets_acknowledged_twice(ix: HistoryIndex) -> list[Anomaly]:
    """Two values acknowledged at one position: the offset was handed out twice (two
    brokers appending to one partition, or an append lost and its offset reused), whether or
    not anyone read either."""
    acks_at: dict[Position, list[Indexed[ProduceAcked]]] = defaultdict(list)
    for value in ix.outcomes:
        acked = ix.acked(value)
        if acked is not None:
            acks_at[acked.event.position].append(acked)
    found: list[Anomaly] = []
    for position, acks in acks_at.items():
        if len(acks) > 1:
            values = ", ".join(repr(a.event.value) for a in acks)
            found.append(anomaly(AnomalyKind.INCONSISTENT_OFFSET,
                                 f"{position} acknowledged for {values}", *acks))
    return found


def final_read_order(ix: HistoryIndex) -> list[Anomaly]:
    """A final reader's records of a partition not in strictly increasing offset order: it
    reads from the start without seeking, so the log served it out of order, or twice."""
    found: list[Anomaly] = []
    for finals in ix.final_reads.values():
        for final in finals:
            reads = ix.reads_by_reader.get((final.event.consumer, final.event.topic_partition),
                                           [])
            before = [r for r in reads if r.index < final.index]
            for a, b in itertools.pairwise(before):
                if b.event.offset <= a.event.offset:
                    found.append(anomaly(
                        AnomalyKind.NONMONOTONIC_READ,
                        f"final reader {final.event.consumer} read {b.event.position} "
                        f"({b.event.value!r}) after {a.event.position} ({a.event.value!r})",
                        a, b, final))
                    break  # the first one says it; the rest follow from it
    return found


def reorders(ix: HistoryIndex) -> list[Anomaly]:
    """An idempotent producer's acknowledged writes to one partition stored in an order other
    than the one it sent them in (each descent between consecutive sends is one anomaly)."""
    sent: dict[tuple[str, TopicPartition], list[str]] = defaultdict(list)
    for value, attempt in ix.attempts.items():
        tp = ix.topic_partition(value)
        if ix.acked(value) is not None and tp is not None:
            sent[attempt.event.producer, tp].append(value)
    found: list[Anomaly] = []
    for (producer, tp), values in sent.items():
        stored = [(_stored_offset(ix, value, tp), value) for value in values]
        for (offset_a, a), (offset_b, b) in itertools.pairwise(stored):
            if offset_b < offset_a:
                found.append(anomaly(
                    AnomalyKind.REORDER,
                    f"{producer} sent {a!r} before {b!r} to {tp.topic}/{tp.partition}, "
                    f"stored at offsets {offset_a} and {offset_b}",
                    ix.attempts[a], ix.attempts[b], *_offset_evidence(ix, a, tp),
                    *_offset_evidence(ix, b, tp)))
    return found


def _stored_offset(ix: HistoryIndex, value: str, tp: TopicPartition) -> int:
    """Where `value` was first read in `tp`, or else where its ack put it."""
    for read in ix.reads_by_value.get(value, ()):
        if read.event.position.topic_partition == tp:
            return read.event.offset
    acked = ix.acked(value)
    assert acked is not None, "only acknowledged values have a stored offset"
    return acked.event.offset


def _offset_evidence(ix: HistoryIndex, value: str, tp: TopicPartition) -> list[Indexed[Event]]:
    for read in ix.reads_by_value.get(value, ()):
        if read.event.position.topic_partition == tp:
            return [read]
    acked = ix.acked(value)
    return [acked] if acked is not None else []


def phantom_reads(ix: HistoryIndex) -> list[Anomaly]:
    """A read of a value no one wrote, or whose write definitely failed."""
    found: list[Anomaly] = []
    for value, reads in ix.reads_by_value.items():
        outcome = ix.outcomes.get(value)
        if value not in ix.attempts and outcome is None:
            found.append(anomaly(AnomalyKind.PHANTOM_READ,
                                 f"{value!r} read but never written", reads[0]))
        elif outcome is not None and isinstance(outcome.event, ProduceFailed):
            found.append(anomaly(AnomalyKind.PHANTOM_READ,
                                 f"{value!r} read though its write failed ({outcome.event.error})",
                                 ix.attempts.get(value), outcome, reads[0]))
    return found
