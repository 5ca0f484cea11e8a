"""The asyncio shell around the I/O-free group coordinator.

It persists the records each coordinator step emits to `__consumer_offsets` before answering,
parks JoinGroup/SyncGroup calls whose answer comes later, delivers completions to them, runs the
coordinator's timers, and replays `__consumer_offsets` into the coordinator at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Final, TypeVar

from strom.broker.errors import ApiError
from strom.broker.log_scan import scan_partition
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import GroupConfig, GroupLogRecord, PendingKey, Step
from strom.coordinator.internal_topics import OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIGS
from strom.protocol.batch_header import BatchHeader
from strom.protocol.control_batch import ABORT, COMMIT, control_type
from strom.protocol.messages import ErrorCode
from strom.protocol.record_builder import RecordInput, build_batch
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import (
    AppendBatch,
    LogDirFull,
    StorageEngine,
    StorageError,
    StorageUnavailable,
    TopicExists,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMER_MAX_SLEEP_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class Marker:
    """A transaction marker read from `__consumer_offsets`, replayed in log order."""

    producer_id: int
    commit: bool


LogEntry = GroupLogRecord | Marker


class GroupRuntime:
    def __init__(self, engine: StorageEngine, config: GroupConfig) -> None:
        self.engine = engine
        self.config = config
        self.coordinator = GroupCoordinator(config)
        self._pending: dict[PendingKey, asyncio.Future[Any]] = {}
        # `__consumer_offsets` writes in flight; no answer leaves before those started ahead of it
        self._writes: set[asyncio.Future[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        """Creates `__consumer_offsets` if it does not exist (the only way it is created),
        maps groups to its actual partitions, and replays it."""
        await self.ensure_offsets_topic()
        partitions = self.engine.topics()[OFFSETS_TOPIC].partitions
        self.coordinator.use_offsets_topic_partitions(partitions)
        started = time.monotonic()
        count = await self.replay_all()
        log.info("loaded %d group records from %s in %.0f ms", count, OFFSETS_TOPIC,
                 (time.monotonic() - started) * 1000)
        self._stopping = False
        self._timer = asyncio.create_task(self._run_timers())

    async def stop(self) -> None:
        # The flag too: Python 3.11's wait_for can swallow a cancel that races a wake-up.
        self._stopping = True
        self._wake.set()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    async def ensure_offsets_topic(self) -> None:
        if OFFSETS_TOPIC in self.engine.topics():
            return
        with contextlib.suppress(TopicExists):
            await self.engine.create_topic(OFFSETS_TOPIC, self.config.offsets_topic_partitions,
                                           OFFSETS_TOPIC_CONFIGS)

    async def replay_all(self) -> int:
        count = 0
        info = self.engine.topics()[OFFSETS_TOPIC]
        for partition in range(info.partitions):
            for entry in await self._read_partition(partition):
                if isinstance(entry, Marker):
                    self.coordinator.replay_marker(partition, entry.producer_id, entry.commit)
                else:
                    self.coordinator.replay(entry)
                    count += 1
        return count

    async def _read_partition(self, partition: int) -> list[LogEntry]:
        out: list[LogEntry] = []

        def on_batch(header: BatchHeader, batch: memoryview, start: int) -> None:
            try:
                _collect_batch(batch, header, start, partition, out)
            except (RecordsError, ValueError) as exc:
                log.warning("skipping unreadable batch at offset %d of %s: %s",
                            header.base_offset, OFFSETS_TOPIC, exc)

        await scan_partition(self.engine.partition(OFFSETS_TOPIC, partition), on_batch)
        return out

    async def run(self, step: Step[T]) -> T:
        """Persists the step's records, delivers its completions, and returns its answer
        (waiting for it when the coordinator parked the call)."""
        key = step.pending_key
        future: asyncio.Future[Any] | None = None
        if step.result is None:
            assert key is not None, "a step without a result must name its key"
            future = asyncio.get_running_loop().create_future()
            old = self._pending.pop(key, None)
            if old is not None and not old.done():
                old.cancel()
            self._pending[key] = future
        try:
            await self.apply(step)
            if future is None:
                assert step.result is not None
                return step.result
            return await future  # type: ignore[no-any-return]
        finally:
            if key is not None and self._pending.get(key) is future:
                del self._pending[key]

    async def apply(self, step: Step[Any]) -> None:
        """Persists, then delivers once every write started before this step's is done too.

        As Kafka's coordinator runtime completes a response only when the log holds every
        record written before it (a step without records waits for the writes in flight), a
        member is never told of state another member's answer still waits to persist: a
        follower's SyncGroup in a Stable group is not answered ahead of the leader's.
        If the write fails, the parked calls still get their answers (the coordinator has
        moved on in memory) and the caller sees the error.
        """
        earlier = tuple(self._writes)
        try:
            if step.records:
                await self.persist(step.records)
        finally:
            try:
                if earlier:
                    await asyncio.wait(earlier)
            finally:
                self._deliver(step)

    async def persist(self, records: Sequence[GroupLogRecord]) -> None:
        """Appends the records; a storage failure (a full disk) is raised as NOT_COORDINATOR,
        retriable, as Kafka maps KAFKA_STORAGE_ERROR for the group coordinator's writes."""
        try:
            await self._track(self._start_persist(records))
        except StorageError as exc:
            if not isinstance(exc, (LogDirFull, StorageUnavailable)):  # logged by the engine
                log.error("appending to %s failed: %s", OFFSETS_TOPIC, exc)
            raise ApiError(ErrorCode.not_coordinator,
                           "The coordinator could not write its log") from exc

    def _track(self, write: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        return write

    def _deliver(self, step: Step[Any]) -> None:
        for completion in step.completions:
            future = self._pending.get(completion.key)
            if future is not None and not future.done():
                future.set_result(completion.result)
        self._wake.set()

    def _start_persist(self, records: Sequence[GroupLogRecord]) -> asyncio.Future[Any]:
        """Starts the appends of `records` (in the coordinator's order) and returns their
        joint future."""
        now_ms = int(time.time() * 1000)
        by_partition: dict[int, list[GroupLogRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        logs = {p: self.engine.partition(OFFSETS_TOPIC, p) for p in by_partition}
        # Start every append before awaiting any, so records keep the coordinator's order.
        appends = []
        for partition, group in by_partition.items():
            batches = [_append_batch(list(run), producer, now_ms) for producer, run
                       in groupby(group, key=lambda r: (r.producer_id, r.producer_epoch))]
            appends.append(logs[partition].append(batches))
        return asyncio.gather(*appends)

    async def complete_txn(self, partition: int, producer_id: int, commit: bool) -> None:
        """The transaction runtime wrote the producer's COMMIT or ABORT marker to
        `__consumer_offsets` partition `partition`: its pending offsets there count or go."""
        now_ms = int(time.time() * 1000)
        await self.apply(self.coordinator.complete_txn(partition, producer_id, commit, now_ms))

    async def _run_timers(self) -> None:
        while not self._stopping:
            deadline = self.coordinator.next_deadline_ms()
            now_ms = int(time.time() * 1000)
            sleep_s = TIMER_MAX_SLEEP_S if deadline is None else (deadline - now_ms) / 1000
            self._wake.clear()
            if sleep_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(sleep_s, TIMER_MAX_SLEEP_S))
            try:
                await self.apply(self.coordinator.tick(int(time.time() * 1000)))
            except ApiError as exc:
                log.warning("group coordinator timer: %s", exc)
            except Exception:
                log.exception("group coordinator timer failed")


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
