"""The producer checks of a client's append, shared by every engine (Kafka's
UnifiedLog.analyzeAndValidateProducerState with AppendOrigin.CLIENT).

Per batch with a producer id, in Kafka's order: a negative base sequence is an invalid
record (LogValidator); a retry of a retained batch is a duplicate; a transactional batch that
would begin its producer's transaction on this partition needs a current KIP-890
verification guard; then the epoch and sequence checks of ProducerStateManager.check. An
engine runs this and the append that follows as one atomic step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from strom.protocol.batch_header import BatchHeader
from strom.storage.producer_state import (
    INVALID_TXN_STATE,
    BatchMetadata,
    ProducerStateManager,
    Verdict,
    VerificationGuard,
    last_sequence,
)

INVALID_RECORD: Final = 87


def check_client_batches(state: ProducerStateManager, headers: Sequence[BatchHeader],
                         verification: VerificationGuard | None
                         ) -> BatchMetadata | tuple[int, str] | None:
    """None to append; the retained batch a duplicate repeats; or (error code, message) to
    refuse."""
    for h in headers:
        if h.producer_id < 0 or h.is_control:
            continue
        if h.base_sequence < 0:
            return (INVALID_RECORD, f"Invalid sequence number {h.base_sequence} in record "
                                    f"batch with producerId {h.producer_id}")
        result = state.check(h.producer_id, h.producer_epoch, h.base_sequence,
                             last_sequence(h.base_sequence, h.last_offset_delta),
                             transactional=h.is_transactional)
        if result.verdict is Verdict.DUPLICATE:
            assert result.duplicate is not None
            return result.duplicate
        if (h.is_transactional and not state.has_open_transaction(h.producer_id)
                and not state.verified(h.producer_id, verification)):
            return (INVALID_TXN_STATE,
                    f"Record of producer {h.producer_id} was not part of an ongoing "
                    "transaction (its verification ended)")
        if result.verdict is Verdict.REJECT:
            return (result.error_code, result.message or "")
    return None
