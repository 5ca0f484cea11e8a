"""A history indexed once for the checks: each write's attempt and outcome, each transaction's
end, reads by value and by position, final reads by partition. Events keep their place in the
history (`Indexed`: index, event) so an anomaly can quote the lines that show it.

`write_status` says what each value's outcome requires of the log:
MUST (acknowledged, or in a committed transaction: present exactly once), MAY (unknown: present
at most once), MUST_NOT (failed, or in an aborted or never-committed transaction: invisible to
read_committed; a definite failure invisible to any reader).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from strom.testing.history import (
    Event,
    FinalRead,
    Position,
    ProduceAcked,
    ProduceAttempted,
    ProduceFailed,
    ProduceUnknown,
    RecordRead,
    TopicPartition,
    Transformed,
    TxnAborted,
    TxnBegun,
    TxnCommitted,
    TxnCommitUnknown,
)

E_co = TypeVar("E_co", bound=Event, covariant=True)


@dataclass(frozen=True, slots=True)
class Indexed(Generic[E_co]):
    """An event and its place in the history (0-based)."""

    index: int
    event: E_co


class AnomalyKind(enum.StrEnum):
    LOST_WRITE = "lost_write"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    INCONSISTENT_OFFSET = "inconsistent_offset"
    NONMONOTONIC_READ = "nonmonotonic_read"
    PHANTOM_READ = "phantom_read"
    ABORTED_READ = "aborted_read"
    OFFSETS_BACKWARDS = "offsets_backwards"
    CTP_MISSING = "ctp_missing"
    CTP_DOUBLED = "ctp_doubled"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One broken rule: a short explanation and the fewest events that show it, in order."""

    kind: AnomalyKind
    explanation: str
    excerpt: tuple[Indexed[Event], ...]


def anomaly(kind: AnomalyKind, explanation: str, *events: Indexed[Event] | None) -> Anomaly:
    present = {e.index: e for e in events if e is not None}
    return Anomaly(kind, explanation, tuple(present[i] for i in sorted(present)))


class Status(enum.Enum):
    MUST = "must"
    MAY = "may"
    MUST_NOT = "must_not"


TxnEnd = TxnCommitted | TxnAborted | TxnCommitUnknown
Outcome = ProduceAcked | ProduceFailed | ProduceUnknown


@dataclass
class HistoryIndex:
    events: list[Event]
    attempts: dict[str, Indexed[ProduceAttempted]] = field(default_factory=dict)
    outcomes: dict[str, Indexed[Outcome]] = field(default_factory=dict)
    txn_begun: dict[str, Indexed[TxnBegun]] = field(default_factory=dict)
    txn_ends: dict[str, Indexed[TxnEnd]] = field(default_factory=dict)
    reads: list[Indexed[RecordRead]] = field(default_factory=list)
    reads_by_value: dict[str, list[Indexed[RecordRead]]] = field(
        default_factory=lambda: defaultdict(list))
    reads_by_reader: dict[tuple[str, TopicPartition], list[Indexed[RecordRead]]] = field(
        default_factory=lambda: defaultdict(list))
    final_reads: dict[TopicPartition, list[Indexed[FinalRead]]] = field(
        default_factory=lambda: defaultdict(list))
    transforms: list[Indexed[Transformed]] = field(default_factory=list)

    def acked(self, value: str) -> Indexed[ProduceAcked] | None:
        outcome = self.outcomes.get(value)
        if outcome is not None and isinstance(outcome.event, ProduceAcked):
            return Indexed(outcome.index, outcome.event)
        return None

    def write_status(self, value: str) -> Status:
        outcome = self.outcomes.get(value)
        if outcome is not None and isinstance(outcome.event, ProduceFailed):
            return Status.MUST_NOT
        txn = self.txn_of(value)
        if txn is None:
            return Status.MUST if self.acked(value) is not None else Status.MAY
        # A transaction commits only once every send of it succeeded (the client flushes first).
        end = self.txn_ends.get(txn)
        if end is None or isinstance(end.event, TxnAborted):
            return Status.MUST_NOT
        return Status.MAY if isinstance(end.event, TxnCommitUnknown) else Status.MUST

    def topic_partition(self, value: str) -> TopicPartition | None:
        """Where `value`'s ack says it went, or else where it was sent (an attempt's partition
        is -1 when the producer's partitioner chose)."""
        acked = self.acked(value)
        if acked is not None:
            return acked.event.position.topic_partition
        attempt = self.attempts.get(value)
        if attempt is not None:
            return TopicPartition(attempt.event.topic, attempt.event.partition)
        return None

    def txn_of(self, value: str) -> str | None:
        attempt = self.attempts.get(value)
        return attempt.event.txn if attempt is not None else None

    def final_values(self, final: Indexed[FinalRead]) -> set[str]:
        """The values `final`'s consumer read of its partition up to the final read."""
        reads = self.reads_by_reader.get((final.event.consumer, final.event.topic_partition), ())
        return {r.event.value for r in reads if r.index < final.index}

    def read_positions(self, value: str) -> list[Position]:
        """The distinct positions `value` was read at, in the order first seen."""
        return list(dict.fromkeys(r.event.position for r in self.reads_by_value.get(value, ())))


def build_index(events: Iterable[Event]) -> HistoryIndex:
    index = HistoryIndex(list(events))
    for i, event in enumerate(index.events):
        _add(index, i, event)
    return index


def _add(index: HistoryIndex, i: int, event: Event) -> None:
    match event:
        case ProduceAttempted():
            index.attempts.setdefault(event.value, Indexed(i, event))
        case ProduceAcked() | ProduceFailed() | ProduceUnknown():
            # An ack settles a value for good; an earlier or later "unknown" does not undo it.
            known = index.outcomes.get(event.value)
            if known is None or isinstance(known.event, ProduceUnknown):
                index.outcomes[event.value] = Indexed(i, event)
        case TxnBegun():
            index.txn_begun.setdefault(event.txn, Indexed(i, event))
        case TxnCommitted() | TxnAborted() | TxnCommitUnknown():
            index.txn_ends.setdefault(event.txn, Indexed(i, event))
        case RecordRead():
            read = Indexed(i, event)
            index.reads.append(read)
            index.reads_by_value[event.value].append(read)
            index.reads_by_reader[event.consumer, event.position.topic_partition].append(read)
        case FinalRead():
            index.final_reads[event.topic_partition].append(Indexed(i, event))
        case Transformed():
            index.transforms.append(Indexed(i, event))
        case _:
            pass
