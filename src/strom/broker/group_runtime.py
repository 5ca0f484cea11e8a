"""The group coordinator on the coordinator runtime (broker/coordinator_runtime.py).

One `GroupCoordinator` core per partition of `__consumer_offsets`, holding the groups that hash
to it. This shell gives the runtime its cores, its replay (records and transaction markers, in
log order) and its timer step; it encodes a step's records as batches (one transactional batch
per producer run), parks JoinGroup/SyncGroup calls whose answer comes later and delivers the
completions once the records are written. Handlers call `write(group_id, op)` and `core(group_id)`,
which raise CoordinatorError for a group whose shard is not served here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Final, TypeVar

from strom.broker.coordinator_runtime import (
    CoordinatorError,
    CoordinatorRuntime,
    Shard,
    ShardStatus,
    wall_clock_ms,
)
from strom.broker.internal_topic_create import create_internal_topic
from strom.broker.log_scan import replay_partition
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.lag_health import Commit, HealthRules, LagHistory
from strom.coordinator.group.model import GroupConfig, GroupLogRecord, PendingKey, Step
from strom.coordinator.internal_topics import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS
from strom.protocol.batch_header import BatchHeader
from strom.protocol.control_batch import ABORT, COMMIT, control_type
from strom.protocol.messages import ErrorCode
from strom.protocol.record_builder import RecordInput, build_batch
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import AppendBatch, PartitionLog, StorageEngine, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

LOAD_POLL_S: Final = 0.05  # how often a marker's completion looks whether its shard loaded


@dataclass(frozen=True, slots=True)
class Marker:
    """A transaction marker read from `__consumer_offsets`, replayed in log order."""

    producer_id: int
    commit: bool


LogEntry = GroupLogRecord | Marker
GroupOp = Callable[[GroupCoordinator, int], Step[T]]


class GroupRuntime:
    """The consumer-group coordinator's shards (classic and KIP-848 groups, offsets)."""

    def __init__(self, engine: StorageEngine, config: GroupConfig, node_id: int,
                 clock: Callable[[], int] = wall_clock_ms, replication_factor: int = 1,
                 lag_rules: HealthRules | None = None) -> None:
        """`replication_factor`: offsets.topic.replication.factor (capped by the live
        brokers when the topic is created); `lag_rules`: the consumer-lag health windows
        (lag.health.*)."""
        self.engine = engine
        self.config = config
        self.node_id = node_id
        self.replication_factor = replication_factor
        self.runtime: CoordinatorRuntime[GroupCoordinator] = CoordinatorRuntime(
            engine, OFFSETS_TOPIC, self, config.offsets_topic_partitions, node_id, clock)
        # Calls parked in each shard, by partition.
        self._pending: dict[int, dict[PendingKey, asyncio.Future[Any]]] = {}
        # Each shard's writes in flight (answers wait for the ones started before them).
        self._writes: dict[int, set[asyncio.Future[None]]] = {}
        # The groups' recent commits, for their consumer-lag health (lag_health.py).
        self.lag_history = LagHistory(lag_rules)

    async def start(self) -> None:
        """Creates `__consumer_offsets` if it does not exist (the only way it is created),
        then loads the shards of the partitions this broker leads, and follows leadership
        as it moves."""
        await self.ensure_offsets_topic()
        self.engine.on_leadership_change(self.runtime.reconcile)
        await self.runtime.load_led()
        self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()

    async def ensure_offsets_topic(self) -> None:
        if OFFSETS_TOPIC in self.engine.topics():
            return
        await create_internal_topic(self.engine, OFFSETS_TOPIC,
                                    self.config.offsets_topic_partitions, OFFSETS_TOPIC_CONFIGS,
                                    self.node_id, self.replication_factor)

    # -- for handlers ---------------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        """The group's partition of `__consumer_offsets` (its actual partition count)."""
        return self.runtime.partition_for(group_id)

    def owns(self, group_id: str) -> bool:
        """FindCoordinator: this broker serves the group's shard (loaded or loading)."""
        status = self.runtime.status(self.partition_for(group_id))
        return status in (ShardStatus.ACTIVE, ShardStatus.LOADING)

    def core(self, group_id: str) -> GroupCoordinator:
        """The core serving the group, for reads; raises CoordinatorError."""
        return self.runtime.shard(self.partition_for(group_id)).core

    async def write(self, group_id: str, op: GroupOp[T]) -> T:
        """Runs `op(core, now_ms)` on the group's shard, writes its records, delivers its
        completions and returns its answer (waiting for it if the call was parked)."""
        shard = self.runtime.shard(self.partition_for(group_id))
        return await self._run(shard, op(shard.core, self.runtime.clock()))

    def by_shard(self, group_ids: Iterable[str]) -> dict[int, list[str]]:
        """The distinct ids by their partition, in request order."""
        out: dict[int, list[str]] = {}
        for group_id in dict.fromkeys(group_ids):
            out.setdefault(self.partition_for(group_id), []).append(group_id)
        return out

    def listed_cores(self) -> list[GroupCoordinator]:
        """ListGroups: the cores of every shard owned here (Kafka skips the partitions it does
        not own); raises CoordinatorError while one is loading or cannot be loaded."""
        return [self.runtime.shard(shard.partition).core for shard in self.runtime.shards()]

    async def record_commits(self, group_id: str, committed: Iterable[tuple[str, int, int]],
                             ) -> None:
        """Consumer-lag health: the group committed these (topic, partition, offset); each
        joins its partition's window with the partition's high watermark now. Partitions this
        broker does not lead are left out (their log end offset is another broker's)."""
        now_ms = self.runtime.clock()
        for topic, partition, offset in committed:
            try:
                if self.engine.leadership(topic, partition).leader != self.node_id:
                    continue
                offsets = await self.engine.partition(topic, partition).offsets()
            except (StorageError, KeyError):
                continue
            self.lag_history.record(group_id, topic, partition,
                                    Commit(offset, now_ms, offsets.high_watermark))

    async def complete_txn(self, partition: int, producer_id: int, commit: bool) -> None:
        """The transaction runtime wrote the producer's COMMIT or ABORT marker to
        `__consumer_offsets` partition `partition`: its pending offsets there count or go.
        A shard still loading is waited for; one not served here has nothing to do (whoever
        loads it replays the marker from the log)."""
        while self.runtime.status(partition) is ShardStatus.LOADING:
            await asyncio.sleep(LOAD_POLL_S)
        if self.runtime.status(partition) is not ShardStatus.ACTIVE:
            return
        shard = self.runtime.shard(partition)
        step = shard.core.complete_txn(partition, producer_id, commit, self.runtime.clock())
        try:
            await self._apply(shard, step)
        except CoordinatorError:  # a failed write reloads the shard
            return
        for group_id, offsets in groupby(step.result or (), key=lambda c: c[0]):
            await self.record_commits(group_id, [c[1:] for c in offsets])

    # -- the runtime's host ---------------------------------------------------------------

    def new_core(self, partition: int, partitions: int) -> GroupCoordinator:
        core = GroupCoordinator(self.config)
        core.use_offsets_topic_partitions(partitions)
        return core

    async def replay(self, core: GroupCoordinator, plog: PartitionLog, partition: int) -> int:
        entries: list[LogEntry] = []

        def on_batch(header: BatchHeader, batch: memoryview, start: int) -> None:
            try:
                _collect_batch(batch, header, start, partition, entries)
            except (RecordsError, ValueError) as exc:
                log.warning("skipping unreadable batch at offset %d of %s-%d: %s",
                            header.base_offset, OFFSETS_TOPIC, partition, exc)

        await replay_partition(plog, on_batch)
        count = 0
        for entry in entries:
            if isinstance(entry, Marker):
                core.replay_marker(partition, entry.producer_id, entry.commit)
            else:
                core.replay(entry)
                count += 1
        return count

    async def on_timer(self, shard: Shard[GroupCoordinator], now_ms: int) -> None:
        await self._apply(shard, shard.core.tick(now_ms))

    def on_unloaded(self, shard: Shard[GroupCoordinator]) -> None:
        """Parked JoinGroup/SyncGroup calls of the shard are answered NOT_COORDINATOR, as
        Kafka answers them when it unloads a group. The consumer-lag windows of its groups go
        (whoever loads the shard starts them afresh)."""
        for group_id in self.lag_history.groups():
            if self.runtime.partition_for(group_id) == shard.partition:
                self.lag_history.drop_group(group_id)
        for future in self._pending.pop(shard.partition, {}).values():
            if not future.done():
                future.set_exception(CoordinatorError(
                    ErrorCode.not_coordinator, f"{OFFSETS_TOPIC}-{shard.partition} unloaded"))

    # -- the write path -------------------------------------------------------------------

    async def _run(self, shard: Shard[GroupCoordinator], step: Step[T]) -> T:
        key = step.pending_key
        future: asyncio.Future[Any] | None = None
        if step.result is None:
            assert key is not None, "a step without a result must name its key"
            future = asyncio.get_running_loop().create_future()
            parked = self._pending.setdefault(shard.partition, {})
            old = parked.pop(key, None)
            if old is not None and not old.done():
                old.cancel()
            parked[key] = future
        try:
            await self._apply(shard, step)
            if future is None:
                assert step.result is not None
                return step.result
            return await future  # type: ignore[no-any-return]
        finally:
            waiting = self._pending.get(shard.partition)
            if key is not None and waiting is not None and waiting.get(key) is future:
                del waiting[key]

    async def _apply(self, shard: Shard[GroupCoordinator], step: Step[Any]) -> None:
        """Writes the step's records, then delivers its completions once every write of the
        shard started before this step's is done too: as Kafka's runtime completes a response
        only when the log holds every record written before it, a member is never told of
        state another member's answer still waits to persist (a follower's SyncGroup in a
        Stable group is not answered ahead of the leader's). If the write fails the shard
        reloads (its parked calls are answered NOT_COORDINATOR) and the caller gets the
        coordinator error; if the shard was unloaded while the write ran, the completions are
        dropped (their calls were answered at the unload)."""
        writes = self._writes.setdefault(shard.partition, set())
        earlier = tuple(writes)
        if step.records:
            mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            writes.add(mine)
            try:
                current = await self.runtime.append(
                    shard, _batches(shard.partition, step.records, self.runtime.clock()))
            finally:
                writes.discard(mine)
                mine.set_result(None)
            if not current:
                return  # the shard was unloaded meanwhile: its parked calls are answered
        if earlier:
            await asyncio.wait(earlier)
        parked = self._pending.get(shard.partition, {})
        for completion in step.completions:
            future = parked.get(completion.key)
            if future is not None and not future.done():
                future.set_result(completion.result)
        self.runtime.touched(shard)

