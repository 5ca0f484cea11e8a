"""One transactional id's state (Kafka's TransactionMetadata) and its log image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from strom.coordinator.transaction.log_format import (
    CLIENT_TRANSACTION_VERSION,
    TransactionLogValue,
)
from strom.coordinator.transaction.model import (
    INT16_MAX,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TopicPartition,
    TransactionSnapshot,
    TxnState,
)

# Kafka's TransactionMetadata.isEpochExhausted: at Short.MAX - 1 the next bump is the last one
# the id can take, so the coordinator moves the transactional id to a new producer id.
EPOCH_EXHAUSTED_AT: Final = INT16_MAX - 1


def is_epoch_exhausted(epoch: int) -> bool:
    return epoch >= EPOCH_EXHAUSTED_AT


@dataclass(slots=True)
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    txn_timeout_ms: int
    state: TxnState
    txn_last_update_timestamp_ms: int
    txn_start_timestamp_ms: int = -1
    partitions: set[TopicPartition] = field(default_factory=set)
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    # Not in the log (as in Kafka): the epoch a retried request may still carry after a bump.
    last_producer_epoch: int = NO_PRODUCER_EPOCH

    def to_value(self) -> TransactionLogValue:
        topics: dict[str, list[int]] = {}
        for topic, partition in sorted(self.partitions):
            topics.setdefault(topic, []).append(partition)
        return TransactionLogValue(
            self.producer_id, self.producer_epoch, self.txn_timeout_ms, self.state.id,
            tuple((t, tuple(ps)) for t, ps in topics.items()),
            self.txn_last_update_timestamp_ms, self.txn_start_timestamp_ms,
            self.previous_producer_id, self.next_producer_id, CLIENT_TRANSACTION_VERSION)

    @classmethod
    def from_value(cls, transactional_id: str, value: TransactionLogValue,
                   ) -> TransactionMetadata:
        return cls(
            transactional_id, value.producer_id, value.producer_epoch, value.txn_timeout_ms,
            TxnState.from_id(value.state_id), value.txn_last_update_timestamp_ms,
            value.txn_start_timestamp_ms,
            {(t, p) for t, ps in value.partitions for p in ps},
            value.previous_producer_id, value.next_producer_id)

    def snapshot(self) -> TransactionSnapshot:
        return TransactionSnapshot(
            self.producer_id, self.previous_producer_id, self.next_producer_id,
            self.producer_epoch, self.txn_timeout_ms, self.state, frozenset(self.partitions),
            self.txn_last_update_timestamp_ms, self.txn_start_timestamp_ms)
