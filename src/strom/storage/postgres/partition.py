"""PostgresPartitionLog: one partition's log in PostgreSQL, appended to by group commit.

An append takes its offsets and applies its batches to the producer state at once (so the
producer checks of the next produce see it, as the local engine's do), then joins the
partition's pending group. One committer per partition writes a group in one statement: the
partition row's next offset moves by compare-and-set, fenced by the leader epoch, and the
batch rows are inserted with it (APPEND). Appends that arrive while a commit is in flight form
the next group, so the commit rate is not one per request. Every append of a group is answered
after its commit, acks=1 and acks=all alike.

If a commit fails, its outcome is unknown (it may have committed while the connection died):
every append still pending fails with StorageUnavailable, and the partition is stale: before
it answers anything else it reloads its offsets and producer state from the database
(partition_load), so that a client's retry of a batch that did commit is found a duplicate.
Reads of committed data need no reload unless they are read_committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from strom.config.topic import LogConfig
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    NotLeader,
    OffsetOutOfRange,
    OutcomeUnknown,
    PartitionOffsets,
    Placed,
    ProduceOutcome,
    ReadResult,
    StorageError,
    StorageUnavailable,
    UnknownTopic,
)
from strom.storage.batch_offsets import with_offsets
from strom.storage.meter import MeterSlot
from strom.storage.postgres.connect import ANSWER_LOST, Health
from strom.storage.postgres.partition_load import reload
from strom.storage.postgres.partition_lookup import max_timestamp, offset_for_timestamp
from strom.storage.postgres.partition_maintenance import delete_records_before
from strom.storage.postgres.status import Status
from strom.storage.postgres.tail_cache import TailCache
from strom.storage.producer_checks import append_checked_marker, checked_append
from strom.storage.producer_state import ProducerStateManager, VerificationGuard

log = logging.getLogger(__name__)

MAX_GROUP_BYTES: Final = 4 * 1024 * 1024  # one commit's batches (at least one append)
READ_ROWS: Final = 2000  # rows one read looks at, at most

APPEND: Final = """
WITH p AS (
    UPDATE strom_partition SET next_offset = $3
    WHERE partition_id = $1 AND next_offset = $2 AND leader_epoch = $4
    RETURNING partition_id)
INSERT INTO strom_batch (partition_id, base_offset, last_offset, max_timestamp, size, data)
SELECT p.partition_id, b.base, b.last, b.ts, octet_length(b.data), b.data
FROM p, unnest($5::bigint[], $6::bigint[], $7::bigint[], $8::bytea[]) AS b(base, last, ts, data)
"""
READ: Final = """
SELECT data FROM (
    SELECT data, sum(size) OVER w AS upto, row_number() OVER w AS n
    FROM strom_batch
    WHERE partition_id = $1 AND last_offset >= $2 AND base_offset < $3
      AND base_offset >= coalesce((SELECT max(base_offset) FROM strom_batch
                                   WHERE partition_id = $1 AND base_offset <= $2), 0)
    WINDOW w AS (ORDER BY base_offset)
    ORDER BY base_offset LIMIT $6) AS b
