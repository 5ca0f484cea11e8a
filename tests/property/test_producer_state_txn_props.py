"""Random transactional producers (begin, append, offset commits, commit, abort, with and
without epoch bumps, non-transactional writes in between) against one partition's
ProducerStateManager: the first unstable offset is always the earliest open transaction's
first offset, the aborted transactions and every aborted_transactions window match a simple
model, fenced markers and non-transactional writes during a transaction are refused, open
transactions never expire, and a snapshot reload or a replay of the log equals the live
state."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from strom.protocol.control_batch import ABORT, COMMIT
from strom.storage.producer_state import (
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    ProducerStateManager,
    Verdict,
    last_sequence,
)
from tests.unit.batch_factory import Header

PRODUCERS = (1, 2, 3)



@dataclass
class Client:
    epoch: int = 0
    next_seq: int = 0
    open_first: int | None = None


class TxnStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ProducerStateManager()
        self.log: list[tuple[Header, int | None]] = []
        self.next_offset = 0
        self.clients = {pid: Client() for pid in PRODUCERS}
        self.aborted: list[tuple[int, int, int]] = []  # model: (pid, first, marker offset)

    def _append(self, header: Header, kind: int | None = None) -> None:
        self.log.append((header, kind))
        self.state.apply_batch(header, kind)
        self.next_offset = header.base_offset + header.last_offset_delta + 1

    @rule(pid=st.sampled_from(PRODUCERS), count=st.integers(1, 3))
    def transactional_batch(self, pid: int, count: int) -> None:
        c = self.clients[pid]
        result = self.state.check(pid, c.epoch, c.next_seq, last_sequence(c.next_seq, count - 1),
                                  transactional=True)
        assert result.verdict is Verdict.APPEND
        self._append(Header(pid, c.epoch, c.next_seq, self.next_offset, count - 1,
                            is_transactional=True))
        if c.open_first is None:
            c.open_first = self.next_offset - count
        c.next_seq += count

    @rule(pid=st.sampled_from(PRODUCERS))
    def offset_commit(self, pid: int) -> None:
        """The group coordinator's transactional offset commit: base sequence -1."""
        c = self.clients[pid]
        self._append(Header(pid, c.epoch, -1, self.next_offset, 0, is_transactional=True))
        if c.open_first is None:
            c.open_first = self.next_offset - 1

    @rule(pid=st.sampled_from(PRODUCERS))
    def plain_batch(self, pid: int) -> None:
        c = self.clients[pid]
        result = self.state.check(pid, c.epoch, c.next_seq, c.next_seq)
        if c.open_first is not None:
            assert result.verdict is Verdict.REJECT and result.error_code == INVALID_TXN_STATE
            return
        assert result.verdict is Verdict.APPEND
        self._append(Header(pid, c.epoch, c.next_seq, self.next_offset, 0))
        c.next_seq += 1

    @rule(pid=st.sampled_from(PRODUCERS), commit=st.booleans(), bump=st.booleans())
    def end_transaction(self, pid: int, commit: bool, bump: bool) -> None:
        c = self.clients[pid]
        if c.epoch > 0:
            assert self.state.check_marker(pid, c.epoch - 1) == INVALID_PRODUCER_EPOCH
        epoch = c.epoch + 1 if bump else c.epoch
        assert self.state.check_marker(pid, epoch) is None
        offset = self.next_offset
        self._append(Header(pid, epoch, -1, offset, 0, is_control=True, is_transactional=True),
                     COMMIT if commit else ABORT)
        if c.open_first is not None and not commit:
            self.aborted.append((pid, c.open_first, offset))
        c.open_first = None
        if bump:
            c.epoch, c.next_seq = epoch, 0

    @rule(cut=st.integers(0, 100))
    def prune(self, cut: int) -> None:
        if cut > 90:  # rarely: the log start offset moves
            start = self.next_offset // 2
            self.state.prune_aborted(start)
            self.aborted = [a for a in self.aborted if a[2] >= start]

    @invariant()
    def first_unstable_offset_is_the_earliest_open_transaction(self) -> None:
        opened = [c.open_first for c in self.clients.values() if c.open_first is not None]
        assert self.state.first_unstable_offset() == (min(opened) if opened else None)

    @invariant()
    def aborted_transactions_match_the_model(self) -> None:
        assert self.state.aborted_ranges() == self.aborted
        end = self.next_offset + 2
        step = max(1, end // 6)
        for fetch in range(0, end, step):
            for upper in range(fetch, end + step, step):
                want = sorted(((pid, first) for pid, first, last in self.aborted
                               if last >= fetch and first < upper), key=lambda a: a[1])
                assert self.state.aborted_transactions(fetch, upper) == want

    @invariant()
    def snapshot_and_replay_equal_live_state(self) -> None:
        loaded = ProducerStateManager()
        loaded.load_snapshot(self.state.snapshot())
        assert loaded.entries() == self.state.entries()
        assert loaded.txn_image() == self.state.txn_image()
        assert loaded.first_unstable_offset() == self.state.first_unstable_offset()
        replayed = ProducerStateManager()
        for header, kind in self.log:
            replayed.apply_batch(header, kind)
        replayed.prune_aborted(self.aborted[0][2] if self.aborted else self.next_offset)
        assert replayed.entries() == self.state.entries()
        assert replayed.txn_image() == self.state.txn_image()
        # open transactions outlive any expiry
        loaded.expire(2**62)
        assert set(loaded.txn_image()[0]) == {pid for pid, c in self.clients.items()
                                              if c.open_first is not None}
        assert len(loaded) == len(loaded.txn_image()[0])


TxnStateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50,
                                             deadline=None)
TestTxnStateMachine = TxnStateMachine.TestCase
