"""The Log engine interface that everything above ``storage/`` is written against.

An engine keeps topics (name, id, partition count, config overrides) and, per partition, a log
of Kafka v2 record batches stored exactly as received, except for the base offset (bytes 0-8)
and partition leader epoch (bytes 12-16), which are outside the CRC and set at append.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from strom.config.topic import LogConfig
from strom.protocol.batch_header import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    CONTROL_MASK,
    BatchHeader,
)
from strom.protocol.control_batch import control_type


class StorageError(Exception):
    """Base class of the errors an engine reports; each maps to one Kafka error code."""


class OffsetOutOfRange(StorageError):
    pass


class UnknownTopic(StorageError):
    pass


class TopicExists(StorageError):
    pass


class CorruptLog(StorageError):
    """An internal invariant broke (offsets going backwards, a bad CRC on disk)."""


class InvalidProducerEpoch(StorageError):
    """A transaction marker's producer epoch is older than the partition's (Kafka's
    INVALID_PRODUCER_EPOCH); the exception's message says which."""


class LogDirFailure(StorageError):
    """A write or fsync of the partition's files failed: the partition is offline (appends and
    reads raise this) until restart, when recovery validates everything past its recovery
    point (Kafka halts the log directory; KAFKA_STORAGE_ERROR)."""


@dataclass(frozen=True, slots=True)
class AppendBatch:
    """One validated batch ready to append; the engine assigns its base offset."""

    data: bytearray  # the whole batch, header included
    record_count: int  # last_offset_delta + 1
    max_timestamp: int  # ms; -1 if none
    first_timestamp: int  # base timestamp, ms


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class FileRegion:
    """Bytes of a segment file that a fetch can send with os.sendfile."""

    fd: int
    position: int
    size: int


def chunks_bytes(chunks: Sequence[bytes | FileRegion]) -> bytes:
    """The bytes of a read's chunks, file regions read with pread."""
    return b"".join(
        os.pread(c.fd, c.size, c.position) if isinstance(c, FileRegion) else c for c in chunks
    )


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches from the first one containing the fetch offset, in offset order."""

    chunks: Sequence[bytes | FileRegion]
    size: int
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int = -1  # -1 (not given): the high watermark

    def __post_init__(self) -> None:
        if self.last_stable_offset < 0:
            object.__setattr__(self, "last_stable_offset", self.high_watermark)


def batch_control_type(data: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """The marker type (strom.protocol.control_batch ABORT, COMMIT, ...) of the batch at `pos`
    if it is a control batch, None if it is a data batch; ValueError if it is malformed."""
    if len(data) - pos < BATCH_HEADER_SIZE:
        raise ValueError("shorter than a batch header")
    if not data[pos + ATTRIBUTES_OFFSET + 1] & CONTROL_MASK:  # the attributes' low byte
        return None
    return control_type(data, pos)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)  # overrides only


@dataclass(frozen=True, slots=True)
class PartitionSize:
    topic: str
    partition: int
    size_bytes: int


class ProducerStateTracker(Protocol):
    """Idempotent and transactional producer state an engine keeps per partition, in step
    with the log (strom.coordinator.producer_state.ProducerStateManager implements it; the
    engine gets a factory, so storage never imports the coordinator)."""

    def apply_batch(self, header: BatchHeader, control_type: int | None = None) -> None:
        """Records a batch just appended, or replayed from the log at open, in log order;
        `control_type` is a control batch's marker type (batch_control_type), else None."""
        ...

    def check_marker(self, producer_id: int, producer_epoch: int) -> int | None:
        """INVALID_PRODUCER_EPOCH (47) if a newer epoch of the producer is known, else None."""
        ...

    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction; None if none is open."""
        ...

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions whose marker is at or
        past fetch_offset and that start below upper_bound, in offset order."""
        ...

    def aborted_ranges(self) -> list[tuple[int, int, int]]:
        """(producer id, first offset, marker offset) of every aborted transaction kept."""
        ...

    def last_data_offsets(self) -> dict[int, int]:
        """producer id -> last offset of its last data batch (the cleaner keeps that batch's
        header, Kafka's RETAIN_EMPTY)."""
        ...

    def prune_aborted(self, log_start_offset: int) -> None:
        """Forgets aborted transactions whose marker is below the log start offset."""
        ...

    def expire(self, now_ms: int) -> int:
        """Forgets producers idle for producer.id.expiration.ms; returns how many."""
        ...

    def snapshot(self) -> bytes: ...

    def load_snapshot(self, data: bytes) -> None:
        """Replaces the state by a snapshot's; raises ValueError if `data` is damaged."""
        ...


