"""The events of a recorded history: what Kafka clients attempted and what they observed.

A workload records one event each time a client does or learns something (a send, a delivery
report, a transaction's end, a polled record, an offset commit, a consume-transform-produce
step); the checker (`history_check.check`) reads them afterwards. Values are unique per write:
the workload makes them so (e.g. "p3-1042"), which is what lets the checker tell a duplicate
from a second write. Outcomes are three-valued, as in Jepsen: acknowledged, failed (definitely
not written) and unknown (a timeout, a lost answer: written at most once, or not at all).

Positions are by value: a `Position` is (topic, partition, offset). Every event carries
`time_ms` (wall-clock milliseconds, 0 when the workload does not care) to line a history up
with broker logs and injected faults (`Note`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

Isolation = Literal["read_committed", "read_uncommitted"]
ISOLATIONS: tuple[Isolation, ...] = ("read_committed", "read_uncommitted")


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Position(NamedTuple):
    topic: str
    partition: int
    offset: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceAttempted:
    """A producer handed `value` to its client for (topic, partition), partition -1 when its
    partitioner chooses; `txn` names the transaction it belongs to (unique per transaction,
    not the transactional.id)."""

    producer: str
    topic: str
    partition: int
    value: str
    txn: str | None = None
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceAcked:
    """The delivery report of `value`: written at (topic, partition, offset)."""

    producer: str
    value: str
    topic: str
    partition: int
    offset: int
    time_ms: int = 0

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceFailed:
    """A definite failure: the broker did not write `value` (e.g. MSG_SIZE_TOO_LARGE)."""

    producer: str
    value: str
    error: str = ""
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceUnknown:
    """No answer that settles it (a timeout, a lost connection): written at most once, or not."""

    producer: str
    value: str
    error: str = ""
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnBegun:
    producer: str
    txn: str
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnCommitted:
    """commit_transaction returned: every value of `txn` is visible to read_committed."""

    producer: str
    txn: str
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnAborted:
    """abort_transaction returned: no value of `txn` is visible to read_committed."""

    producer: str
    txn: str
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnCommitUnknown:
    """commit_transaction's answer was lost: the transaction committed, or aborted, wholly."""

    producer: str
    txn: str
    error: str = ""
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRead:
    """A consumer polled `value` at (topic, partition, offset)."""

    consumer: str
    topic: str
    partition: int
    offset: int
    value: str
    isolation: Isolation = "read_uncommitted"
    time_ms: int = 0

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalRead:
    """`consumer` read (topic, partition) from its start to `end_offset` (its high watermark,
    or last stable offset for read_committed) after every writer stopped: its `RecordRead`s of
    that partition are the partition's whole content."""

    consumer: str
    topic: str
    partition: int
    end_offset: int
    isolation: Isolation = "read_uncommitted"
    time_ms: int = 0

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetsCommitted:
    """The group coordinator acknowledged `group`'s commit of `offset` (the next offset to
    read) for (topic, partition); for a transactional commit, record it once the transaction
    committed. A commit whose answer was lost is not recorded."""

    group: str
    consumer: str
    topic: str
    partition: int
    offset: int
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetsReset:
    """The workload moved `group`'s committed offset on purpose (a reset tool, a seek and
    commit): the next commits are measured from `offset`."""

    group: str
    topic: str
    partition: int
    offset: int
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Transformed:
    """Consume-transform-produce: `worker` read `input_value` and produced `output_value`
    (itself recorded by `ProduceAttempted`) in transaction `txn`, with the input's offset."""

    worker: str
    txn: str
    input_value: str
    output_value: str
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Free text the checks ignore: an injected fault, a phase of the workload."""

    text: str
    time_ms: int = 0


Event = (
    ProduceAttempted
    | ProduceAcked
    | ProduceFailed
    | ProduceUnknown
    | TxnBegun
    | TxnCommitted
    | TxnAborted
    | TxnCommitUnknown
    | RecordRead
    | FinalRead
    | OffsetsCommitted
    | OffsetsReset
    | Transformed
    | Note
)

EVENT_TYPES: dict[str, type[Event]] = {
    "produce_attempted": ProduceAttempted,
    "produce_acked": ProduceAcked,
    "produce_failed": ProduceFailed,
    "produce_unknown": ProduceUnknown,
    "txn_begun": TxnBegun,
    "txn_committed": TxnCommitted,
    "txn_aborted": TxnAborted,
    "txn_commit_unknown": TxnCommitUnknown,
    "record_read": RecordRead,
    "final_read": FinalRead,
    "offsets_committed": OffsetsCommitted,
    "offsets_reset": OffsetsReset,
    "transformed": Transformed,
    "note": Note,
}
TYPE_NAMES: dict[type[Event], str] = {cls: name for name, cls in EVENT_TYPES.items()}


def describe(event: Event) -> str:
    """One short line for reports: the type name and the fields that matter."""
    return f"{TYPE_NAMES[type(event)]} {_fields(event)}"


def _fields(event: Event) -> str:
    match event:
        case ProduceAttempted():
            txn = f" txn={event.txn}" if event.txn is not None else ""
            return f"{event.producer} {event.value!r} -> {event.topic}/{event.partition}{txn}"
        case ProduceAcked() | RecordRead():
            who = event.producer if isinstance(event, ProduceAcked) else event.consumer
            extra = f" {event.isolation}" if isinstance(event, RecordRead) else ""
            return f"{who} {event.value!r} at {event.position}{extra}"
        case ProduceFailed() | ProduceUnknown():
            return f"{event.producer} {event.value!r} ({event.error})"
        case TxnBegun() | TxnCommitted() | TxnAborted() | TxnCommitUnknown():
            return f"{event.producer} txn={event.txn}"
        case FinalRead():
            return (f"{event.consumer} {event.topic}/{event.partition} to {event.end_offset} "
                    f"{event.isolation}")
        case OffsetsCommitted() | OffsetsReset():
            return f"{event.group} {event.topic}/{event.partition} offset={event.offset}"
        case Transformed():
            return f"{event.worker} {event.input_value!r} -> {event.output_value!r} txn={event.txn}"
        case Note():
            return event.text