WHERE upto <= $4 OR (n = 1 AND $5)
ORDER BY n
"""


@dataclass(slots=True)
class _Append:
    base: int
    end: int  # the offset after its last record
    rows: list[tuple[int, int, int, bytes]]  # base offset, last offset, max timestamp, data
    done: asyncio.Future[None]


class Shared:
    """What every partition of one engine uses."""

    def __init__(self, pool: Any, health: Health, appended: Callable[[str, int], None],
                 producer_id_expiration_ms: int, lease_left_s: Callable[[], float],
                 meters: MeterSlot | None = None) -> None:
        self.pool = pool
        self.meters = meters or MeterSlot()  # the engine's: metrics, if on
        self.health = health
        self.appended = appended
        self.producer_id_expiration_ms = producer_id_expiration_ms
        # How long this broker's leases surely last (its session, less a heartbeat): appends
        # are refused after, and a commit not answered by then has an unknown outcome (it
        # fails, the partition reloads) rather than holding its producers past the session.
        self.lease_left_s = lease_left_s

    def lease_valid(self) -> bool:
        return self.lease_left_s() > 0


class PostgresPartitionLog:
    def __init__(self, shared: Shared, topic: str, partition: int, partition_id: int,
                 config: LogConfig, leader_epoch: int) -> None:
        self.db = shared
        self.topic = topic
        self.partition = partition
        self.partition_id = partition_id
        self.config = config
        self.leader_epoch = leader_epoch
        self.status = Status.FENCED  # until this broker holds its lease
        self.closed = False
        self.log_start = 0
        self.committed = 0  # the high watermark: everything below is in the database
        self.appended_records = 0  # strom.storage.api.PartitionLog
        self.appended_bytes = 0
        self.assigned = 0  # the log end: committed, plus the appends being committed
        self.size_bytes = 0
        self.since_snapshot = 0  # batches committed since the last producer snapshot
        self.snapshot_end = -1  # the offset the stored snapshot was taken at
        self.tail = TailCache()
        self.state = ProducerStateManager(shared.producer_id_expiration_ms)
        self.reload_lock = asyncio.Lock()
        self.maintenance_lock = asyncio.Lock()  # retention, delete-records, compaction
        self._pending: list[_Append] = []
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    @property
    def producer_state(self) -> ProducerStateManager:
        return self.state

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def busy(self) -> bool:
        """Whether appends are being committed (the producer state is ahead of the log)."""
        return bool(self._pending) or (self._committer is not None
                                       and not self._committer.done())

    # -- readiness -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.closed:
            raise UnknownTopic(f"{self.name} was deleted or closed")
        self._check_owned()
        if self.status is Status.STALE:
            raise StorageUnavailable(f"{self.name} is reloading its state after a failed "
                                     "commit")

    def _check_owned(self) -> None:
        if self.status is Status.FENCED:
            raise NotLeader(f"{self.name} is not led by this broker (its lease is "
                            "elsewhere)")
        if self.status is Status.MOVING:
            raise NotLeader(f"{self.name} is being handed over to another broker")
        if not self.db.lease_valid():
            raise NotLeader(f"{self.name}: the database has not confirmed this broker's "
                            "session in time; it may have lost its leases")

    # -- the lease -------------------------------------------------------------------------

    def take(self, epoch: int) -> None:
        """This broker now holds the lease at `epoch`: the state is read from the database
        before the partition answers (another broker may have written since)."""
        if self.status is Status.LOADED and epoch == self.leader_epoch:
            return
        self.leader_epoch = epoch
        self.status = Status.STALE

    def release(self, reason: str) -> None:
        """The lease is elsewhere now: appends pending fail (their commits are fenced anyway)
        and the state held for appends is dropped."""
        if self.status is Status.FENCED:
            return
        self.status = Status.FENCED
        self._fail_waiting(NotLeader(f"{self.name}: {reason}"))
        self.state = ProducerStateManager(self.db.producer_id_expiration_ms)
        self.tail.clear()

    async def ready(self) -> None:
        """Reloads the partition if a commit failed since it was last loaded, or its lease
        was just taken."""
        if self.status is Status.STALE and not self.closed:
            async with self.reload_lock:
                if self.status is Status.STALE and not self.busy:
                    await reload(self)
        self._check_usable()

    def last_stable(self) -> int:
        first_unstable = self.state.first_unstable_offset()
        if first_unstable is None:
            return self.committed
        return min(max(first_unstable, self.log_start), self.committed)

    async def offsets(self) -> PartitionOffsets:
        await self.ready()
        return PartitionOffsets(self.log_start, self.committed, self.last_stable(),
                                self.assigned)

    # -- appends ---------------------------------------------------------------------------

    async def produce(self, batches: Sequence[AppendBatch],
                      verification: VerificationGuard | None = None,
                      placed: Placed | None = None) -> ProduceOutcome:
        await self.ready()
        return await checked_append(self, batches, verification, placed)

    async def append(self, batches: Sequence[AppendBatch],
                     placed: Placed | None = None) -> AppendResult:
        """Everything up to the first await happens at once: the checks of `produce` and the
        producer state's update see each other. With metrics on, timed until committed."""
        meter = self.db.meters.meter
        started = 0.0 if meter is None else time.perf_counter()
        self._check_usable()
        base = self.assigned
        if not batches:
            return AppendResult(base, base - 1, self.log_start)
        offset = base
        rows = []
        size = 0
        for data, header, kind in with_offsets(batches, base, self.leader_epoch):
            self.state.apply_batch(header, kind)
            rows.append((header.base_offset, header.last_offset, header.max_timestamp, data))
            offset = header.last_offset + 1
            size += len(data)
        self.assigned = offset
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(base, offset, rows, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        if placed is not None:
            placed()
        await done  # raises if the commit failed: then nothing is counted
        self.appended_records += offset - base
        self.appended_bytes += size
        if meter is not None:
            meter.appended(time.perf_counter() - started)
        return AppendResult(base, offset - 1, self.log_start)

    async def append_marker(self, producer_id: int, producer_epoch: int, commit: bool,
                            coordinator_epoch: int = 0) -> AppendResult:
        await self.ready()
        return await append_checked_marker(self, producer_id, producer_epoch, commit,
                                           coordinator_epoch)

    async def wait_durable(self, offset: int) -> None:
        if offset <= self.committed:
            return
        self._check_usable()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((offset, done))
        await done

    async def _commit_pending(self) -> None:
        while self._pending:
            group = _take_group(self._pending)
            meter = self.db.meters.meter
            started = time.perf_counter()
            try:
                await self._commit(group)
            except StorageError as exc:
                self._fail_pending(group, exc)
                return
            except asyncio.CancelledError:  # closing: the outcome is unknown
                self._fail_pending(group, OutcomeUnknown(
                    f"the commit of {self.name} was interrupted"))
                raise
            except Exception as exc:  # a driver failure: the outcome is unknown
                log.exception("%s: the commit failed unexpectedly", self.name)
                self._fail_pending(group, OutcomeUnknown(
                    f"the commit of {self.name} failed ({type(exc).__name__})"))
                return
            if meter is not None:
                meter.flushed(time.perf_counter() - started)
            self._committed_group(group)

    async def _commit(self, group: list[_Append]) -> None:
        rows = [r for a in group for r in a.rows]
        base, end = group[0].base, group[-1].end
        timeout = self.db.lease_left_s()
        if timeout <= 0:
            raise NotLeader(f"{self.name}: the database has not confirmed this broker's "
                            "session in time; it may have lost its leases")
        sent = False
        try:
            with self.db.health.statement(f"append to {self.name}"):
                async with self.db.pool.acquire(timeout=timeout) as conn:
                    sent = True
                    status = await conn.execute(
                        APPEND, self.partition_id, base, end, self.leader_epoch,
                        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                        [r[3] for r in rows], timeout=timeout)
        except StorageUnavailable as exc:
            if sent and isinstance(exc.__cause__, ANSWER_LOST):
                # It may have committed: the client must not take it as unwritten. (An
                # error the server answered, a full disk say, means it was not written.)
                raise OutcomeUnknown(str(exc)) from exc
            raise
        if status != f"INSERT 0 {len(rows)}":
            await self._refused(base)

    async def _refused(self, base: int) -> None:
        """The compare-and-set found the partition row moved: fenced by a newer epoch, or
        deleted, or (a broken invariant) offsets that are not ours."""
        with self.db.health.statement(f"append to {self.name}"):
            row = await self.db.pool.fetchrow(
                "SELECT leader_epoch, next_offset FROM strom_partition WHERE partition_id = $1",
                self.partition_id)
        if row is None:
            self.closed = True
            raise UnknownTopic(f"{self.name} was deleted")
        if row["leader_epoch"] != self.leader_epoch:
            self.release(f"its lease moved to epoch {row['leader_epoch']}")
            raise NotLeader(f"{self.name} moved to leader epoch {row['leader_epoch']} "
                            f"(this broker's is {self.leader_epoch}): appends refused")
        raise StorageUnavailable(f"{self.name}'s next offset is {row['next_offset']} in the "
                                 f"database, not {base} as this broker expected: reloading")

    def _committed_group(self, group: list[_Append]) -> None:
        for a in group:
            for base, last, _ts, data in a.rows:
                self.tail.add(base, last, data)
                self.size_bytes += len(data)
            self.since_snapshot += len(a.rows)
            if not a.done.done():
                a.done.set_result(None)
        self.committed = group[-1].end
        if self._durable_waiters:
            waiting = []
            for offset, done in self._durable_waiters:
                if offset <= self.committed:
                    if not done.done():
                        done.set_result(None)
                else:
                    waiting.append((offset, done))
            self._durable_waiters = waiting
        self.db.appended(self.topic, self.partition)

    def _fail_pending(self, group: list[_Append], exc: StorageError) -> None:
        """Every append not committed fails; the partition reloads before its next answer."""
        if self.status is Status.LOADED or self.status is Status.MOVING:
            self.status = Status.STALE
        if self.status is not Status.FENCED:
            log.warning("%s: %s; %d append(s) refused, the partition reloads", self.name,
                        exc, len(group) + len(self._pending))
        for a in group:
            if not a.done.done():
                a.done.set_exception(type(exc)(str(exc)))
                a.done.exception()  # retrieved: an acks=0 append may never await it
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: StorageError) -> None:
        for a in self._pending:
            if not a.done.done():
                a.done.set_exception(type(exc)(str(exc)))
                a.done.exception()
        self._pending.clear()
        for _offset, done in self._durable_waiters:
            if not done.done():
                done.set_exception(type(exc)(str(exc)))
                done.exception()
        self._durable_waiters.clear()

    def mark_new(self) -> None:
        """A partition just created: nothing to load."""
        self.status = Status.LOADED

    async def drain(self) -> None:
        """Lets the commits in flight finish (for 10 s at most; then they are cancelled and
        their appends fail), as a broker stopping does."""
        committer = self._committer
        if committer is not None and not committer.done():
            try:
                await asyncio.wait_for(asyncio.shield(committer), 10)
            except (TimeoutError, asyncio.CancelledError, StorageError):
                committer.cancel()

    # -- reads -----------------------------------------------------------------------------

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        if self.status is Status.FENCED or not self.db.lease_valid():
            self._check_owned()  # only the lease holder knows the high watermark
        try:
            await self.ready()
        except (StorageUnavailable, NotLeader):
            if committed or self.closed or self.status is Status.FENCED:
                raise  # read_committed needs the transaction state the reload rebuilds
        if self.closed:
            raise UnknownTopic(f"{self.name} was deleted or closed")
        if not self.log_start <= offset <= self.assigned:
            raise OffsetOutOfRange(f"offset {offset} is outside [{self.log_start}, "
                                   f"{self.assigned}] in {self.name}")
        stable = self.last_stable()
        limit = stable if committed else self.committed
        hw, log_start = self.committed, self.log_start
        if offset >= limit:
            return ReadResult([], 0, hw, log_start, stable)
        if self.tail.covers(offset):
            chunks, size = self.tail.read(offset, limit, max_bytes, min_one_batch)
            return ReadResult(chunks, size, hw, log_start, stable)
        with self.db.health.statement(f"read from {self.name}"):
            rows = await self.db.pool.fetch(READ, self.partition_id, offset, limit,
                                            max_bytes, min_one_batch, READ_ROWS)
        chunks = [r["data"] for r in rows]
        return ReadResult(chunks, sum(len(c) for c in chunks), hw, log_start, stable)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int
                             ) -> list[tuple[int, int]]:
        return self.state.aborted_transactions(fetch_offset, upper_bound)

    async def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        await self.ready()
        return await offset_for_timestamp(self, timestamp_ms)

    async def max_timestamp(self) -> tuple[int, int] | None:
        await self.ready()
        return await max_timestamp(self)

    async def delete_records_before(self, offset: int) -> int:
        await self.ready()
        return await delete_records_before(self, offset)


def _take_group(pending: list[_Append]) -> list[_Append]:
    """The oldest pending appends, up to MAX_GROUP_BYTES (at least one)."""
    size = 0
    count = 0
    for a in pending:
        size += sum(len(r[3]) for r in a.rows)
        if count and size > MAX_GROUP_BYTES:
            break
        count += 1
    group = pending[:count]
    del pending[:count]
    return group
