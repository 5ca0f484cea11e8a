"""Property: whatever transactional producers (current ones and fenced "zombies" with old
epochs) and time do to the transaction coordinator core, in any order and with markers written
late or after a coordinator restart, a fenced epoch never succeeds again, a transaction that
reached PrepareCommit (PrepareAbort) always ends CompleteCommit (CompleteAbort), markers are
requested for exactly the partitions added, epochs never go back, and the records it emitted
rebuild its state."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from kio.schema.errors import ErrorCode as E

from strom.coordinator.hashing import partition_for
from strom.coordinator.transaction import (
    MarkerBatch,
    Step,
    TransactionConfig,
    TransactionCoordinator,
    TxnLogRecord,
    TxnState,
)
from strom.coordinator.transaction.log_format import TransactionLogValue, encode_key, encode_value

IDS = ("a", "b", "c")
PARTITIONS = (("t", 0), ("t", 1), ("u", 0))
EXPIRATION_MS = 200_000
SEEDED_PID = 500
PREPARE = {True: TxnState.PREPARE_COMMIT, False: TxnState.PREPARE_ABORT}
COMPLETE = {True: TxnState.COMPLETE_COMMIT, False: TxnState.COMPLETE_ABORT}

Identity = tuple[str, int, int]  # (transactional id, producer id, epoch)


class TransactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count(1000)
        self.config = TransactionConfig(
            transactional_id_expiration_ms=EXPIRATION_MS,
            allocate_producer_id=lambda: next(self.ids),
            offsets_partition_for=lambda group: 3)
        self.core = TransactionCoordinator(self.config)
        self.now = 0
        self.records: list[TxnLogRecord] = []
        self.producers: list[Identity] = []  # every identity a client ever held
        self.fenced: set[Identity] = set()  # may never succeed again
        self.retired: dict[Identity, tuple[bool, tuple[int, int, int]]] = {}  # ended: answer
        self.added: dict[str, set[tuple[str, int]]] = {t: set() for t in IDS}
        self.pending: list[MarkerBatch] = []  # markers the shell still has to write
        self.seen: dict[str, tuple[int, int]] = {}  # last (producer id, epoch) per id

    @initialize(epoch=st.sampled_from([0, 32_764, 32_765, 32_766]))
    def seed(self, epoch: int) -> None:
        """Id "c" starts near epoch exhaustion, so producer-id rotation happens."""
        record = TxnLogRecord(partition_for("c", 50), encode_key("c"), encode_value(
            TransactionLogValue(SEEDED_PID, epoch, 60_000, TxnState.EMPTY.id, (), 0, -1)))
        self.core.replay(record)
        self.records.append(record)
        self.producers.append(("c", SEEDED_PID, epoch))

    # -- the shell --------------------------------------------------------------------------

    def deliver(self, step: Step[Any]) -> None:
        self.records.extend(step.records)
        for batch in step.markers:
            tid = batch.transactional_id
            assert set(batch.partitions) == self.added[tid], (batch, self.added[tid])
            assert batch.partitions, "markers for nothing"
            assert all(p.transactional_id != tid for p in self.pending), "two batches for one id"
            self.added[tid] = set()
            self.pending.append(batch)

    def view(self, tid: str) -> tuple[int, int] | None:
        snap = self.core.snapshot().get(tid)
        if snap is None:
            return None
        if snap.next_producer_id != -1:
            return snap.next_producer_id, 0
        return snap.producer_id, snap.producer_epoch

    def fence_all_but(self, tid: str, keep: tuple[int, int] | None) -> None:
        for identity in self.producers:
            if identity[0] == tid and identity[1:] != keep:
                self.fenced.add(identity)

    # -- rules ------------------------------------------------------------------------------

    @rule(tid=st.sampled_from(IDS), timeout=st.sampled_from([1_000, 60_000]),
          data=st.data())
    def init(self, tid: str, timeout: int, data: st.DataObject) -> None:
        mine = [p for p in self.producers if p[0] == tid]
        expected = data.draw(st.sampled_from([None, *mine]))
        pid, epoch = expected[1:] if expected else (-1, -1)
        before = self.view(tid)
        step = self.core.init_producer_id(tid, timeout, pid, epoch, self.now)
        self.deliver(step)
        result = step.result
        if step.markers:  # an Ongoing transaction was aborted: its producer is fenced
            event("InitProducerId aborted an ongoing transaction")
            assert result.error == E.concurrent_transactions
            self.fence_all_but(tid, None)
        if result.error == E.none:
            new = (tid, result.producer_id, result.producer_epoch)
            if new[1:] != before:
                self.fence_all_but(tid, new[1:])
            assert new not in self.fenced or expected is not None
            self.fenced.discard(new)
            self.producers.append(new)
        else:
            assert result.error in (E.concurrent_transactions, E.producer_fenced), result

    def pick(self, data: st.DataObject) -> Identity:
        return data.draw(st.sampled_from(self.producers))

    @precondition(lambda self: self.producers)
    @rule(data=st.data(), partitions=st.lists(st.sampled_from(PARTITIONS), min_size=1,
                                              max_size=3), offsets=st.booleans())
    def add(self, data: st.DataObject, partitions: list[tuple[str, int]], offsets: bool,
            ) -> None:
        tid, pid, epoch = identity = self.pick(data)
        if offsets:
            step = self.core.add_offsets(tid, pid, epoch, "group", self.now)
            wanted = [("__consumer_offsets", 3)]
            error = step.result
        else:
            step = self.core.add_partitions(tid, pid, epoch, partitions, self.now)
            wanted, error = partitions, step.result.error
        self.deliver(step)
        if error == E.none:
            assert identity not in self.fenced and identity not in self.retired, identity
            assert self.core.snapshot()[tid].state is TxnState.ONGOING
            self.added[tid].update(wanted)
            event("add succeeded")

    @precondition(lambda self: self.producers)
    @rule(data=st.data(), commit=st.booleans())
    def end(self, data: st.DataObject, commit: bool) -> None:
        tid, pid, epoch = identity = self.pick(data)
        before = self.core.snapshot().get(tid)
        step = self.core.end_txn(tid, pid, epoch, commit, self.now)
        self.deliver(step)
        result = step.result
        if result.error != E.none:
            return
        answer = (result.error, result.producer_id, result.producer_epoch)
        assert identity not in self.fenced, identity
        assert before is not None
        if identity in self.retired:  # a retry: the same outcome, the same answer
            assert self.retired[identity] == (commit, answer)
            event("EndTxn retry answered again")
            return
        assert before.state is TxnState.ONGOING or not commit
        self.retired[identity] = (commit, answer)
        event("EndTxn succeeded" if answer[1] == pid else "EndTxn moved to a new producer id")
        assert answer[1:] != (pid, epoch)
        self.producers.append((tid, *answer[1:]))

    @precondition(lambda self: self.producers)
    @rule(data=st.data(), commit=st.booleans())
    def end_v1(self, data: st.DataObject, commit: bool) -> None:
        """EndTxn below v5 (transaction version 1): the epoch stays."""
        tid, pid, epoch = identity = self.pick(data)
        before = self.core.snapshot().get(tid)
        step = self.core.end_txn(tid, pid, epoch, commit, self.now, bump_epoch=False)
        self.deliver(step)
        result = step.result
        if result.error != E.none:
            return
        assert identity not in self.fenced and identity not in self.retired, identity
        assert before is not None
        assert (result.producer_id, result.producer_epoch) == (pid, epoch)
        if before.state is TxnState.ONGOING:
            event("EndTxn v1 ended a transaction")
            assert self.core.snapshot()[tid].state in (PREPARE[commit], COMPLETE[commit])
        else:
            event("EndTxn v1 retry answered again")
            assert before.state is COMPLETE[commit], before

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def write_markers(self, data: st.DataObject) -> None:
        batch = data.draw(st.sampled_from(self.pending))
        self.pending.remove(batch)
        self.deliver(self.core.markers_written(batch.transactional_id, batch.producer_id,
                                               batch.producer_epoch, self.now))
        assert self.core.snapshot()[batch.transactional_id].state is COMPLETE[batch.commit]

    @rule(ms=st.sampled_from([100, 1_500, 70_000, EXPIRATION_MS]))
    def advance(self, ms: int) -> None:
        self.now += ms
        views = {tid: self.view(tid) for tid in IDS}
        step = self.core.tick(self.now)
        for batch in step.markers:  # timeouts fence the producer that ran the transaction
            if batch.transactional_id not in {p.transactional_id for p in self.pending}:
                event("timed-out transaction aborted")
                self.fence_all_but(batch.transactional_id, None)
        self.deliver(step)
        for record in step.records:
            if record.value is None:  # expired
                tid = next(t for t in IDS if encode_key(t) == record.key)
                assert views[tid] is not None and not self.added[tid]
                self.seen.pop(tid, None)
                event("transactional id expired")
                self.fence_all_but(tid, None)
        deadline = self.core.next_deadline_ms()
        assert deadline is None or deadline > self.now

    @rule()
    def restart(self) -> None:
        """The coordinator moves: a new one replays the log; markers in flight are lost and
        the new one asks for them again."""
        fresh = self.replayed()
        assert fresh.snapshot() == self.core.snapshot()
        self.core = fresh
        lost, self.pending = self.pending, []
        if lost:
            event("restart with markers in flight")
        for batch in lost:
            self.added[batch.transactional_id] = set(batch.partitions)
        assert fresh.next_deadline_ms() == (0 if lost else fresh.next_deadline_ms())
        self.deliver(fresh.tick(self.now))
        assert {(b.transactional_id, b.producer_id, b.producer_epoch, b.commit)
                for b in self.pending} == {(b.transactional_id, b.producer_id,
                                            b.producer_epoch, b.commit) for b in lost}

    def replayed(self) -> TransactionCoordinator:
        fresh = TransactionCoordinator(self.config)
        for record in self.records:
            fresh.replay(record)
        return fresh

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def states_agree_with_the_shell(self) -> None:
        snapshot = self.core.snapshot()
        pending = {b.transactional_id: b for b in self.pending}
        for tid in IDS:
            snap = snapshot.get(tid)
            if snap is None:
                assert tid not in pending
                continue
            batch = pending.get(tid)
            if batch is not None:  # nothing moves a transaction being completed
                assert snap.state is PREPARE[batch.commit]
                assert (snap.producer_id, snap.producer_epoch) == (batch.producer_id,
                                                                   batch.producer_epoch)
            else:
                assert snap.state not in PREPARE.values()
            assert snap.partitions == frozenset(self.added[tid] if batch is None
                                                else batch.partitions)
            assert (snap.state is TxnState.ONGOING) == bool(self.added[tid])

    @invariant()
    def epochs_never_go_back(self) -> None:
        for tid, snap in self.core.snapshot().items():
            current = (snap.producer_id, snap.producer_epoch)
            previous = self.seen.get(tid)
            if previous is not None:
                if current[0] == previous[0]:
                    assert current[1] >= previous[1], (tid, previous, current)
                else:
                    assert current[0] > previous[0] and snap.producer_epoch == 0
            assert 0 <= snap.producer_epoch <= 32_767
            self.seen[tid] = current

    def teardown(self) -> None:
        assert self.replayed().snapshot() == self.core.snapshot()


TransactionMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50,
                                                deadline=None)
TestTransactionStateMachine = TransactionMachine.TestCase
