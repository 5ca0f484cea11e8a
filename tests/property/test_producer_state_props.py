"""Random produce attempts from idempotent producers (new batches, retries of any earlier
batch, reordered sends, epoch bumps, sequences wrapping at Int.MAX) against one partition that
appends only what ProducerStateManager.check accepts: the log holds each (producer, epoch,
sequence) at most once and in sequence order, a retried batch is answered with its original
offsets or refused but never appended twice, and the state equals both its snapshot reloaded
and a replay of the log's batch headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from strom.storage.producer_state import (
    INT32_MAX,
    INVALID_PRODUCER_EPOCH,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    ProducerStateManager,
    Verdict,
    in_sequence,
    last_sequence,
)
from tests.unit.batch_factory import Header

PRODUCERS = (1, 2, 3)
FIRST_SEQUENCE = {1: 0, 2: INT32_MAX - 6, 3: 0}  # producer 2 wraps at Int.MAX



@dataclass
class SentBatch:
    epoch: int
    first_seq: int
    count: int
    offsets: tuple[int, int] | None = None  # (first, last) once appended


@dataclass
class Client:
    epoch: int = 0
    next_seq: int = 0
    batches: list[SentBatch] = field(default_factory=list)


class ProducerStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ProducerStateManager()
        self.log: list[Header] = []
        self.next_offset = 0
        self.clients = {pid: Client(next_seq=FIRST_SEQUENCE[pid]) for pid in PRODUCERS}

    @rule(pid=st.sampled_from(PRODUCERS), count=st.integers(1, 4))
    def new_batch(self, pid: int, count: int) -> None:
        c = self.clients[pid]
        c.batches.append(SentBatch(c.epoch, c.next_seq, count))
        c.next_seq = (last_sequence(c.next_seq, count - 1) + 1) & INT32_MAX

    @rule(pid=st.sampled_from(PRODUCERS))
    def bump_epoch(self, pid: int) -> None:
        c = self.clients[pid]
        c.epoch += 1
        c.next_seq = 0

    @rule(pid=st.sampled_from(PRODUCERS), pick=st.integers(0, 10**6))
    def send(self, pid: int, pick: int) -> None:
        """Sends (or re-sends) any batch the client made: in order, reordered or a retry."""
        c = self.clients[pid]
        if not c.batches:
            return
        sent = c.batches[-1 - pick % min(len(c.batches), 8)]
        last = last_sequence(sent.first_seq, sent.count - 1)
        result = self.state.check(pid, sent.epoch, sent.first_seq, last)
        entry = self.state.entry(pid)
        if result.verdict is Verdict.DUPLICATE:
            assert result.duplicate is not None
            assert sent.offsets == (result.duplicate.first_offset, result.duplicate.last_offset)
            return
        if result.verdict is Verdict.REJECT:
            assert entry is not None
            assert result.error_code in (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH)
            return
        assert sent.offsets is None, "an appended batch was accepted again"
        header = Header(pid, sent.epoch, sent.first_seq, self.next_offset, sent.count - 1)
        self.log.append(header)
        self.state.apply_batch(header)
        sent.offsets = (self.next_offset, self.next_offset + sent.count - 1)
        self.next_offset += sent.count

    @invariant()
    def log_holds_each_sequence_once_in_order(self) -> None:
        seen: set[tuple[int, int, int]] = set()
        last: dict[tuple[int, int], int] = {}
        epochs: dict[int, int] = {}
        for h in self.log:
            assert h.producer_epoch >= epochs.get(h.producer_id, h.producer_epoch)
            epochs[h.producer_id] = h.producer_epoch
            key = (h.producer_id, h.producer_epoch)
            if key in last:
                assert in_sequence(last[key], h.base_sequence)
            last[key] = last_sequence(h.base_sequence, h.last_offset_delta)
            for i in range(h.last_offset_delta + 1):
                seq = (h.base_sequence + i) & INT32_MAX
                assert (h.producer_id, h.producer_epoch, seq) not in seen
                seen.add((h.producer_id, h.producer_epoch, seq))

    @invariant()
    def snapshot_and_replay_equal_live_state(self) -> None:
        live = self.state.entries()
        loaded = ProducerStateManager()
        loaded.load_snapshot(self.state.snapshot())
        assert loaded.entries() == live
        replayed = ProducerStateManager()
        for h in self.log:
            replayed.apply_batch(h)
        assert replayed.entries() == live


ProducerStateMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60,
                                                  deadline=None)
TestProducerStateMachine = ProducerStateMachine.TestCase
