"""Checks of what transactions and groups promise: read_committed never sees an aborted or
uncommitted write, a group's committed offsets never go backwards, and consume-transform-produce
turns every input into exactly one committed output."""

from __future__ import annotations

from collections import defaultdict

from strom.testing.history import (
    Event,
    OffsetsCommitted,
    OffsetsReset,
    TopicPartition,
    Transformed,
    TxnAborted,
)
from strom.testing.history_index import (
    Anomaly,
    AnomalyKind,
    HistoryIndex,
    Indexed,
    Status,
    anomaly,
)


def aborted_reads(ix: HistoryIndex) -> list[Anomaly]:
    """A read_committed consumer saw a value of a transaction that aborted, or that never
    committed (its producer died, or the history ends with it open)."""
    found: list[Anomaly] = []
    for value, reads in ix.reads_by_value.items():
        txn = ix.txn_of(value)
        read = next((r for r in reads if r.event.isolation == "read_committed"), None)
        if txn is None or read is None or ix.write_status(value) is not Status.MUST_NOT:
            continue
        end = ix.txn_ends.get(txn)
        if end is not None and isinstance(end.event, TxnAborted):
            how: Indexed[Event] | None = end
            why = "aborted"
        elif end is None:
            how, why = ix.txn_begun.get(txn), "never committed"
        else:
            continue  # a failed write in a committed transaction: a phantom read
        found.append(anomaly(
            AnomalyKind.ABORTED_READ,
            f"read_committed {read.event.consumer} read {value!r} of txn {txn}, which {why}",
            ix.attempts.get(value), how, read))
    return found


def offsets_backwards(ix: HistoryIndex) -> list[Anomaly]:
    """A group's acknowledged commit for a partition below its previous one, with no explicit
    reset in between."""
    found: list[Anomaly] = []
    last: dict[tuple[str, TopicPartition], Indexed[Event]] = {}
    for i, event in enumerate(ix.events):
        if not isinstance(event, OffsetsCommitted | OffsetsReset):
            continue
        key = (event.group, TopicPartition(event.topic, event.partition))
        previous = last.get(key)
        current: Indexed[Event] = Indexed(i, event)
        if (isinstance(event, OffsetsCommitted) and previous is not None
                and isinstance(previous.event, OffsetsCommitted | OffsetsReset)
                and event.offset < previous.event.offset):
            found.append(anomaly(
                AnomalyKind.OFFSETS_BACKWARDS,
                f"group {event.group} committed {event.topic}/{event.partition} offset "
                f"{event.offset} after {previous.event.offset}", previous, current))
        last[key] = current
    return found


def consume_transform_produce(ix: HistoryIndex) -> list[Anomaly]:
    """Every input (written for good, or seen) has exactly one output among the values
    read_committed consumers read (one per stored copy, for an input the log holds twice:
    the duplicate check reports that); missing ones are judged only when a read_committed
    final read covers every partition the outputs were sent to, and, when the history has
    the stage's acknowledged offset commits, only below them (what the stage claims done)."""
    if not ix.transforms:
        return []
    outputs_of: dict[str, list[Indexed[Transformed]]] = defaultdict(list)
    for t in ix.transforms:
        outputs_of[t.event.input_value].append(t)
    committed = _committed_outputs(ix)
    found: list[Anomaly] = []
    output_final = _output_final_read(ix)
    consumed = _consumed_upto(ix)
    for value in _inputs(ix):
        steps = outputs_of.get(value, [])
        kept = [t for t in steps if t.event.output_value in committed]
        distinct = {t.event.output_value for t in kept}
        # An input stored twice (a duplicate, reported as such) is two input records.
        copies = max(1, len(ix.read_positions(value)))
        if len(distinct) > copies:
            found.append(anomaly(
                AnomalyKind.CTP_DOUBLED,
                f"input {value!r} has {len(distinct)} committed outputs: "
                + ", ".join(repr(o) for o in sorted(distinct)),
                *kept, *(committed[o] for o in sorted(distinct))))
        elif not distinct and output_final is not None and _consumed(ix, value, consumed):
            found.append(anomaly(
                AnomalyKind.CTP_MISSING,
                f"input {value!r} has no committed output ({len(steps)} transforms recorded)",
                ix.outcomes.get(value) or ix.attempts.get(value), *steps, output_final))
    return found


def _committed_outputs(ix: HistoryIndex) -> dict[str, Indexed[Event]]:
    """Output values a read_committed consumer read, each with its first such read."""
    outputs = {t.event.output_value for t in ix.transforms}
    seen: dict[str, Indexed[Event]] = {}
    for read in ix.reads:
        if read.event.isolation == "read_committed" and read.event.value in outputs:
            seen.setdefault(read.event.value, read)
    return seen


def _output_final_read(ix: HistoryIndex) -> Indexed[Event] | None:
    """A read_committed final read of an output partition, if there is one of every partition
    outputs were sent to (otherwise a missing output cannot be told from an unread one)."""
    finals: list[Indexed[Event]] = []
    for tp in dict.fromkeys(ix.topic_partition(t.event.output_value) for t in ix.transforms):
        final = next((f for f in ix.final_reads.get(tp, ()) if f.event.isolation
                      == "read_committed"), None) if tp is not None else None
        if final is None:
            return None
        finals.append(final)
    return finals[0] if finals else None


def _consumed_upto(ix: HistoryIndex) -> dict[TopicPartition, int]:
    """The highest acknowledged committed offset of each input partition (any group's: in
    a workload only the stage commits offsets of its input topics)."""
    topics = {tp.topic for t in ix.transforms
              if (tp := ix.topic_partition(t.event.input_value)) is not None}
    upto: dict[TopicPartition, int] = {}
    for event in ix.events:
        if isinstance(event, OffsetsCommitted) and event.topic in topics:
            tp = TopicPartition(event.topic, event.partition)
            upto[tp] = max(upto.get(tp, 0), event.offset)
    return upto


def _consumed(ix: HistoryIndex, value: str, upto: dict[TopicPartition, int]) -> bool:
    """Whether the stage claims to have consumed input `value`: its position is below its
    partition's committed offset. A stage that stopped early (its group behind) owes outputs
    only for what it committed; a history with no commits of input offsets owes them all."""
    if not upto:
        return True
    acked = ix.acked(value)
    positions = [acked.event.position] if acked is not None else ix.read_positions(value)
    if not positions:
        return False
    return positions[0].offset < upto.get(positions[0].topic_partition, 0)


def _inputs(ix: HistoryIndex) -> list[str]:
    """Values of the input topics that must be transformed: written for good, or of unknown
    outcome but seen (read, or transformed)."""
    topics = {tp.topic for t in ix.transforms
              if (tp := ix.topic_partition(t.event.input_value)) is not None}
    transformed = {t.event.input_value for t in ix.transforms}
    inputs: list[str] = []
    for value, attempt in ix.attempts.items():
        if attempt.event.topic not in topics:
            continue
        status = ix.write_status(value)
        seen = value in transformed or value in ix.reads_by_value
        if status is Status.MUST or (status is Status.MAY and seen):
            inputs.append(value)
    return inputs
