"""The request checks of the transaction coordinator: Kafka's producer id / epoch validation and
the EndTxn state table (transaction version 2), as pure functions of one id's metadata."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from strom.coordinator.transaction.metadata import TransactionMetadata, is_epoch_exhausted
from strom.coordinator.transaction.model import (
    COMPLETE_STATES,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PREPARE_STATES,
    TxnState,
)


def client_view(meta: TransactionMetadata) -> tuple[int, int]:
    """The producer id and epoch the client uses next (the new id once one is allocated)."""
    if meta.next_producer_id != NO_PRODUCER_ID:
        return meta.next_producer_id, 0
    return meta.producer_id, meta.producer_epoch


def check_producer(meta: TransactionMetadata | None, producer_id: int, producer_epoch: int,
                    allow_prepare: bool = False) -> int | None:
    """INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS or None."""
    if meta is None:
        return ErrorCode.invalid_producer_id_mapping
    view_id, view_epoch = client_view(meta)
    if producer_id not in (view_id, meta.producer_id):
        return ErrorCode.invalid_producer_id_mapping
    if (producer_id, producer_epoch) != (view_id, view_epoch):
        return ErrorCode.producer_fenced
    if meta.state in PREPARE_STATES and not allow_prepare:
        return ErrorCode.concurrent_transactions
    return None


def is_retry(meta: TransactionMetadata, producer_id: int, producer_epoch: int) -> bool:
    """An EndTxn sent again with the epoch it bumped (its answer was lost)."""
    return (meta.last_producer_epoch != NO_PRODUCER_EPOCH
            and producer_epoch == meta.last_producer_epoch
            and producer_id != NO_PRODUCER_ID
            and producer_id in (meta.producer_id, meta.previous_producer_id))


def end_txn_error(state: TxnState, commit: bool, retry: bool) -> int | None:
    """Kafka's EndTxn state table (transaction version 2); None: go ahead (or, for a retry,
    answer success again)."""
    wanted = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    if state in PREPARE_STATES:
        return ErrorCode.concurrent_transactions if state is wanted else ErrorCode.invalid_txn_state
    if retry:
        if state in COMPLETE_STATES:
            return None if state is done else ErrorCode.invalid_txn_state
        return ErrorCode.producer_fenced  # a newer epoch is in use
    if state is TxnState.ONGOING or not commit:
        return None  # commit/abort the transaction; an abort of nothing still bumps the epoch
    return ErrorCode.invalid_txn_state  # commit with no transaction


def end_txn_v1_error(state: TxnState, commit: bool) -> int | None:
    """Kafka's EndTxn state table for transaction version 1 (no epoch bump): a retry of a
    completed end is answered again; None for Ongoing (end it) and for such a retry."""
    wanted = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    if state is TxnState.ONGOING or state is done:
        return None
    if state is wanted:
        return ErrorCode.concurrent_transactions
    return ErrorCode.invalid_txn_state


def valid_expected_producer(meta: TransactionMetadata, producer_id: int,
                             producer_epoch: int) -> bool:
    """Kafka's isValidProducerId for InitProducerId v3+ (KIP-360)."""
    return (meta.producer_epoch == NO_PRODUCER_EPOCH or producer_id == meta.producer_id
            or (producer_id == meta.previous_producer_id
                and is_epoch_exhausted(producer_epoch)))
