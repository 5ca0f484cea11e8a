"""The transaction coordinator: transactional ids, producer epochs and markers, without I/O."""

from strom.coordinator.transaction.coordinator import TransactionCoordinator
from strom.coordinator.transaction.model import (
    AddPartitionsResult,
    EndTxnResult,
    InitProducerIdResult,
    MarkerBatch,
    ProducerIdUnavailable,
    Step,
    TopicPartition,
    TransactionConfig,
    TransactionCounts,
    TransactionDescription,
    TransactionListing,
    TransactionSnapshot,
    TxnLogRecord,
    TxnState,
)

__all__ = [
    "AddPartitionsResult",
    "EndTxnResult",
    "InitProducerIdResult",
    "MarkerBatch",
    "ProducerIdUnavailable",
    "Step",
    "TopicPartition",
    "TransactionConfig",
    "TransactionCoordinator",
    "TransactionCounts",
    "TransactionDescription",
    "TransactionListing",
    "TransactionSnapshot",
    "TxnLogRecord",
    "TxnState",
]
