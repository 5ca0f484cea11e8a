"""The transaction coordinator core answers each InitProducerId / AddPartitionsToTxn /
AddOffsetsToTxn / EndTxn case with Kafka's error code, bumps the producer epoch on every
transaction end (KIP-890 part 2), asks for markers for exactly the partitions added, aborts
timed-out transactions, expires idle ids, and its `__transaction_state` records (Kafka's byte
format) rebuild its state when replayed."""

from __future__ import annotations

import itertools
import struct

import pytest
from kio.schema.errors import ErrorCode as E

from strom.coordinator.hashing import java_string_hash, partition_for
from strom.coordinator.transaction import (
    MarkerBatch,
    ProducerIdUnavailable,
    Step,
    TransactionConfig,
    TransactionCoordinator,
    TxnLogRecord,
    TxnState,
)
from strom.coordinator.transaction.log_format import (
    LogFormatError,
    TransactionLogValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)

DAY_MS = 24 * 3600 * 1000
T1 = ("t", 0)
T2 = ("t", 1)
U0 = ("u", 0)


class Harness:
    def __init__(self) -> None:
        self.ids = itertools.count(1000)
        self.available = True
        self.core = TransactionCoordinator(TransactionConfig(
            allocate_producer_id=self.allocate, offsets_partition_for=lambda group: 7))
        self.records: list[TxnLogRecord] = []

    def allocate(self) -> int:
        if not self.available:
            raise ProducerIdUnavailable
        return next(self.ids)

    def take(self, step: Step[object]) -> Step[object]:
        self.records.extend(step.records)
        return step

    def init(self, tid: str = "tx", timeout: int = 60_000, pid: int = -1, epoch: int = -1,
             now: int = 0) -> tuple[int, int, int]:
        step = self.take(self.core.init_producer_id(tid, timeout, pid, epoch, now))
        r = step.result
        return r.error, r.producer_id, r.producer_epoch  # type: ignore[attr-defined]

    def add(self, pid: int, epoch: int, *tps: tuple[str, int], tid: str = "tx",
            now: int = 0) -> int:
        step = self.take(self.core.add_partitions(tid, pid, epoch, tps, now))
        return step.result.error  # type: ignore[attr-defined,no-any-return]

    def end(self, pid: int, epoch: int, commit: bool, tid: str = "tx", now: int = 0,
            ) -> tuple[tuple[int, int, int], tuple[MarkerBatch, ...]]:
        step = self.take(self.core.end_txn(tid, pid, epoch, commit, now))
        r = step.result
        return (r.error, r.producer_id, r.producer_epoch), step.markers  # type: ignore[attr-defined]

    def written(self, batch: MarkerBatch, now: int = 0) -> None:
        self.take(self.core.markers_written(batch.transactional_id, batch.producer_id,
                                            batch.producer_epoch, now))

    def state(self, tid: str = "tx") -> TxnState:
        return self.core.snapshot()[tid].state

    def replayed(self) -> TransactionCoordinator:
        fresh = TransactionCoordinator(self.core.config)
        for record in self.records:
            fresh.replay(record)
        return fresh


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- InitProducerId ---------------------------------------------------------------------


def test_init_allocates_then_bumps(h: Harness) -> None:
    assert h.init() == (E.none, 1000, 0)
    assert h.init() == (E.none, 1000, 1)
    assert h.state() is TxnState.EMPTY
    assert len(h.records) == 2


@pytest.mark.parametrize("timeout", [0, -1, 900_001])
def test_init_rejects_timeouts_outside_the_limit(h: Harness, timeout: int) -> None:
    assert h.init(timeout=timeout)[0] == E.invalid_transaction_timeout
    assert h.init(timeout=900_000)[0] == E.none


def test_init_rejects_an_empty_transactional_id(h: Harness) -> None:
    assert h.init(tid="")[0] == E.invalid_request


def test_init_without_producer_ids_is_retriable(h: Harness) -> None:
    h.available = False
    assert h.init()[0] == E.coordinator_load_in_progress
    assert h.core.snapshot() == {}


def test_init_with_expected_epoch_kip360(h: Harness) -> None:
    _, pid, _ = h.init()
    assert h.init(pid=pid, epoch=0) == (E.none, pid, 1)
    assert h.init(pid=pid, epoch=0) == (E.none, pid, 1)  # a retry: same answer, no bump
    assert h.init(pid=pid, epoch=5)[0] == E.producer_fenced
    assert h.init(pid=pid + 99, epoch=1)[0] == E.producer_fenced


