"""ProducerStateManager's transaction part follows Kafka's: transactional batches open a
transaction, markers close it (ABORT adds a .txnindex-like entry), the first unstable offset
is the earliest open transaction, aborted transactions are queried and pruned like Kafka's
collectAbortedTxns, markers and non-transactional writes are checked, open transactions never
expire, and snapshot version 2 round trips (version 1 still loads)."""

from __future__ import annotations

import struct
import zlib

import pytest

from strom.protocol.control_batch import ABORT, COMMIT
from strom.storage.producer_state import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    AbortedTxn,
    ProducerStateManager,
    Verdict,
    last_sequence,
)
from tests.unit.batch_factory import Header


def txn(state: ProducerStateManager, pid: int, offset: int, seq: int = 0, count: int = 1,
        epoch: int = 0, ts: int = 1000) -> None:
    state.apply_batch(Header(pid, epoch, seq, offset, count - 1, ts, is_transactional=True))


def marker(state: ProducerStateManager, pid: int, offset: int, commit: bool, epoch: int = 0,
           ts: int = 1000) -> None:
    state.apply_batch(Header(pid, epoch, -1, offset, 0, ts, is_control=True,
                             is_transactional=True), COMMIT if commit else ABORT)


def test_lifecycle_and_first_unstable_offset_with_interleaved_producers() -> None:
    state = ProducerStateManager()
    assert state.first_unstable_offset() is None
    txn(state, 1, 10, seq=0, count=2)  # 10-11
    txn(state, 2, 12, seq=0)  # 12
    txn(state, 1, 13, seq=2)  # same txn: first offset stays 10
    assert state.first_unstable_offset() == 10
    assert state.entry(1).current_txn_first_offset == 10  # type: ignore[union-attr]
    marker(state, 1, 14, commit=True)
    assert state.first_unstable_offset() == 12
    assert state.entry(1).current_txn_first_offset == -1  # type: ignore[union-attr]
    txn(state, 1, 15, seq=3)  # a new transaction, same epoch: the sequence continues
    assert state.first_unstable_offset() == 12
    marker(state, 2, 16, commit=False)
    assert state.first_unstable_offset() == 15
    marker(state, 1, 17, commit=False)
    assert state.first_unstable_offset() is None
    assert state.aborted_transactions(0, 100) == [(2, 12), (1, 15)]
    assert state.txn_image()[1] == (AbortedTxn(2, 12, 16, 15), AbortedTxn(1, 15, 17, 18))
    assert state.check(1, 0, 4, 4, transactional=True).verdict is Verdict.APPEND
    dup = state.check(1, 0, 3, 3, transactional=True)
    assert dup.verdict is Verdict.DUPLICATE  # batches are kept across a same-epoch marker
    assert [p.current_txn_start_offset for p in state.active_producers()] == [-1, -1]


def test_markers_never_add_batches_and_empty_transactions_add_nothing() -> None:
    state = ProducerStateManager()
    marker(state, 5, 0, commit=False)  # nothing open: no aborted entry
    assert state.aborted_transactions(0, 10) == [] and state.entry(5) is not None
    assert state.entry(5).batches == type(state.entry(5).batches)(maxlen=5)  # type: ignore[union-attr]
    txn(state, 5, 1, seq=0)
    marker(state, 5, 2, commit=True)
    assert len(state.entry(5).batches) == 1  # type: ignore[union-attr]
    marker(state, 5, 3, commit=True)  # a second marker: nothing open
    assert state.first_unstable_offset() is None and state.aborted_transactions(0, 10) == []
    # other control types (e.g. LEADER_CHANGE) and unknown markers close nothing
    txn(state, 5, 4, seq=1)
    state.apply_batch(Header(5, 0, -1, 5, 0, is_control=True), 2)
    state.apply_batch(Header(5, 0, -1, 6, 0, is_control=True), None)
    assert state.first_unstable_offset() == 4


def test_offset_commits_with_no_sequence_open_a_transaction() -> None:
    state = ProducerStateManager()
    txn(state, 9, 3, seq=-1)  # the group coordinator's transactional offset commit
    assert state.first_unstable_offset() == 3
    assert len(state.entry(9).batches) == 0  # type: ignore[union-attr]
    marker(state, 9, 4, commit=True)
    assert state.first_unstable_offset() is None


def test_epoch_bump_by_a_marker_clears_batches() -> None:
    state = ProducerStateManager()
    txn(state, 1, 0, seq=0, count=3)
    marker(state, 1, 3, commit=False, epoch=1)  # KIP-890: the abort marker bumps the epoch
    entry = state.entry(1)
    assert entry is not None and entry.epoch == 1 and not entry.batches
    assert state.aborted_transactions(0, 10) == [(1, 0)]
    assert state.check(1, 0, 3, 3, transactional=True).error_code == INVALID_PRODUCER_EPOCH
    assert state.check(1, 1, 0, 0, transactional=True).verdict is Verdict.APPEND
    marker(state, 1, 4, commit=True, epoch=0)  # an older epoch's marker is ignored
    assert state.entry(1).epoch == 1  # type: ignore[union-attr]


