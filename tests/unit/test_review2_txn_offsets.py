"""Review: a non-transactional tombstone of an offset (OffsetDelete) drops the pending
transactional offsets of that partition, live and on replay (Kafka's OffsetMetadataManager:
deleteOffsets writes a tombstone when an offset is committed or pending, and replaying a
tombstone removes the pending ones); expiry leaves an offset alone while a transaction has an
offset pending for its partition (cleanupExpiredOffsets)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as E

from strom.coordinator.group import GroupLogRecord
from tests.unit.test_group_coordinator import Harness
from tests.unit.test_group_txn_offsets import TP, committed, complete, replayed, txn_commit


def _log(h: Harness) -> list[GroupLogRecord | tuple[int, bool]]:
    return list(h.records)


def test_offset_delete_drops_a_pending_offset_that_also_has_a_committed_one() -> None:
    h = Harness()
    h.commit("", -1, ("t", 0, 1))
    txn_commit(h, ("t", 0, 5))
    step = h.take(h.c.delete_offsets("g", [TP], h.now))
    assert step.result == (E.none, (("t", 0, E.none),))
    assert h.c.unstable_offsets("g") == set()
    log = _log(h)
    complete(h, commit=True)
    log.append((1000, True))
    assert committed(h.c) == {}  # the deleted offset does not come back with the COMMIT
    assert committed(replayed(log)) == {}


def test_offset_delete_of_a_partition_with_only_a_pending_offset() -> None:
    h = Harness()
    h.commit("", -1, ("t", 1, 1))  # keeps the group
    txn_commit(h, ("t", 0, 5))
    h.take(h.c.delete_offsets("g", [TP], h.now))
    assert h.records[-1].value is None  # a tombstone for the pending one
    log = _log(h)
    complete(h, commit=True)
    log.append((1000, True))
    assert committed(h.c) == {("t", 1): 1}
    assert committed(replayed(log)) == {("t", 1): 1}


def test_expiry_keeps_an_offset_while_a_transaction_has_one_pending() -> None:
    h = Harness()
    h.commit("", -1, ("t", 0, 1), ("t", 1, 1))
    txn_commit(h, ("t", 0, 5))
    h.advance(h.config.offsets_retention_ms + h.config.offsets_retention_check_interval_ms)
    assert committed(h.c) == {TP: 1}  # ("t", 1) expired, ("t", 0) waits for the transaction
    complete(h, commit=False)
    assert committed(h.c) == {TP: 1}
