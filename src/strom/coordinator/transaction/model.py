"""The transaction coordinator's configuration, answers and effects: frozen values.

Every call returns a `Step`: the answer, the `__transaction_state` records to append first, and
the transaction markers to write afterwards. A shell delivers a step in this order: append
`records` (durably), then return `result`, then write every `MarkerBatch` (one control batch per
partition) and call `TransactionCoordinator.markers_written` for each batch once all of its
partitions have the marker. Nothing parks: Kafka answers every transactional request once its
state record is in the log, and markers complete in the background.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

T = TypeVar("T")

TopicPartition = tuple[str, int]

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
INT16_MAX: Final = 2**15 - 1


class ProducerIdUnavailable(Exception):
    """Raised by `allocate_producer_id` when the shell has no id block at hand yet; the
    request is answered COORDINATOR_LOAD_IN_PROGRESS (retriable), as Kafka's
    RPCProducerIdManager does while it waits for a block."""


def _no_producer_ids() -> int:
    raise ProducerIdUnavailable("no producer id allocator configured")


def _no_offsets_partition(group_id: str) -> int:
    raise ValueError(f"no __consumer_offsets partitioner configured for group {group_id!r}")


class TxnState(enum.Enum):
    """Kafka's TransactionState; `id` is the byte in TransactionLogValue.TransactionStatus."""

    EMPTY = ("Empty", 0)
    ONGOING = ("Ongoing", 1)
    PREPARE_COMMIT = ("PrepareCommit", 2)
    PREPARE_ABORT = ("PrepareAbort", 3)
    COMPLETE_COMMIT = ("CompleteCommit", 4)
    COMPLETE_ABORT = ("CompleteAbort", 5)
    DEAD = ("Dead", 6)
    PREPARE_EPOCH_FENCE = ("PrepareEpochFence", 7)

    @property
    def label(self) -> str:
        """The name Kafka shows in DescribeTransactions / ListTransactions."""
        return self.value[0]

    @property
    def id(self) -> int:
        return self.value[1]

    @classmethod
    def from_id(cls, state_id: int) -> TxnState:
        for state in cls:
            if state.id == state_id:
                return state
        raise ValueError(f"unknown transaction state {state_id}")

    @classmethod
    def from_label(cls, label: str) -> TxnState | None:
        for state in cls:
            if state.label == label:
                return state
        return None


PREPARE_STATES: Final = frozenset({TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT})
COMPLETE_STATES: Final = frozenset({TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})
# States with no transaction in flight: a new InitProducerId may bump, the id may expire.
IDLE_STATES: Final = COMPLETE_STATES | {TxnState.EMPTY}


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    # transaction.max.timeout.ms
    transaction_max_timeout_ms: int = 900_000
    # transactional.id.expiration.ms
    transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000
    # transaction.state.log.num.partitions
    transaction_state_partitions: int = 50
    # The shell's producer-id block allocator; raises ProducerIdUnavailable when empty.
    allocate_producer_id: Callable[[], int] = field(default=_no_producer_ids)
    # The group coordinator's partition_for (AddOffsetsToTxn adds that __consumer_offsets
    # partition to the transaction).
    offsets_partition_for: Callable[[str], int] = field(default=_no_offsets_partition)


class TransactionCounts:
    """Transactions ended, for the metrics: plain numbers that every core of one broker
    bumps (so they outlive a shard moving away), read at scrape time."""

    __slots__ = ("aborted", "committed", "timed_out")

    def __init__(self) -> None:
        self.committed = 0  # reached CompleteCommit (EndTxn)
        self.aborted = 0  # reached CompleteAbort (EndTxn, or the coordinator's own abort)
        self.timed_out = 0  # aborted by the coordinator: transaction.timeout.ms passed


@dataclass(frozen=True, slots=True)
class TxnLogRecord:
    """A record for `__transaction_state` partition `partition`; `value` None is a tombstone."""

    partition: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class MarkerBatch:
    """Write one COMMIT or ABORT control batch, with this producer id and epoch, to each
    partition; then call `markers_written(transactional_id, producer_id, producer_epoch)`.
    Partitions of `__consumer_offsets` also complete the group's pending offset commits."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    result: T
    records: tuple[TxnLogRecord, ...] = ()
    markers: tuple[MarkerBatch, ...] = ()


@dataclass(frozen=True, slots=True)
class InitProducerIdResult:
    error: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class AddPartitionsResult:
    """AddPartitionsToTxn: one error for the request, repeated per partition."""

    error: int
    partition_errors: tuple[tuple[str, int, int], ...]  # (topic, partition, error)


@dataclass(frozen=True, slots=True)
class EndTxnResult:
    """EndTxn; v5+ (KIP-890 part 2) returns the producer id and epoch to use next."""

    error: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class TransactionDescription:
    transactional_id: str
    error: int
    state: str
    txn_timeout_ms: int
    txn_start_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    topics: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class TransactionListing:
    transactional_id: str
    producer_id: int
    state: str


@dataclass(frozen=True, slots=True)
class TransactionSnapshot:
    """What `__transaction_state` keeps of one transactional id (for tests and tools)."""

    producer_id: int
    previous_producer_id: int
    next_producer_id: int
    producer_epoch: int
    txn_timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    txn_last_update_timestamp_ms: int
    txn_start_timestamp_ms: int


def failed(error: int, partitions: tuple[TopicPartition, ...]) -> AddPartitionsResult:
    return AddPartitionsResult(error, tuple((t, p, error) for t, p in partitions))
