"""Idempotent producer state of one partition: Kafka's ProducerStateManager, without I/O.

Per producer id the partition remembers the producer epoch and its last five batches
(first/last sequence, first/last offset, timestamp), which is what Kafka's brokers keep so that
a producer with up to five requests in flight can retry any of them:

* `check(producer_id, epoch, base_sequence, last_sequence)` is asked before an append
  (Kafka's `findDuplicateBatch`, `checkProducerEpoch`, `checkSequence`, in that order):

  - the same epoch and exactly the sequence range of a retained batch: a *duplicate*,
    answered with that batch's offsets and no error (Kafka 3.x; DUPLICATE_SEQUENCE_NUMBER is
    no longer sent);
  - an epoch older than the partition's: INVALID_PRODUCER_EPOCH;
  - a newer epoch: accepted only at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER; a producer
    the partition does not know (never seen, or expired) is accepted at any sequence (Kafka
    since KIP-360: UNKNOWN_PRODUCER_ID is no longer returned for produce);
  - the same epoch: the sequence must follow the last batch's (`Int.MAX` wraps to 0), else
    OUT_OF_ORDER_SEQUENCE_NUMBER.

  With `transactional=False`, a producer with an open transaction is refused with
  INVALID_TXN_STATE (Kafka's ProducerAppendInfo).

* `apply_batch(header, control_type)` records a batch once it is in the log, for appends and
  when the log is replayed at open (no checks: the log is the truth). Transactions (Kafka's
  ProducerStateManager, transaction part): a transactional data batch opens its producer's
  transaction at its base offset if none is open (also with base sequence -1: the group
  coordinator's transactional offset commits); a COMMIT or ABORT marker closes it, an ABORT
  adding an `AbortedTxn` (Kafka's .txnindex entry). A marker of a newer epoch (KIP-890 bump)
  takes the epoch and drops the retained batches; with the same epoch the sequence continues.
* `first_unstable_offset()` (the last stable offset's bound), `aborted_transactions(...)`
  (what a read_committed fetch returns), `prune_aborted(offset)` (log start offset, cleaner), and
  `check_marker(...)` before a marker is written.
* `active_producers()` lists each known producer's epoch and last batch (DescribeProducers).
* KIP-890 part 1 verification (Kafka's VerificationGuard): before a transactional batch that
  would begin its producer's transaction here is appended, the partition hands out a guard
  (`start_verification`), the transaction coordinator confirms the partition is in the
  producer's transaction, and the append goes ahead only if the guard is still the
  producer's current one (`verified`). A marker of the producer, a new epoch, or the first
  transactional batch written ends the guard, so a confirmation that raced the end of the
  transaction cannot open a hanging one.
* `expire(now_ms)` forgets producers whose last batch or marker timestamp is
  `producer.id.expiration.ms` old and that have no open transaction (Kafka's
  `removeExpiredProducers`).
* `snapshot()` / `load_snapshot(data)`: a compact binary image with a CRC
  (`producer_state_snapshot`).
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Protocol

from strom.storage.producer_state_snapshot import MAX_BATCHES, ProducerImage, decode, encode

INT32_MAX: Final = 2**31 - 1
NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
NO_OFFSET: Final = -1
BATCHES_RETAINED: Final = MAX_BATCHES  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
DEFAULT_PRODUCER_ID_EXPIRATION_MS: Final = 86_400_000

OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45
INVALID_PRODUCER_EPOCH: Final = 47
INVALID_TXN_STATE: Final = 48

ABORT_MARKER: Final = 0  # Kafka's ControlRecordType ids (strom.protocol.control_batch)
COMMIT_MARKER: Final = 1

class BatchHeaderLike(Protocol):
    """The fields of a v2 batch header that producer state reads (BatchHeader has them)."""

    @property
    def producer_id(self) -> int: ...

    @property
    def producer_epoch(self) -> int: ...

    @property
    def base_sequence(self) -> int: ...

    @property
    def base_offset(self) -> int: ...

    @property
    def last_offset_delta(self) -> int: ...

    @property
    def max_timestamp(self) -> int: ...

    @property
    def is_control(self) -> bool: ...

    @property
    def is_transactional(self) -> bool: ...


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    """The sequence of a batch's last record (Kafka's DefaultRecordBatch.incrementSequence)."""
    if base_sequence > INT32_MAX - last_offset_delta:
        return last_offset_delta - (INT32_MAX - base_sequence) - 1
    return base_sequence + last_offset_delta


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int  # the batch's max timestamp (the append time on LogAppendTime topics)


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    """An aborted transaction (Kafka's .txnindex entry): its first data offset, its ABORT
    marker's offset, and the last stable offset once it was aborted."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class VerificationGuard:
    """An opaque token: equal only to itself."""

    __slots__ = ()


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=BATCHES_RETAINED))
    current_txn_first_offset: int = NO_OFFSET  # of the open transaction; -1 if none
    marker_timestamp: int = -1  # of the last transaction marker; -1 if none

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_timestamp(self) -> int:
        """The last batch's or marker's timestamp, whichever is later."""
        batch_ts = self.batches[-1].timestamp if self.batches else -1
        return max(batch_ts, self.marker_timestamp)

    def find(self, first_seq: int, last_seq: int) -> BatchMetadata | None:
        for meta in self.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                return meta
        return None


