"""The producer checks of a client's append, shared by every engine (Kafka's
UnifiedLog.analyzeAndValidateProducerState with AppendOrigin.CLIENT).

Per batch with a producer id, in Kafka's order: a negative base sequence is an invalid
record (LogValidator); a retry of a retained batch is a duplicate; a transactional batch that
would begin its producer's transaction on this partition needs a current KIP-890
verification guard; then the epoch and sequence checks of ProducerStateManager.check. An
engine runs this and the append that follows as one atomic step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final

from strom.protocol.batch_header import BatchHeader, read_batch_header
from strom.protocol.control_batch import build_control_batch
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    Duplicate,
    InvalidProducerEpoch,
    PartitionLog,
    Placed,
    ProduceOutcome,
    Rejected,
)
from strom.storage.producer_state import (
    INVALID_TXN_STATE,
    BatchMetadata,
    ProducerStateManager,
    Verdict,
    VerificationGuard,
    last_sequence,
)

INVALID_RECORD: Final = 87

log = logging.getLogger(__name__)


async def append_checked_marker(plog: PartitionLog, producer_id: int, producer_epoch: int,
                                commit: bool, coordinator_epoch: int) -> AppendResult:
    """PartitionLog.append_marker for any engine: refused (InvalidProducerEpoch, nothing
    appended) if the partition knows a newer epoch of the producer, else appended now."""
    if plog.producer_state.check_marker(producer_id, producer_epoch) is not None:
        raise InvalidProducerEpoch(
            f"the transaction marker's epoch {producer_epoch} of producer {producer_id} is "
            "older than the one the partition knows")
    ts = int(time.time() * 1000)
    data = build_control_batch(producer_id, producer_epoch, commit, ts, coordinator_epoch)
    return await plog.append([AppendBatch(bytearray(data), 1, ts, ts)])


async def checked_append(plog: PartitionLog, batches: Sequence[AppendBatch],
                         verification: VerificationGuard | None,
                         placed: Placed | None = None) -> ProduceOutcome:
    """PartitionLog.produce for an engine whose `append` applies the batches to the producer
    state before its first await: the check and the write then run with nothing in between.
    A duplicate is answered once the original is as durable as an append would be."""
    found = check_client_batches(plog.producer_state,
                                 [read_batch_header(b.data) for b in batches], verification)
    if found is None:
        return await plog.append(batches, placed)
    if placed is not None:
        placed()  # nothing appended: no place to keep
    if isinstance(found, BatchMetadata):
        log.debug("a duplicate batch (seq %d-%d) answered with offset %d", found.first_seq,
                  found.last_seq, found.first_offset)
        offsets = await plog.offsets()
        await plog.wait_durable(offsets.log_end)
        return Duplicate(found.first_offset, found.timestamp, offsets.log_start)
    return Rejected(*found)


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
