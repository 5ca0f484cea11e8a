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

* `apply_batch(header)` records a batch once it is in the log, for appends and when the log
  is replayed at open (no checks: the log is the truth).
* `active_producers()` lists each known producer's epoch and last batch (DescribeProducers).
* `expire(now_ms)` forgets producers whose last batch timestamp is `producer.id.expiration.ms`
  old (Kafka's `removeExpiredProducers`).
* `snapshot()` / `load_snapshot(data)`: a compact binary image with a CRC (see `_MAGIC`).
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Protocol

INT32_MAX: Final = 2**31 - 1
NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1
BATCHES_RETAINED: Final = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
DEFAULT_PRODUCER_ID_EXPIRATION_MS: Final = 86_400_000

OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45
INVALID_PRODUCER_EPOCH: Final = 47

# Snapshot: magic, version, CRC-32 of everything after it, producer count; then per producer
# (id, epoch, batch count) and each batch (first seq, last seq, first offset, last offset,
# timestamp). All big-endian.
_MAGIC: Final = b"STPS"
_VERSION: Final = 1
_PREAMBLE: Final = struct.Struct(">4sBII")  # magic, version, crc, count
_PRODUCER: Final = struct.Struct(">qhB")
_BATCH: Final = struct.Struct(">iiqqq")


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


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(
        default_factory=lambda: deque(maxlen=BATCHES_RETAINED))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_timestamp(self) -> int:
        return self.batches[-1].timestamp if self.batches else -1

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
    """One partition's idempotent producer state; implements storage's ProducerStateTracker."""

    def __init__(self, producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS
                 ) -> None:
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def entries(self) -> dict[int, tuple[int, tuple[BatchMetadata, ...]]]:
        """producer id -> (epoch, retained batches): a comparable image of the state."""
        return {pid: (e.epoch, tuple(e.batches)) for pid, e in self._producers.items()}

    def active_producers(self) -> list[ActiveProducer]:
        """Each producer the partition knows (not yet expired), in the order first seen."""
        return [ActiveProducer(e.producer_id, e.epoch, e.last_seq, e.last_timestamp)
                for e in self._producers.values()]

    # -- before an append ----------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, base_sequence: int,
              last_seq: int) -> CheckResult:
        """What to do with a client's batch (see the module docstring)."""
        entry = self._producers.get(producer_id)
        if entry is None:
            return APPEND  # unknown or expired: any sequence (Kafka 3.x)
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

    # -- after an append, and replaying the log ------------------------------------------

    def apply_batch(self, header: BatchHeaderLike) -> None:
        """Records a batch that is in the log; batches without a producer id are ignored."""
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
        if header.is_control or header.base_sequence < 0:
            return  # transaction markers carry no sequence
        first_offset = header.base_offset
        entry.batches.append(BatchMetadata(
            header.base_sequence, last_sequence(header.base_sequence, header.last_offset_delta),
            first_offset, first_offset + header.last_offset_delta, header.max_timestamp))

    def expire(self, now_ms: int) -> int:
        """Forgets producers idle for producer.id.expiration.ms; returns how many."""
        limit = self.producer_id_expiration_ms
        expired = [pid for pid, e in self._producers.items()
                   if now_ms - e.last_timestamp >= limit]
        for pid in expired:
            del self._producers[pid]
        return len(expired)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        body = bytearray()
        for entry in self._producers.values():
            body += _PRODUCER.pack(entry.producer_id, entry.epoch, len(entry.batches))
            for m in entry.batches:
                body += _BATCH.pack(m.first_seq, m.last_seq, m.first_offset, m.last_offset,
                                    m.timestamp)
        crc = zlib.crc32(body) & 0xFFFFFFFF
        return _PREAMBLE.pack(_MAGIC, _VERSION, crc, len(self._producers)) + bytes(body)

    def load_snapshot(self, data: bytes) -> None:
        """Replaces the state by a snapshot's; raises ValueError if it is damaged."""
        self._producers = _decode(memoryview(data))


def _decode(view: memoryview) -> dict[int, ProducerEntry]:
    if len(view) < _PREAMBLE.size:
        raise ValueError("producer state snapshot is truncated")
    magic, version, crc, count = _PREAMBLE.unpack_from(view, 0)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError(f"not a producer state snapshot (magic {magic!r}, version {version})")
    body = view[_PREAMBLE.size:]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ValueError("producer state snapshot CRC mismatch")
    if count * _PRODUCER.size > len(body):
        raise ValueError(f"producer state snapshot declares {count} producers")
    producers: dict[int, ProducerEntry] = {}
    pos = 0
    for _ in range(count):
        if pos + _PRODUCER.size > len(body):
            raise ValueError("producer state snapshot is truncated")
        pid, epoch, n = _PRODUCER.unpack_from(body, pos)
        pos += _PRODUCER.size
        if n > BATCHES_RETAINED or pos + n * _BATCH.size > len(body):
            raise ValueError(f"producer state snapshot: bad batch count {n}")
        entry = ProducerEntry(pid, epoch)
        for _ in range(n):
            entry.batches.append(BatchMetadata(*_BATCH.unpack_from(body, pos)))
            pos += _BATCH.size
        producers[pid] = entry
    if pos != len(body):
        raise ValueError("producer state snapshot has trailing bytes")
    return producers