@dataclass(frozen=True, slots=True)
class ActiveProducer:
    """What DescribeProducers reports of a producer (Kafka's ProducerStateEntry)."""

    producer_id: int
    epoch: int
    last_sequence: int  # of the last retained batch; NO_SEQUENCE if none
    last_timestamp: int  # the last batch's max timestamp; -1 if none
    current_txn_start_offset: int = NO_OFFSET  # the open transaction's first offset


class Verdict(enum.Enum):
    APPEND = "append"
    DUPLICATE = "duplicate"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    error_code: int = 0
    message: str | None = None
    duplicate: BatchMetadata | None = None  # for DUPLICATE: the batch already in the log


APPEND: Final = CheckResult(Verdict.APPEND)


class ProducerStateManager:
    """One partition's producer state; implements storage's ProducerStateTracker."""

    def __init__(self, producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS
                 ) -> None:
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._producers: dict[int, ProducerEntry] = {}
        self._ongoing: dict[int, int] = {}  # open transactions: first offset -> producer id
        self._aborted: list[AbortedTxn] = []  # in marker (last offset) order
        self._aborted_last: list[int] = []  # their last offsets, for bisecting
        self._verifying: dict[int, VerificationGuard] = {}  # producer id -> current guard

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def entries(self) -> dict[int, tuple[int, tuple[BatchMetadata, ...]]]:
        """producer id -> (epoch, retained batches): a comparable image of the state."""
        return {pid: (e.epoch, tuple(e.batches)) for pid, e in self._producers.items()}

    def txn_image(self) -> tuple[dict[int, int], tuple[AbortedTxn, ...]]:
        """(producer id -> open transaction's first offset, aborted transactions): a
        comparable image of the transaction state."""
        return ({pid: e.current_txn_first_offset for pid, e in self._producers.items()
                 if e.current_txn_first_offset >= 0}, tuple(self._aborted))

    def active_producers(self) -> list[ActiveProducer]:
        """Each producer the partition knows (not yet expired), in the order first seen."""
        return [ActiveProducer(e.producer_id, e.epoch, e.last_seq, e.last_timestamp,
                               e.current_txn_first_offset)
                for e in self._producers.values()]

    # -- before an append ----------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, base_sequence: int, last_seq: int, *,
              transactional: bool = False) -> CheckResult:
        """What to do with a client's batch (see the module docstring)."""
        entry = self._producers.get(producer_id)
        if entry is None:
            return APPEND  # unknown or expired: any sequence (Kafka 3.x)
        result = self._check_sequence(entry, epoch, base_sequence, last_seq)
        if (result is APPEND and not transactional
                and entry.current_txn_first_offset != NO_OFFSET):
            return CheckResult(
                Verdict.REJECT, INVALID_TXN_STATE,
                f"Expected transactional write from producer {producer_id} at offset "
                f"{entry.current_txn_first_offset}: a transaction is open")
        return result

    @staticmethod
    def _check_sequence(entry: ProducerEntry, epoch: int, base_sequence: int,
                        last_seq: int) -> CheckResult:
        producer_id = entry.producer_id
        if epoch == entry.epoch:
            duplicate = entry.find(base_sequence, last_seq)
            if duplicate is not None:
                return CheckResult(Verdict.DUPLICATE, duplicate=duplicate)
        if epoch < entry.epoch:
            return CheckResult(
                Verdict.REJECT, INVALID_PRODUCER_EPOCH,
                f"Epoch of producer {producer_id} is {epoch}, which is smaller than the last "
                f"seen epoch {entry.epoch}")
        if epoch > entry.epoch:
            if base_sequence != 0:
                return CheckResult(
                    Verdict.REJECT, OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"Invalid sequence number for new epoch {epoch} of producer "
                    f"{producer_id}: {base_sequence} (expected 0)")
            return APPEND
        if not in_sequence(entry.last_seq, base_sequence):
            return CheckResult(
                Verdict.REJECT, OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Out of order sequence number for producer {producer_id}: {base_sequence} "
                f"(incoming seq. number), {entry.last_seq} (current end sequence number)")
        return APPEND

    def has_open_transaction(self, producer_id: int) -> bool:
        entry = self._producers.get(producer_id)
        return entry is not None and entry.current_txn_first_offset != NO_OFFSET

    # -- KIP-890 verification ------------------------------------------------------------

    def start_verification(self, producer_id: int) -> VerificationGuard:
        """The producer's current guard, a new one if it has none."""
        guard = self._verifying.get(producer_id)
        if guard is None:
            guard = self._verifying[producer_id] = VerificationGuard()
        return guard

    def verified(self, producer_id: int, guard: VerificationGuard | None) -> bool:
        """Whether `guard` is still the producer's current one."""
        return guard is not None and self._verifying.get(producer_id) is guard

    def end_verification(self, producer_id: int, guard: VerificationGuard | None = None
                         ) -> None:
        """Forgets the producer's guard (only if it is `guard`, when given)."""
        if guard is None or self._verifying.get(producer_id) is guard:
            self._verifying.pop(producer_id, None)

    def check_marker(self, producer_id: int, producer_epoch: int) -> int | None:
        """INVALID_PRODUCER_EPOCH if the partition knows a newer epoch of the producer than a
        transaction marker's, else None."""
        entry = self._producers.get(producer_id)
        if entry is not None and producer_epoch < entry.epoch:
            return INVALID_PRODUCER_EPOCH
        return None

    # -- after an append, and replaying the log ------------------------------------------

    def apply_batch(self, header: BatchHeaderLike, control_type: int | None = None) -> None:
        """Records a batch that is in the log; batches without a producer id are ignored.
        `control_type` is the marker type of a control batch (None: not a marker)."""
        producer_id = header.producer_id
        if producer_id < 0:
            return
        entry = self._producers.get(producer_id)
        if entry is None:
            entry = self._producers[producer_id] = ProducerEntry(producer_id,
                                                                 header.producer_epoch)
        elif header.producer_epoch > entry.epoch:
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        elif header.producer_epoch < entry.epoch:
            return  # an older epoch's batch (only possible in a replayed log): nothing to learn
        if header.is_control or header.is_transactional:
            self._verifying.pop(producer_id, None)
        if header.is_control:
            if control_type in (ABORT_MARKER, COMMIT_MARKER):
                self._end_txn(entry, header.base_offset, control_type == ABORT_MARKER,
                              header.max_timestamp)
            return  # markers carry no sequence
        first_offset = header.base_offset
        if header.is_transactional and entry.current_txn_first_offset == NO_OFFSET:
            entry.current_txn_first_offset = first_offset
            self._ongoing[first_offset] = producer_id
        if header.base_sequence < 0:
            return
        entry.batches.append(BatchMetadata(
            header.base_sequence, last_sequence(header.base_sequence, header.last_offset_delta),
            first_offset, first_offset + header.last_offset_delta, header.max_timestamp))

    def _end_txn(self, entry: ProducerEntry, marker_offset: int, abort: bool,
                 timestamp: int) -> None:
        entry.marker_timestamp = timestamp
        first = entry.current_txn_first_offset
        if first == NO_OFFSET:
            return  # nothing open here (an empty transaction, or the data was cleaned)
        entry.current_txn_first_offset = NO_OFFSET
        del self._ongoing[first]
        if abort:
            lso = min(self._ongoing, default=marker_offset + 1)
            self._aborted.append(AbortedTxn(entry.producer_id, first, marker_offset, lso))
            self._aborted_last.append(marker_offset)

    def expire(self, now_ms: int) -> int:
        """Forgets producers idle for producer.id.expiration.ms that have no open
        transaction; returns how many."""
        limit = self.producer_id_expiration_ms
        expired = [pid for pid, e in self._producers.items()
                   if e.current_txn_first_offset == NO_OFFSET
                   and now_ms - e.last_timestamp >= limit]
        for pid in expired:
            del self._producers[pid]
            self._verifying.pop(pid, None)
        return len(expired)

    # -- transactions: the last stable offset and the aborted transactions ---------------

    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction, None if none is open."""
        return min(self._ongoing) if self._ongoing else None

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions that overlap
        [fetch_offset, upper_bound), in first offset order (Kafka's collectAbortedTxns)."""
        found = []
        for txn in self._aborted[bisect_left(self._aborted_last, fetch_offset):]:
            if txn.first_offset < upper_bound:
                found.append((txn.first_offset, txn.producer_id))
            if txn.last_stable_offset >= upper_bound:
                break
        found.sort()
        return [(pid, first) for first, pid in found]

    def last_data_offsets(self) -> dict[int, int]:
        """producer id -> last offset of its last retained batch: the batches the log cleaner
        keeps (emptied) so that a rebuild from the log finds each producer's last sequence
        (Kafka's RETAIN_EMPTY)."""
        return {pid: e.batches[-1].last_offset for pid, e in self._producers.items()
                if e.batches}

    def aborted_ranges(self) -> list[tuple[int, int, int]]:
        """(producer id, first offset, last offset) of every aborted transaction retained, in
        marker order: what the log cleaner removes."""
        return [(t.producer_id, t.first_offset, t.last_offset) for t in self._aborted]

    def prune_aborted(self, offset: int) -> None:
        """Drops the aborted transactions whose marker is below `offset`: the log start
        offset, or the end of a log cleaner pass, which removed every record of the aborted
        transactions below it (an entry is needed only while some of its records exist).
        Snapshots taken before still hold them; loaded, they are harmless while their ABORT
        markers are in the log (a reader drops nothing between such an entry's first offset
        and its marker) and the next cleaner pass prunes them again."""
        cut = bisect_left(self._aborted_last, offset)
        if cut:
            del self._aborted[:cut]
            del self._aborted_last[:cut]

    def adopt_verifications(self, other: ProducerStateManager) -> None:
        """Takes over `other`'s KIP-890 verification guards (a state rebuilt from the log
        replaces `other`, while produce requests holding its guards are in flight)."""
        self._verifying.update(other._verifying)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The state as a snapshot (producer_state_snapshot): what the log cleaner pruned
        from the aborted transactions is not in it."""
        producers = [
            ProducerImage(e.producer_id, e.epoch, e.current_txn_first_offset,
                          e.marker_timestamp,
                          [(m.first_seq, m.last_seq, m.first_offset, m.last_offset, m.timestamp)
                           for m in e.batches])
            for e in self._producers.values()]
        return encode(producers, ((t.producer_id, t.first_offset, t.last_offset,
                                   t.last_stable_offset) for t in self._aborted))

    def load_snapshot(self, data: bytes) -> None:
        """Replaces the state by a snapshot's; raises ValueError if it is damaged."""
        images, aborted_rows = decode(data)
        producers: dict[int, ProducerEntry] = {}
        for image in images:
            entry = ProducerEntry(image.producer_id, image.epoch,
                                  current_txn_first_offset=image.txn_first_offset,
                                  marker_timestamp=image.marker_timestamp)
            entry.batches.extend(BatchMetadata(*b) for b in image.batches)
            producers[image.producer_id] = entry
        ongoing = {e.current_txn_first_offset: pid for pid, e in producers.items()
                   if e.current_txn_first_offset != NO_OFFSET}
        if len(ongoing) != sum(e.current_txn_first_offset != NO_OFFSET
                               for e in producers.values()):
            raise ValueError("producer state snapshot: two transactions at one offset")
        aborted = [AbortedTxn(*row) for row in aborted_rows]
        self._producers, self._ongoing = producers, ongoing
        self._aborted = aborted
        self._aborted_last = [t.last_offset for t in aborted]
