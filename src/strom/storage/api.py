"""The Log engine interface that everything above ``storage/`` is written against.

An engine keeps topics (name, id, partition count, config overrides) and, per partition, a log
of Kafka v2 record batches stored exactly as received, except for the base offset (bytes 0-8)
and partition leader epoch (bytes 12-16), which are outside the CRC and set at append.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from strom.config.topic import LogConfig
from strom.protocol.batch_header import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    CONTROL_MASK,
)
from strom.protocol.control_batch import control_type
from strom.storage.producer_state import ProducerStateManager, VerificationGuard


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


class StorageUnavailable(StorageError):
    """The storage did not answer (a database down or unreachable, a commit whose outcome is
    unknown): retriable. Nothing was acknowledged; the partition re-reads its state from the
    storage before it answers anything else."""


class OutcomeUnknown(StorageUnavailable):
    """An append was sent to the storage but its answer was lost (a connection cut, a
    timeout): it may or may not have been written. Retriable, and answered as Kafka answers
    a write that may have been persisted (REQUEST_TIMED_OUT), so that an idempotent producer
    retries the same sequence numbers, which a retry finds duplicate if it was written."""


class NotLeader(StorageError):
    """Another broker took the partition over (its leader epoch moved on): this broker can no
    longer append to it (Kafka's NOT_LEADER_OR_FOLLOWER)."""


class LogDirFull(LogDirFailure):
    """A write failed for lack of space (ENOSPC, EDQUOT): appends fail until space is freed,
    then the partition takes writes again by itself; reads of committed records go on
    (KAFKA_STORAGE_ERROR, retriable)."""


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
class Duplicate:
    """A client's batch that the partition already holds (an idempotent producer's retry):
    answered with the original's offsets and no error (Kafka 3.x)."""

    base_offset: int
    timestamp: int  # the original batch's max timestamp (its append time on LogAppendTime)
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A client's batch refused by the producer checks; nothing was appended."""

    error_code: int  # Kafka's error code
    message: str


ProduceOutcome = AppendResult | Duplicate | Rejected
# Called once an append's place in its partition is fixed (see PartitionLog.produce).
Placed = Callable[[], None]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """A partition's offsets at one moment (by value: another broker may move them)."""

    log_start: int
    high_watermark: int
    last_stable: int  # min(first offset of the earliest open transaction, high watermark)
    log_end: int


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
    replication_factor: int = 1  # as created (at most the live brokers then)


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """A broker serving the cluster, as Metadata and DescribeCluster list it."""

    node_id: int
    host: str  # host and port: the inter-broker listener's (brokers reach each other there)
    port: int
    rack: str | None = None
    # Every advertised listener: (name, host, port). Empty: the one listener host:port.
    listeners: tuple[tuple[str, str, int], ...] = ()

    def endpoint(self, listener: str | None) -> tuple[str, int]:
        """Where clients of `listener` reach this broker (host:port if it lacks the listener,
        or registered before brokers had several)."""
        for name, host, port in self.listeners:
            if name == listener:
                return host, port
        return self.host, self.port


def format_endpoints(listeners: Sequence[tuple[str, str, int]]) -> str:
    return ",".join(f"{name}://{host}:{port}" for name, host, port in listeners)


def parse_endpoints(text: str) -> tuple[tuple[str, str, int], ...]:
    """The inverse of format_endpoints (IPv6 hosts keep their colons: the port is last)."""
    found = []
    for part in text.split(","):
        name, sep, address = part.partition("://")
        host, colon, port = address.rpartition(":")
        if sep and colon and port.isdigit():
            found.append((name, host, int(port)))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who serves a partition now, as Metadata reports it.

    `leader` is the node id of the broker holding the partition's lease (None while no live
    broker holds it: Metadata's leader -1); `epoch` is Kafka's leader epoch, the lease's epoch,
    which moves up by one every time the lease changes hands; `replicas` lists the leader
    first, then the live brokers next in line to take the lease, as many as the topic's
    replication factor asks for (durability is the storage's: every one of them is in sync)."""

    leader: int | None
    epoch: int
    replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a partition's lease belongs, as opposed to who holds it now (Leadership).

    `preferred` is Kafka's preferred leader (the first replica of the assignment): the first
    broker a reassignment pinned the partition to, live or not, else the broker the balanced
    placement gives it (None while no broker is live); `target` is the broker the lease moves
    to now: the first *live* broker of the pin, else the balanced one; `pinned` lists the
    brokers of the reassignment in force (None when the balanced placement decides)."""

    preferred: int | None
    target: int | None
    pinned: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class PartitionSize:
    topic: str
    partition: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class LogDirDescription:
    """The one "log directory" an engine keeps this broker's partitions in, as DescribeLogDirs
    reports it: its name (a directory, `memory:`, or a database URL without its password),
    the space of the volume under it (-1 when the engine cannot tell) and the size of each
    partition this broker serves from it."""

    path: str
    total_bytes: int = -1
    usable_bytes: int = -1
    partitions: Sequence[PartitionSize] = ()


class PartitionLog(Protocol):
    """One partition's log."""

    # What this broker appended to the partition since it opened it (Produce, coordinator
    # writes, transaction markers; not a duplicate's retry): records and bytes of batches,
    # bumped by every append (the metrics' messages and bytes in, read at scrape time).
    appended_records: int
    appended_bytes: int

    async def offsets(self) -> PartitionOffsets:
        """The log start, high watermark, last stable (where read_committed consumers stop)
        and log end offsets, taken together."""
        ...

    @property
    def producer_state(self) -> ProducerStateManager:
        """The partition's idempotent and transactional producer state, in step with the log."""
        ...

    async def produce(self, batches: Sequence[AppendBatch],
                      verification: VerificationGuard | None = None,
                      placed: Placed | None = None) -> ProduceOutcome:
        """A client's batches (validated): checks them against the producer state and
        appends them, atomically, as Kafka's log does under its lock (strom.storage.
        producer_checks: a duplicate's original offsets, or the sequence, epoch, transaction
        state or KIP-890 verification error, else the append). A transactional batch that
        would begin its producer's transaction here needs `verification`, the guard from
        `producer_state.start_verification` taken before the transaction coordinator
        confirmed the partition, still current. Durable per the flush policy on return, a
        duplicate no earlier than its original. `placed()`, if given, is called once the
        outcome's place in the partition is fixed (offsets taken, producer state updated),
        before any wait for durability: an append that starts after it comes after it in
        the partition."""
        ...

    async def append(self, batches: Sequence[AppendBatch],
                     placed: Placed | None = None) -> AppendResult:
        """Appends whole batches atomically in order, without producer checks (the
        coordinators' writes, Kafka's AppendOrigin.COORDINATOR); durable per the flush
        policy on return. The producer state applies them. `placed` as for produce."""
        ...

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        """Appends a COMMIT or ABORT marker (strom.protocol.control_batch) as `append` does
        (same durability; the producer state closes the producer's transaction). Raises
        InvalidProducerEpoch, appending nothing, if the partition knows a newer epoch."""
        ...

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        """Raises OffsetOutOfRange unless log start <= offset <= log end; returns
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

    def cluster_id(self) -> str:
        """The cluster's id (Kafka's form: 22 characters of URL-safe base64), fixed when
        the storage was first opened; valid once open."""
        ...

    async def register_broker(self, registration: BrokerRegistration) -> None:
        """Lists this broker among the cluster's (replacing an older registration of its
        node id; an engine several brokers share refuses, with StorageError, a node id that
        a live broker at another address holds). It stays listed until the engine closes."""
        ...

    async def read_metadata(self, kind: str) -> dict[str, str]:
        """The cluster's security metadata records of `kind` ("scram", "acl", "quota"):
        key -> value, as every broker of the cluster sees them."""
        ...

    async def write_metadata(self, kind: str, puts: Mapping[str, str],
                             deletes: Sequence[str]) -> None:
        """Deletes `deletes` and puts `puts` (records of `kind`), all or nothing, durably."""
        ...

    async def brokers(self) -> Sequence[BrokerRegistration]:
        """The live brokers serving the cluster, by node id."""
        ...

    def leadership(self, name: str, index: int) -> Leadership:
        """Who serves the partition now (from memory: an engine several brokers share
        refreshes it on every heartbeat). Raises UnknownTopic for a missing topic or
        partition. A single broker leads everything at epoch 0."""
        ...

    def on_leadership_change(self, listener: Callable[[], None]) -> None:
        """`listener()` is called, in the event loop, whenever a partition's leadership moved
        to or from this broker, or topics changed, by another broker's doing or this one's
        (a lease acquired, handed over or lost; a topic created or deleted elsewhere)."""
        ...

    def assignment(self, name: str, index: int) -> Assignment:
        """Where the partition's lease belongs (from memory, as `leadership`). Raises
        UnknownTopic. A single broker: itself, never pinned."""
        ...

    async def rebalance(self) -> None:
        """Asks every broker to move leases toward where they belong now rather than at its
        next heartbeat (a leader election). A single broker has nothing to move."""
        ...

    async def retire(self) -> None:
        """A clean stop begins: hands every partition this broker leads to the broker next
        in line, while the broker still answers (clients then see NOT_LEADER_OR_FOLLOWER and
        move on), and takes no more. Nothing to do for an engine one broker serves alone."""
        ...

    async def leader_epochs(self, name: str, index: int) -> Sequence[tuple[int, int]]:
        """(leader epoch, start offset) of each leader epoch the partition has had, in order
        (Kafka's leader-epoch cache, for OffsetForLeaderEpoch)."""
        ...

    async def reassign(self, name: str, index: int, replicas: Sequence[int] | None) -> None:
        """Pins the partition's lease to the first live broker of `replicas` (then the next),
        or with None gives it back to the balanced placement; the lease moves within a
        heartbeat. Raises UnknownTopic, or ValueError for brokers not live."""
        ...

    def topics(self) -> Mapping[str, TopicInfo]: ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None: ...

    async def create_topic(self, name: str, partitions: int, configs: Mapping[str, str],
                           replication_factor: int = 1) -> TopicInfo:
        """`replication_factor` is checked by the caller against the live brokers."""
        ...

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

    async def describe_log_dir(self) -> LogDirDescription:
        """The log directory and the partitions this broker serves from it (an engine several
        brokers share: only those it leads). Raises OSError or StorageError if it cannot be
        read (KAFKA_STORAGE_ERROR)."""
        ...

    async def run_retention(self, now_ms: int) -> int:
        """Deletes whole segments past retention.ms/retention.bytes; returns segments deleted."""
        ...

    async def run_cleaner(self, now_ms: int) -> int:
        """One compaction pass over partitions whose cleanup.policy includes compact (each
        key's last record kept; tombstones and transaction markers removed once
        delete.retention.ms has passed, as Kafka's LogCleaner); returns how many partitions
        were cleaned."""
        ...

    async def flush_due(self, now_ms: int) -> None:
        """Flushes partitions whose flush.ms has elapsed."""
        ...

    async def wait_for_data(self, seen: Mapping[tuple[str, int], int], timeout_s: float
                            ) -> None:
        """Returns once the high watermark of a partition in `seen` ((topic, partition) ->
        the high watermark the caller read) has moved, at once if it already has, or after
        `timeout_s`: how a long-polling fetch sleeps."""
        ...

    async def reserve_producer_ids(self, count: int) -> int:
        """Durably reserves `count` producer ids never handed out before (across restarts);
        returns the first."""
        ...