def test_init_aborts_an_ongoing_transaction_first(h: Harness) -> None:
    _, pid, epoch = h.init()
    assert h.add(pid, epoch, T1, U0) == E.none
    step = h.take(h.core.init_producer_id("tx", 60_000, -1, -1, 5))
    assert step.result.error == E.concurrent_transactions
    assert step.markers == (MarkerBatch("tx", pid, epoch + 1, False, (T1, U0)),)
    assert h.state() is TxnState.PREPARE_ABORT
    assert h.init()[0] == E.concurrent_transactions  # until the markers are written
    assert h.add(pid, epoch, T2) == E.producer_fenced  # the old producer is fenced
    h.written(step.markers[0])
    assert h.state() is TxnState.COMPLETE_ABORT
    assert h.init() == (E.none, pid, epoch + 2)


# -- AddPartitionsToTxn / AddOffsetsToTxn -----------------------------------------------


def test_add_partitions_errors(h: Harness) -> None:
    _, pid, epoch = h.init()
    assert h.add(pid, epoch, T1, tid="unknown") == E.invalid_producer_id_mapping
    assert h.add(pid + 1, epoch, T1) == E.invalid_producer_id_mapping
    assert h.add(pid, epoch - 1, T1) == E.producer_fenced
    assert h.add(pid, epoch + 1, T1) == E.producer_fenced
    assert h.state() is TxnState.EMPTY


def test_add_partitions_starts_and_extends_a_transaction(h: Harness) -> None:
    _, pid, epoch = h.init()
    before = len(h.records)
    step = h.core.add_partitions("tx", pid, epoch, [T1, T1, T2], 10)
    assert step.result.partition_errors == (("t", 0, 0), ("t", 1, 0))
    assert h.state() is TxnState.ONGOING
    assert h.core.snapshot()["tx"].txn_start_timestamp_ms == 10
    assert len(step.records) == 1
    assert h.core.add_partitions("tx", pid, epoch, [T2], 20).records == ()  # nothing new
    h.take(step)
    assert h.add(pid, epoch, U0, now=30) == E.none
    snap = h.core.snapshot()["tx"]
    assert snap.partitions == {T1, T2, U0} and snap.txn_start_timestamp_ms == 10
    assert len(h.records) == before + 2


def test_add_offsets_adds_the_groups_offsets_partition(h: Harness) -> None:
    _, pid, epoch = h.init()
    step = h.core.add_offsets("tx", pid, epoch, "group", 0)
    assert step.result == E.none
    assert h.core.snapshot()["tx"].partitions == {("__consumer_offsets", 7)}
    assert h.core.add_offsets("tx", pid, epoch + 1, "group", 0).result == E.producer_fenced


def test_verify_only_checks_membership(h: Harness) -> None:
    _, pid, epoch = h.init()
    step = h.core.add_partitions("tx", pid, epoch, [T1], 0, verify_only=True)
    assert step.result.partition_errors == (("t", 0, E.invalid_txn_state),)
    h.add(pid, epoch, T1)
    step = h.core.add_partitions("tx", pid, epoch, [T1, T2], 0, verify_only=True)
    assert step.result.partition_errors == (("t", 0, 0), ("t", 1, E.invalid_txn_state))
    assert step.records == ()
    assert h.core.add_partitions("tx", pid, epoch - 1, [T1], 0,
                                 verify_only=True).result.error == E.producer_fenced


# -- EndTxn -----------------------------------------------------------------------------