def test_check_marker() -> None:
    state = ProducerStateManager()
    assert state.check_marker(1, 0) is None  # unknown producer
    txn(state, 1, 0, epoch=3)
    assert state.check_marker(1, 3) is None
    assert state.check_marker(1, 4) is None  # newer: the marker bumps it
    assert state.check_marker(1, 2) == INVALID_PRODUCER_EPOCH


def test_non_transactional_write_during_a_transaction_is_invalid_txn_state() -> None:
    state = ProducerStateManager()
    txn(state, 1, 0, seq=0)
    bad = state.check(1, 0, 1, 1)
    assert bad.verdict is Verdict.REJECT and bad.error_code == INVALID_TXN_STATE
    assert state.check(1, 0, 1, 1, transactional=True).verdict is Verdict.APPEND
    assert state.check(1, 0, 0, 0).verdict is Verdict.DUPLICATE  # duplicates come first
    assert state.check(1, 0, 5, 5).error_code != INVALID_TXN_STATE  # sequence errors too
    marker(state, 1, 1, commit=True)
    assert state.check(1, 0, 1, 1).verdict is Verdict.APPEND


def test_aborted_transactions_query_bounds() -> None:
    state = ProducerStateManager()
    txn(state, 1, 0)
    txn(state, 2, 1)
    marker(state, 1, 2, commit=False)  # [0, 2], LSO then 1
    txn(state, 3, 3)
    marker(state, 2, 4, commit=False)  # [1, 4], LSO then 3
    marker(state, 3, 5, commit=False)  # [3, 5], LSO then 6
    everything = [(1, 0), (2, 1), (3, 3)]
    assert state.aborted_transactions(0, 6) == everything
    assert state.aborted_transactions(3, 6) == [(2, 1), (3, 3)]  # marker >= fetch offset
    assert state.aborted_transactions(5, 6) == [(3, 3)]
    assert state.aborted_transactions(6, 10) == []
    assert state.aborted_transactions(0, 1) == [(1, 0)]  # first offset < upper bound
    assert state.aborted_transactions(0, 3) == [(1, 0), (2, 1)]
    state.prune_aborted(3)
    assert state.aborted_transactions(0, 6) == [(2, 1), (3, 3)]
    state.prune_aborted(6)
    assert state.aborted_transactions(0, 6) == [] and state.aborted_ranges() == []


def test_open_transactions_never_expire_and_markers_count_as_activity() -> None:
    state = ProducerStateManager(producer_id_expiration_ms=1000)
    txn(state, 1, 0, ts=0)
    txn(state, 2, 1, ts=0)
    marker(state, 2, 2, commit=True, ts=5000)
    assert state.expire(5500) == 0  # 1 is open, 2's marker is recent
    assert state.expire(6000) == 1 and state.entry(2) is None and state.entry(1) is not None
    marker(state, 1, 3, commit=False, ts=7000)
    assert state.expire(8000) == 1 and len(state) == 0
    assert state.aborted_transactions(0, 10) == [(1, 0)]  # the index outlives the producer


def test_snapshot_v2_round_trip() -> None:
    state = ProducerStateManager()
    txn(state, 1, 0, seq=0, count=2)
    txn(state, 2, 2, seq=0)
    marker(state, 2, 3, commit=False)
    txn(state, 3, 4, seq=-1)
    marker(state, 4, 5, commit=True, ts=4242)
    other = ProducerStateManager()
    other.load_snapshot(state.snapshot())
    assert other.entries() == state.entries() and other.txn_image() == state.txn_image()
    assert other.first_unstable_offset() == 0
    assert other.entry(4).last_timestamp == 4242  # type: ignore[union-attr]
    marker(other, 1, 6, commit=False)
    assert other.aborted_transactions(0, 10) == [(1, 0), (2, 2)]
    data = state.snapshot()
    for damaged in (data[:-1], data + b"\0", data[:12] + bytes([data[12] ^ 1]) + data[13:]):
        with pytest.raises(ValueError):
            ProducerStateManager().load_snapshot(damaged)


def test_snapshot_version_1_still_loads() -> None:
    body = struct.pack(">qhB", 7, 2, 1) + struct.pack(">iiqqq", 0, 4, 10, 14, 999)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    v1 = struct.pack(">4sBII", b"STPS", 1, crc, 1) + body
    state = ProducerStateManager()
    state.load_snapshot(v1)
    assert state.entry(7) is not None and state.entry(7).epoch == 2  # type: ignore[union-attr]
    assert state.entry(7).last_seq == 4  # type: ignore[union-attr]
    assert state.first_unstable_offset() is None and state.txn_image() == ({}, ())
    assert state.check(7, 2, 5, last_sequence(5, 0)).verdict is Verdict.APPEND