class PartitionLog(Protocol):
    """One partition's log."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def high_watermark(self) -> int: ...

    @property
    def last_stable_offset(self) -> int:
        """min(first offset of the earliest open transaction, high watermark): where
        read_committed consumers stop. The high watermark without producer state."""
        ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def producer_state(self) -> ProducerStateTracker | None:
        """The partition's idempotent producer state, None if the engine keeps none."""
        ...

    async def append(self, batches: Sequence[AppendBatch]) -> AppendResult:
        """Appends whole batches atomically in order; durable per the flush policy on return.

        Runs without suspending until the batches are written and `producer_state` has
        applied them, so a synchronous check of the producer state made right before
        `await append(...)` cannot interleave with another append."""
        ...

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        """Appends a COMMIT or ABORT marker (strom.protocol.control_batch) as `append` does
        (same durability; the producer state closes the producer's transaction). Raises
        InvalidProducerEpoch, appending nothing, if the partition knows a newer epoch."""
        ...

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        """Raises OffsetOutOfRange unless log_start_offset <= offset <= log_end_offset; returns
        nothing at or past the high watermark, or with `committed` (read_committed) at or past
        the last stable offset (a batch boundary)."""
        ...

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping
        [fetch_offset, upper_bound), for a read_committed fetch; empty without producer
        state."""
        ...

    async def wait_durable(self, offset: int) -> None:
        """Returns once everything below `offset` is as durable as the flush policy makes an
        acknowledged append (with flush.messages=1: fsynced); for answering a duplicate batch
        no earlier than its original. Raises LogDirFailure if the partition is offline."""
        ...

    async def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= timestamp_ms, or None."""
        ...

    async def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp, or None if empty."""
        ...

    async def delete_records_before(self, offset: int) -> int:
        """Advances the log start offset (never backwards); returns the new log start offset."""
        ...


class StorageEngine(Protocol):
    """Topics and their partitions' logs, and the durable metadata about them."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def topics(self) -> Mapping[str, TopicInfo]: ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None: ...

    async def create_topic(self, name: str, partitions: int,
                           configs: Mapping[str, str]) -> TopicInfo: ...

    async def delete_topic(self, name: str) -> None: ...

    async def create_partitions(self, name: str, total: int) -> TopicInfo: ...

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Replaces the topic's overrides with `configs` (already validated)."""
        ...

    def partition(self, name: str, index: int) -> PartitionLog:
        """Raises UnknownTopic for a missing topic or partition."""
        ...

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        """Partitions found in storage at open that belong to no known topic, or lie past
        its partition count, by topic name: data kept but not served (a topic whose metadata
        was lost). Creating such a partition replaces it."""
        ...

    def log_config(self, name: str) -> LogConfig: ...

    def partition_sizes(self) -> Sequence[PartitionSize]: ...

    async def run_retention(self, now_ms: int) -> int:
        """Deletes whole segments past retention.ms/retention.bytes; returns segments deleted."""
        ...

    async def flush_due(self, now_ms: int) -> None:
        """Flushes partitions whose flush.ms has elapsed."""
        ...

    async def reserve_producer_ids(self, count: int) -> int:
        """Durably reserves `count` producer ids never handed out before (across restarts);
        returns the first."""
        ...