def test_commit_bumps_the_epoch_and_writes_markers(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.add(pid, epoch, T1, T2)
    answer, markers = h.end(pid, epoch, True)
    assert answer == (E.none, pid, epoch + 1)
    assert markers == (MarkerBatch("tx", pid, epoch + 1, True, (T1, T2)),)
    assert h.state() is TxnState.PREPARE_COMMIT
    # While the markers are written: the new epoch must wait, the old one is a retry.
    assert h.add(pid, epoch + 1, T1) == E.concurrent_transactions
    assert h.end(pid, epoch + 1, True)[0][0] == E.concurrent_transactions
    assert h.end(pid, epoch, True)[0][0] == E.concurrent_transactions
    assert h.end(pid, epoch + 1, False)[0][0] == E.invalid_txn_state
    assert h.init()[0] == E.concurrent_transactions
    h.written(markers[0])
    assert h.state() is TxnState.COMPLETE_COMMIT
    assert h.core.snapshot()["tx"].partitions == frozenset()
    # A retried EndTxn (lost answer) gets the same answer; the other outcome does not.
    assert h.end(pid, epoch, True) == ((E.none, pid, epoch + 1), ())
    assert h.end(pid, epoch, False)[0][0] == E.invalid_txn_state
    # The new epoch starts the next transaction; the old one is fenced for it.
    assert h.add(pid, epoch, T1) == E.producer_fenced
    assert h.add(pid, epoch + 1, T1) == E.none
    assert h.end(pid, epoch, True)[0][0] == E.producer_fenced


def test_abort_completes_as_abort(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.add(pid, epoch, U0)
    answer, markers = h.end(pid, epoch, False)
    assert answer == (E.none, pid, epoch + 1) and not markers[0].commit
    assert h.end(pid, epoch + 1, True)[0][0] == E.invalid_txn_state
    h.written(markers[0])
    assert h.state() is TxnState.COMPLETE_ABORT
    assert h.end(pid, epoch, False)[0] == (E.none, pid, epoch + 1)
    assert h.end(pid, epoch + 1, True)[0][0] == E.invalid_txn_state


def test_commit_without_a_transaction_is_invalid_abort_bumps(h: Harness) -> None:
    _, pid, epoch = h.init()
    assert h.end(pid, epoch, True)[0][0] == E.invalid_txn_state
    answer, markers = h.end(pid, epoch, False)
    assert answer == (E.none, pid, epoch + 1) and markers == ()
    assert h.state() is TxnState.COMPLETE_ABORT


def test_end_txn_producer_errors(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.add(pid, epoch, T1)
    assert h.end(pid, epoch, True, tid="nope")[0][0] == E.invalid_producer_id_mapping
    assert h.end(pid + 1, epoch, True)[0][0] == E.invalid_producer_id_mapping
    assert h.end(pid, epoch + 1, True)[0][0] == E.producer_fenced
    _, _, new_epoch = h.init()  # fences `epoch` (and aborts the transaction)
    assert new_epoch == -1
    assert h.end(pid, epoch, True)[0][0] == E.producer_fenced


def test_stale_markers_report_is_ignored(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.add(pid, epoch, T1)
    _, markers = h.end(pid, epoch, True)
    assert h.core.markers_written("tx", pid, epoch, 0).records == ()
    assert h.state() is TxnState.PREPARE_COMMIT
    h.written(markers[0])
    assert h.core.markers_written("tx", pid, epoch + 1, 0).records == ()


# -- epoch exhaustion ---------------------------------------------------------------------


def _seed(h: Harness, epoch: int, state: TxnState = TxnState.EMPTY) -> None:
    record = TxnLogRecord(partition_for("tx", 50), encode_key("tx"), encode_value(
        TransactionLogValue(77, epoch, 60_000, state.id, (), 0, -1)))
    h.core.replay(record)
    h.records.append(record)


def test_end_with_an_exhausted_epoch_moves_to_a_new_producer_id(h: Harness) -> None:
    _seed(h, 32_765)
    assert h.init() == (E.none, 77, 32_766)
    h.add(77, 32_766, T1)
    answer, markers = h.end(77, 32_766, True)
    assert answer == (E.none, 1000, 0)
    assert markers == (MarkerBatch("tx", 77, 32_767, True, (T1,)),)
    assert h.add(1000, 0, T2) == E.concurrent_transactions
    h.written(markers[0])
    snap = h.core.snapshot()["tx"]
    assert (snap.producer_id, snap.producer_epoch, snap.previous_producer_id) == (1000, 0, 77)
    assert h.end(77, 32_766, True)[0] == (E.none, 1000, 0)  # retry with the old id
    assert h.add(77, 32_767, T2) == E.invalid_producer_id_mapping
    assert h.add(1000, 0, T2) == E.none
    assert h.replayed().snapshot() == h.core.snapshot()


def test_init_with_an_exhausted_epoch_allocates_a_new_producer_id(h: Harness) -> None:
    _seed(h, 32_766)
    assert h.init() == (E.none, 1000, 0)
    assert h.core.snapshot()["tx"].previous_producer_id == 77


# -- time -------------------------------------------------------------------------------


def test_timeout_aborts_and_fences(h: Harness) -> None:
    _, pid, epoch = h.init(timeout=1_000)
    h.add(pid, epoch, T1, now=100)
    assert h.core.next_deadline_ms() == 1_101
    assert h.take(h.core.tick(1_100)).markers == ()
    step = h.take(h.core.tick(1_101))
    assert step.markers == (MarkerBatch("tx", pid, epoch + 1, False, (T1,)),)
    assert h.end(pid, epoch, True)[0][0] == E.producer_fenced
    h.written(step.markers[0])
    assert h.state() is TxnState.COMPLETE_ABORT
    assert h.end(pid, epoch, False)[0][0] == E.producer_fenced  # not a retry: it was fenced
    assert h.add(pid, epoch, T1) == E.producer_fenced
    assert h.init() == (E.none, pid, epoch + 2)


def test_idle_transactional_ids_expire(h: Harness) -> None:
    h.init(now=5)
    assert h.core.next_deadline_ms() == 5 + 7 * DAY_MS
    assert h.take(h.core.tick(4 + 7 * DAY_MS)).records == ()
    step = h.take(h.core.tick(5 + 7 * DAY_MS))
    assert [r.value for r in step.records] == [None]
    assert h.core.describe(["tx"])[0].error == E.transactional_id_not_found
    assert h.replayed().snapshot() == {}


def test_ongoing_transactions_do_not_expire(h: Harness) -> None:
    _, pid, epoch = h.init(timeout=900_000)
    h.add(pid, epoch, T1)
    assert h.core.next_deadline_ms() == 900_001


# -- admin ------------------------------------------------------------------------------


def test_describe_and_list(h: Harness) -> None:
    _, pid, epoch = h.init(timeout=5_000)
    h.init(tid="other")
    h.add(pid, epoch, T2, T1, U0, now=3)
    described = h.core.describe(["tx", "missing"])
    assert described[0].state == "Ongoing" and described[0].txn_timeout_ms == 5_000
    assert described[0].topics == (("t", (0, 1)), ("u", (0,)))
    assert described[0].txn_start_timestamp_ms == 3
    assert described[1].error == E.transactional_id_not_found
    unknown, listed = h.core.list_transactions(["Ongoing", "Bogus"])
    assert unknown == ("Bogus",) and [x.transactional_id for x in listed] == ["tx"]
    _, listed = h.core.list_transactions(producer_id_filters=[pid + 1])
    assert [x.transactional_id for x in listed] == ["other"]
    assert len(h.core.list_transactions()[1]) == 2
    _, listed = h.core.list_transactions(duration_filter_ms=10, now_ms=14)
    assert [x.transactional_id for x in listed] == ["tx"]
    assert h.core.list_transactions(duration_filter_ms=10, now_ms=13)[1] == []


# -- replay -----------------------------------------------------------------------------


def test_replay_reproduces_state_and_resumes_markers(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.add(pid, epoch, T1, U0)
    _, markers = h.end(pid, epoch, True)
    h.init(tid="b")
    fresh = h.replayed()
    assert fresh.snapshot() == h.core.snapshot()
    assert fresh.next_deadline_ms() == 0
    assert fresh.tick(1).markers == markers
    assert fresh.next_deadline_ms() != 0
    assert all(r.partition == partition_for(decode_key(r.key), 50) for r in h.records)


def test_replay_rejects_garbage() -> None:
    core = TransactionCoordinator(TransactionConfig())
    with pytest.raises(LogFormatError):
        core.replay(TxnLogRecord(0, b"\x00\x01\x00\x01x", None))
    value = encode_value(TransactionLogValue(1, 0, 1000, 42, (), 0, -1))
    with pytest.raises(LogFormatError):
        core.replay(TxnLogRecord(0, encode_key("x"), value))


# -- log format -------------------------------------------------------------------------


def test_partition_for_is_kafkas_utils_abs_of_java_hash_code() -> None:
    assert java_string_hash("hello") == 99162322
    assert partition_for("hello", 50) == 99162322 % 50
    assert java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for("polygenelubricants", 50) == 0
    negative = "txn-10"  # hashCode -859841438: Utils.abs gives 38, & 0x7fffffff gives 10
    h = java_string_hash(negative)
    assert h == -859841438 and partition_for(negative, 50) == 38


VALUE = TransactionLogValue(5, 3, 60_000, TxnState.ONGOING.id, (("t", (0, 1)), ("u", ())),
                            10, 5, 4, 9, 2)


@pytest.mark.parametrize("version", [0, 1])
def test_value_round_trip_and_truncation(version: int) -> None:
    raw = encode_value(VALUE, version)
    decoded = decode_value(raw)
    if version == 0:  # v0 has no tagged fields
        assert decoded == TransactionLogValue(5, 3, 60_000, 1, VALUE.partitions, 10, 5)
    else:
        assert decoded == VALUE
    for cut in range(len(raw)):
        with pytest.raises(LogFormatError):
            decode_value(raw[:cut])
    with pytest.raises(LogFormatError):
        decode_value(raw + b"\x00")


def test_v0_value_bytes_match_kafkas_layout() -> None:
    raw = encode_value(TransactionLogValue(5, 3, 100, 1, (("t", (2,)),), 10, 5), 0)
    assert raw == (struct.pack(">hqhib", 0, 5, 3, 100, 1) + struct.pack(">ih", 1, 1) + b"t"
                   + struct.pack(">iiqq", 1, 2, 10, 5))


def test_decoding_bounds_counts_and_versions() -> None:
    lying = struct.pack(">hqhibi", 0, 5, 3, 100, 1, 2**31 - 1)
    with pytest.raises(LogFormatError):
        decode_value(lying)
    null_partitions = struct.pack(">hqhibiqq", 0, 5, 3, 100, 0, -1, 1, 2)
    assert decode_value(null_partitions).partitions == ()
    with pytest.raises(LogFormatError):
        decode_value(struct.pack(">h", 2) + bytes(30))
    with pytest.raises(LogFormatError):
        decode_key(struct.pack(">h", 1) + encode_key("x")[2:])
    assert decode_key(encode_key("x")) == "x"
