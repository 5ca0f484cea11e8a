"""PartitionLog.produce checks a client's batch against the producer state and appends it in
one engine call: appended, a duplicate's original offsets, or a refusal with Kafka's error
code; and a KIP-890 verification guard that a transaction marker ended refuses the append."""

from __future__ import annotations

from pathlib import Path

from strom.storage.api import AppendResult, Duplicate, Rejected
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.producer_checks import INVALID_RECORD
from strom.storage.producer_state import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
)
from tests.unit.batch_factory import TRANSACTIONAL, batch
from tests.unit.test_partition_log_txn import run

PID = 7


def idem(seq: int, count: int = 2, epoch: int = 0, attributes: int = 0):  # type: ignore[no-untyped-def]
    return batch(count, producer_id=PID, producer_epoch=epoch, base_sequence=seq,
                 attributes=attributes, base_timestamp=1_000 + seq)


def test_a_retry_is_answered_with_the_original_offsets(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        first = await plog.produce([idem(0)])
        assert isinstance(first, AppendResult) and first.base_offset == 0
        second = await plog.produce([idem(2)])
        assert isinstance(second, AppendResult) and second.base_offset == 2
        again = await plog.produce([idem(0)])
        assert again == Duplicate(0, 1_001, 0)
        assert plog.log_end_offset == 4  # nothing appended for the retry

    run(tmp_path, {}, body)


def test_sequence_epoch_and_record_errors_append_nothing(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        assert isinstance(await plog.produce([idem(0, epoch=3)]), AppendResult)
        gap = await plog.produce([idem(5, epoch=3)])
        assert isinstance(gap, Rejected) and gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        old = await plog.produce([idem(2, epoch=2)])
        assert isinstance(old, Rejected) and old.error_code == INVALID_PRODUCER_EPOCH
        negative = await plog.produce([idem(-1, epoch=3)])
        assert isinstance(negative, Rejected) and negative.error_code == INVALID_RECORD
        assert plog.log_end_offset == 2

    run(tmp_path, {}, body)


def test_a_transactional_batch_needs_a_current_verification_guard(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        state = plog.producer_state
        unverified = await plog.produce([idem(0, attributes=TRANSACTIONAL)])
        assert isinstance(unverified, Rejected) and unverified.error_code == INVALID_TXN_STATE
        guard = state.start_verification(PID)
        assert state.start_verification(PID) is guard  # one guard per producer at a time
        assert isinstance(await plog.produce([idem(0, attributes=TRANSACTIONAL)], guard),
                          AppendResult)
        assert not state.verified(PID, guard)  # the transaction began: the guard ended
        # Within the open transaction no guard is needed.
        assert isinstance(await plog.produce([idem(2, attributes=TRANSACTIONAL)]),
                          AppendResult)

    run(tmp_path, {}, body)


def test_a_marker_between_verification_and_append_refuses_the_append(tmp_path: Path) -> None:
    """The race KIP-890's guard closes: the coordinator confirmed the partition, then the
    transaction ended (its marker written) before the late batch arrived."""
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        guard = plog.producer_state.start_verification(PID)
        await plog.append_marker(PID, 0, commit=False)
        assert not plog.producer_state.verified(PID, guard)
        late = await plog.produce([idem(0, attributes=TRANSACTIONAL)], guard)
        assert isinstance(late, Rejected) and late.error_code == INVALID_TXN_STATE
        assert plog.log_end_offset == 1  # only the marker
        assert not plog.producer_state.has_open_transaction(PID)

    run(tmp_path, {}, body)


def test_ending_a_guard_only_ends_that_guard(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        state = plog.producer_state
        old = state.start_verification(PID)
        state.end_verification(PID, old)
        new = state.start_verification(PID)
        assert new is not old
        state.end_verification(PID, old)  # stale: leaves the current one alone
        assert state.verified(PID, new) and not state.verified(PID, old)

    run(tmp_path, {}, body)
