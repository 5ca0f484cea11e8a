"""Transactional offset commits follow Kafka's GroupCoordinator: TxnOffsetCommit offsets stay
pending (invisible, UNSTABLE_OFFSET_COMMIT to require_stable) until the producer's marker, a
COMMIT keeps whichever of the transaction's and a plain commit's records came later, an ABORT
drops them, KIP-447 member checks apply, and replaying `__consumer_offsets` with interleaved
transactional batches and markers rebuilds the same committed and pending offsets; the
GroupRuntime writes them as one transactional batch and reads markers back at start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode as E
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.static.primitive import i16, i32, i64

from strom.broker.handlers.txn_offset_commit import handle_txn_offset_commit
from strom.broker.state import Broker, RequestContext
from strom.config.broker import BrokerConfig
from strom.coordinator.group import GroupCoordinator, GroupLogRecord, OffsetCommit
from strom.coordinator.group.model import CommitRequest, GroupConfig, TxnCommitRequest
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.protocol.batch_header import read_batch_header
from strom.protocol.control_batch import build_control_batch
from strom.protocol.messages import ResponseBuilder, encode_response
from strom.storage.api import AppendBatch, chunks_bytes
from strom.storage.local.engine import LocalEngine
from tests.unit.test_consumer_group_protocol import beat, hb
from tests.unit.test_group_coordinator import Harness

PID, EPOCH = 1000, 3
TP = ("t", 0)


def txn_commit(h: Harness, *offsets: tuple[str, int, int], group: str = "g", pid: int = PID,
               generation: int = -1, member: str = "", instance: str | None = None,
               metadata: str | None = None) -> list[int]:
    req = TxnCommitRequest("tx", group, pid, EPOCH, generation, member, instance, tuple(
        OffsetCommit(t, p, o, -1, metadata) for t, p, o in offsets))
    step = h.take(h.c.txn_commit_offsets(req, h.now))
    assert step.result is not None
    return [error for _, _, error in step.result.partition_errors]


def complete(h: Harness, commit: bool, group: str = "g", pid: int = PID) -> None:
    step = h.take(h.c.complete_txn(h.c.partition_for(group), pid, commit, h.now))
    assert step.records == ()  # the marker is the record


def committed(c: GroupCoordinator, group: str = "g") -> dict[tuple[str, int], int]:
    return {tp: o.offset for tp, o in c.fetch_offsets(group, None)[1].items()}


def test_pending_until_commit_then_visible() -> None:
    h = Harness()
    assert txn_commit(h, ("t", 0, 5), ("t", 1, 7)) == [E.none, E.none]
    assert committed(h.c) == {}
    assert h.c.unstable_offsets("g") == {("t", 0), ("t", 1)}
    assert [(r.producer_id, r.producer_epoch) for r in h.records] == [(PID, EPOCH)] * 2
    assert {r.partition for r in h.records} == {h.c.partition_for("g")}
    complete(h, commit=True)
    assert committed(h.c) == {("t", 0): 5, ("t", 1): 7}
    assert h.c.unstable_offsets("g") == set()


def test_abort_drops_pending_and_keeps_committed() -> None:
    h = Harness()
    h.commit("", -1, ("t", 0, 1))
    txn_commit(h, ("t", 0, 9))
    complete(h, commit=False)
    assert committed(h.c) == {TP: 1}
    assert h.c.unstable_offsets("g") == set()
    complete(h, commit=True)  # a second marker finds nothing
    assert committed(h.c) == {TP: 1}


def test_later_record_wins_at_commit() -> None:
    h = Harness()
    h.commit("", -1, ("t", 0, 1), ("t", 1, 1))
    txn_commit(h, ("t", 0, 5), ("t", 1, 5))
    assert h.commit("", -1, ("t", 1, 8)) == [E.none]  # allowed while the txn is open
    complete(h, commit=True)
    assert committed(h.c) == {("t", 0): 5, ("t", 1): 8}


def test_other_producer_and_group_untouched() -> None:
    h = Harness()
    txn_commit(h, ("t", 0, 5), pid=1)
    txn_commit(h, ("t", 0, 6), pid=2)
    complete(h, commit=True, pid=2)
    assert committed(h.c) == {TP: 6}
    assert h.c.unstable_offsets("g") == {TP}  # producer 1's is still open
    complete(h, commit=True, pid=1)
    assert committed(h.c) == {TP: 6}  # producer 2's record came later


def test_member_validation_of_classic_group() -> None:
    h = Harness()
    a, _ = h.stable_group(2, instance=None)
    assert txn_commit(h, ("t", 0, 1), generation=1, member=a) == [E.none]
    assert txn_commit(h, ("t", 0, 1), generation=2, member=a) == [E.illegal_generation]
    assert txn_commit(h, ("t", 0, 1), generation=1, member="nobody") == [E.unknown_member_id]
    # v0-v2 (no member fields) commit into a group with members
    assert txn_commit(h, ("t", 0, 1)) == [E.none]
    assert txn_commit(h, ("t", 0, 1), group="fresh", generation=1) == [E.illegal_generation]
    errors = txn_commit(h, ("t", 0, 1), ("t", 1, 1), metadata="x" * 5000)
    assert errors == [E.offset_metadata_too_large] * 2


def test_fenced_static_member() -> None:
    h = Harness()
    [member] = h.stable_group(1, instance="i1")
    assert txn_commit(h, ("t", 0, 1), generation=1, member=member, instance="i1") == [E.none]
    assert txn_commit(h, ("t", 0, 1), generation=1, member="old",
                      instance="i1") == [E.fenced_instance_id]


def test_consumer_group_member_epoch() -> None:
    h = Harness()
    hb(h.c, beat("a", 0))
    assert txn_commit(h, ("t1", 0, 3), generation=1, member="a") == [E.none]
    assert txn_commit(h, ("t1", 0, 3), generation=0, member="a") == [E.illegal_generation]
    assert txn_commit(h, ("t1", 0, 3), generation=1, member="x") == [E.unknown_member_id]
    complete(h, commit=True)
    assert committed(h.c) == {("t1", 0): 3}


def test_pending_offsets_keep_the_group_from_expiring() -> None:
    h = Harness()
    txn_commit(h, ("t", 0, 4))
    h.advance(h.config.offsets_retention_check_interval_ms)
    assert h.c.unstable_offsets("g") == {TP}
    complete(h, commit=True)
    assert committed(h.c) == {TP: 4}
    assert h.c.delete_groups(["g"], h.now).result == [("g", E.none)]


def test_deleting_a_group_drops_its_pending_offsets() -> None:
    """Kafka's deleteAllOffsets: pending offsets get a tombstone too, and the transaction's
    later COMMIT marker brings nothing back, live or replayed."""
    h = Harness()
    txn_commit(h, ("t", 0, 4))
    step = h.c.delete_groups(["g"], h.now)
    assert step.result == [("g", E.none)]
    tombstones = [r for r in step.records if r.value is None]
    assert tombstones, "the pending partition needs a tombstone"
    log = [*h.records, *step.records]
    complete(h, commit=True)
    assert committed(h.c) == {}
    assert h.c.unstable_offsets("g") == set()
    fresh = replayed([*log, (PID, True)])
    assert committed(fresh) == {} and fresh.unstable_offsets("g") == set()


def replayed(records: list[GroupLogRecord | tuple[int, bool]]) -> GroupCoordinator:
    """A fresh coordinator fed records and (producer id, commit) markers in log order."""
    fresh = GroupCoordinator(GroupConfig())
    for entry in records:
        if isinstance(entry, tuple):
            fresh.replay_marker(fresh.partition_for("g"), *entry)
        else:
            fresh.replay(entry)
    return fresh


def test_replay_interleaved_batches_and_markers() -> None:
    h = Harness()
    log: list[GroupLogRecord | tuple[int, bool]] = []

    def mark() -> None:
        log.extend(h.records)
        h.records.clear()

    h.commit("", -1, ("t", 0, 1), ("t", 1, 1), ("t", 2, 1))
    txn_commit(h, ("t", 0, 5), ("t", 1, 5), pid=1)
    txn_commit(h, ("t", 2, 6), pid=2)
    h.commit("", -1, ("t", 1, 8))
    mark()
    complete(h, commit=True, pid=1)
    log.append((1, True))
    complete(h, commit=False, pid=2)
    log.append((2, False))
    txn_commit(h, ("t", 3, 9), pid=3)  # still open at the end of the log
    mark()
    fresh = replayed(log)
    assert committed(fresh) == committed(h.c) == {("t", 0): 5, ("t", 1): 8, ("t", 2): 1}
    assert fresh.unstable_offsets("g") == h.c.unstable_offsets("g") == {("t", 3)}
    # the open transaction ends later, with a live marker
    fresh.complete_txn(fresh.partition_for("g"), 3, True, h.now)
    assert committed(fresh)[("t", 3)] == 9


def test_replay_of_a_group_that_only_has_pending_offsets() -> None:
    h = Harness()
    txn_commit(h, ("t", 0, 2), group="only-txn")
    fresh = GroupCoordinator(GroupConfig())
    for record in h.records:
        fresh.replay(record)
    assert fresh.unstable_offsets("only-txn") == {TP}
    fresh.replay_marker(fresh.partition_for("only-txn"), PID, True)
    assert committed(fresh, "only-txn") == {TP: 2}


# -- the shell and the handler over a real engine ----------------------------------------------


class FakeTransactions:
    def __init__(self, error: int = 0) -> None:
        self.error = error
        self.calls: list[tuple[str, int, int, list[tuple[str, int]]]] = []

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
               partitions: list[tuple[str, int]]) -> int:
        self.calls.append((transactional_id, producer_id, producer_epoch, list(partitions)))
        return self.error

    def partition_for(self, transactional_id: str) -> int:
        return 0  # __transaction_state does not exist here: this broker's coordinator answers


def run_broker(tmp_path: Path, body: Any) -> Any:
    async def main() -> Any:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, {})
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        try:
            broker = Broker(config, engine)
            await broker.groups.start()
            try:
                return await body(broker, engine)
            finally:
                await broker.groups.stop()
        finally:
            await engine.close()

    return asyncio.run(main())


def request(group: str, *offsets: tuple[str, int, int], generation: int = -1,
            member: str = "") -> TxnOffsetCommitRequest:
    return TxnOffsetCommitRequest(
        transactional_id="tx", group_id=group, producer_id=i64(PID), producer_epoch=i16(EPOCH),
        generation_id=i32(generation), member_id=member, group_instance_id=None,
        topics=tuple(TxnOffsetCommitRequestTopic(name=t, partitions=(
            TxnOffsetCommitRequestPartition(partition_index=i32(p), committed_offset=i64(o),
                                            committed_leader_epoch=i32(-1),
                                            committed_metadata=""),))
                     for t, p, o in offsets))


async def call(broker: Broker, req: TxnOffsetCommitRequest) -> dict[tuple[str, int], int]:
    b = ResponseBuilder(28, 3)
    response = await handle_txn_offset_commit(broker, RequestContext("c", "h", 3, 1), req, b)
    encode_response(28, 3, 1, response)  # the response fits its schema
    return {(t.name, int(p.partition_index)): int(p.error_code)
            for t in response.topics for p in t.partitions}


def test_handler_runtime_and_restart(tmp_path: Path) -> None:
    async def first(broker: Broker, engine: LocalEngine) -> None:
        fake = FakeTransactions()
        broker.transactions = fake  # type: ignore[assignment]
        await engine.create_topic("t", 2, {})
        answer = await call(broker, request("g", ("t", 0, 5), ("t", 1, 6), ("nope", 0, 1)))
        assert answer == {("t", 0): 0, ("t", 1): 0, ("nope", 0): E.unknown_topic_or_partition}
        partition = broker.groups.partition_for("g")
        assert fake.calls == [("tx", PID, EPOCH, [(OFFSETS_TOPIC, partition)])]
        plog = engine.partition(OFFSETS_TOPIC, partition)
        data = chunks_bytes((await plog.read(0, 1 << 20, True)).chunks)
        header = read_batch_header(data)
        assert header.is_transactional and not header.is_control
        assert (header.producer_id, header.producer_epoch, header.records_count) == (PID, EPOCH, 2)
        assert header.next_offset == plog.log_end_offset  # one batch
        # the runtime writes the marker, then completes
        marker = bytearray(build_control_batch(PID, EPOCH, True, 0))
        await plog.append([AppendBatch(marker, 1, 0, 0)])
        await broker.groups.complete_txn(partition, PID, True)
        assert committed(broker.groups.core("g")) == {("t", 0): 5, ("t", 1): 6}
        # the committed transaction's offsets join the consumer-lag health windows
        windows = broker.groups.lag_history.windows("g")
        assert {tp: [c.offset for c in w] for tp, w in windows.items()} == {
            ("t", 0): [5], ("t", 1): [6]}
        # an open transaction at shutdown
        assert await call(broker, request("g", ("t", 0, 9))) == {("t", 0): 0}
        fake.error = E.invalid_txn_state
        assert await call(broker, request("g", ("t", 1, 9))) == {("t", 1): E.invalid_txn_state}
        assert await call(broker, request("", ("t", 1, 9))) == {("t", 1): E.invalid_group_id}

    async def second(broker: Broker, engine: LocalEngine) -> None:
        coordinator = broker.groups.core("g")
        assert committed(coordinator) == {("t", 0): 5, ("t", 1): 6}
        assert coordinator.unstable_offsets("g") == {("t", 0)}
        await broker.groups.complete_txn(broker.groups.partition_for("g"), PID, False)
        assert coordinator.unstable_offsets("g") == set()

    run_broker(tmp_path, first)
    run_broker(tmp_path, second)


def test_plain_commit_batches_are_not_transactional(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        await broker.groups.write("g", lambda core, now: core.commit_offsets(CommitRequest(
            "g", -1, "", None, (OffsetCommit("t", 0, 1, -1, None),)), now))
        plog = engine.partition(OFFSETS_TOPIC, broker.groups.partition_for("g"))
        header = read_batch_header(chunks_bytes((await plog.read(0, 1 << 20, True)).chunks))
        assert not header.is_transactional and header.producer_id == -1

    run_broker(tmp_path, body)