def _batches(partition: int, records: Sequence[GroupLogRecord], now_ms: int,
             ) -> list[AppendBatch]:
    """The records as batches, one per run of records of one producer (or none)."""
    assert all(r.partition == partition for r in records), "a record of another shard"
    return [_append_batch(list(run), producer, now_ms) for producer, run
            in groupby(records, key=lambda r: (r.producer_id, r.producer_epoch))]


def _append_batch(records: list[GroupLogRecord], producer: tuple[int, int], now_ms: int,
                  ) -> AppendBatch:
    """One batch of the records; a transactional one if they belong to a producer."""
    producer_id, producer_epoch = producer
    entries: list[RecordInput] = [(r.key, r.value, (), now_ms) for r in records]
    if producer_id >= 0:
        data = build_batch(entries, producer_id=producer_id, producer_epoch=producer_epoch,
                           base_sequence=-1, transactional=True)
    else:
        data = build_batch(entries)
    return AppendBatch(bytearray(data), len(records), now_ms, now_ms)


def _collect_batch(batch: memoryview, header: BatchHeader, start: int, partition: int,
                   out: list[LogEntry]) -> None:
    """A marker, or the batch's keyed records at or after `start` (of its producer if it
    is transactional)."""
    if header.is_control:
        kind = control_type(batch)
        if header.is_transactional and kind in (ABORT, COMMIT):
            out.append(Marker(header.producer_id, kind == COMMIT))
        return
    producer_id, producer_epoch = -1, -1
    if header.is_transactional:
        producer_id, producer_epoch = header.producer_id, header.producer_epoch
    for record in iter_records(batch):
        if header.base_offset + record.offset_delta >= start and record.key:
            out.append(GroupLogRecord(partition, record.key, record.value, producer_id,
                                      producer_epoch))
