"""The asyncio shell around the I/O-free transaction coordinator (docs/decisions/0003).

Per request it calls the core, appends the step's records to `__transaction_state` before
answering, and then writes the step's transaction markers in the background: one COMMIT/ABORT
control batch per partition of the transaction (for `__consumer_offsets` partitions the group
coordinator then completes the pending transactional offset commits), after which the core is
told (`markers_written`) and the transaction completes. A timer runs the core's timeouts.

`__transaction_state` is created on first use, as Kafka does on the first FindCoordinator for a
transactional id (this runtime is the only creator), and replayed at start when it exists;
transactional ids map to its actual partition count, which wins over
transaction.state.log.num.partitions once it exists (as in Kafka). If an append to it fails,
the core's in-memory state (which moved on) is thrown away and rebuilt from the log before the
next request, as decisions/0003 requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, TypeVar

from strom.broker.group_runtime import GroupRuntime
from strom.broker.log_scan import scan_partition
from strom.broker.producer_ids import ProducerIdAllocator
from strom.config.broker import BrokerConfig
from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC, TXN_TOPIC_CONFIGS
from strom.coordinator.log_codec import LogFormatError
from strom.coordinator.transaction import (
    MarkerBatch,
    ProducerIdUnavailable,
    Step,
    TransactionConfig,
    TransactionCoordinator,
    TxnLogRecord,
)
from strom.protocol.batch_header import BatchHeader
from strom.protocol.messages import ErrorCode
from strom.protocol.record_builder import build_batch
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import (
    AppendBatch,
    InvalidProducerEpoch,
    StorageEngine,
    StorageError,
    TopicExists,
    UnknownTopic,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMER_MAX_SLEEP_S: Final = 1.0
MARKER_RETRY_S: Final = (0.05, 2.0)  # first and longest backoff of a failed marker write
# The most producer ids one core call can take: a new id and an exhausted epoch's successor.
IDS_PER_CALL: Final = 2


class CoordinatorUnavailable(Exception):
    """`__transaction_state` cannot be written or read: answer COORDINATOR_NOT_AVAILABLE."""


def transaction_config(config: BrokerConfig, groups: GroupRuntime,
                       producer_ids: ProducerIdAllocator) -> TransactionConfig:
    def allocate() -> int:
        producer_id = producer_ids.take()
        if producer_id is None:
            raise ProducerIdUnavailable("the producer id block is used up")
        return producer_id

    return TransactionConfig(
        transaction_max_timeout_ms=config.get_int("transaction.max.timeout.ms"),
        transactional_id_expiration_ms=config.get_int("transactional.id.expiration.ms"),
        transaction_state_partitions=config.get_int("transaction.state.log.num.partitions"),
        allocate_producer_id=allocate,
        offsets_partition_for=groups.coordinator.partition_for)


class TransactionRuntime:
    def __init__(self, engine: StorageEngine, config: TransactionConfig,
                 producer_ids: ProducerIdAllocator, groups: GroupRuntime) -> None:
        self.engine = engine
        self.config = config
        self.producer_ids = producer_ids
        self.groups = groups
        self.coordinator = TransactionCoordinator(config)
        self._ready = False  # the topic exists and the coordinator holds its replayed state
        self._load_lock = asyncio.Lock()
        self._markers: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        # Bumped by every (re)load: marker writers of an older load stop, since the reload
        # asks again for the markers of every transaction it finds in Prepare*.
        self._generation = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Replays `__transaction_state` if it exists (it is created on first use)."""
        if TXN_TOPIC in self.engine.topics():
            try:
                await self.ready()
            except CoordinatorUnavailable:  # the broker serves on; the timer retries
                log.error("transactions are unavailable until %s can be loaded", TXN_TOPIC)
        self._timer = asyncio.create_task(self._run_timers())

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._timer, *self._markers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._markers.clear()

    async def ready(self) -> None:
        """Creates and loads `__transaction_state` unless done; raises CoordinatorUnavailable."""
        if self._ready:
            return
        async with self._load_lock:
            if not self._ready:
                await self._load()
        await self.apply(self.coordinator.tick(now_ms()))  # markers of Prepare* transactions

    async def _load(self) -> None:
        try:
            if TXN_TOPIC not in self.engine.topics():
                with contextlib.suppress(TopicExists):
                    await self.engine.create_topic(
                        TXN_TOPIC, self.config.transaction_state_partitions,
                        TXN_TOPIC_CONFIGS)
            started = time.monotonic()
            self.config = replace(self.config, transaction_state_partitions=(
                self.engine.topics()[TXN_TOPIC].partitions))
            core = TransactionCoordinator(self.config)
            count = 0
            for record in await self._read_all():
                core.replay(record)
                count += 1
        except (StorageError, OSError, LogFormatError) as exc:
            log.error("cannot load %s: %s", TXN_TOPIC, exc)
            raise CoordinatorUnavailable(str(exc)) from exc
        self.coordinator = core
        self._ready = True
        self._generation += 1
        current = asyncio.current_task()
        for task in self._markers:
            if task is not current:
                task.cancel()
        log.info("loaded %d transaction records from %s in %.0f ms", count, TXN_TOPIC,
                 (time.monotonic() - started) * 1000)

    async def ready_if_exists(self) -> None:
        """Loads the state if `__transaction_state` exists; without it there is nothing to
        describe or list, and it is not created just for that."""
        if TXN_TOPIC in self.engine.topics():
            await self.ready()

    async def _read_all(self) -> list[TxnLogRecord]:
        out: list[TxnLogRecord] = []
        for partition in range(self.engine.topics()[TXN_TOPIC].partitions):
            def on_batch(header: BatchHeader, batch: memoryview, start: int,
                         partition: int = partition) -> None:
                _collect(partition, header, batch, start, out)

            plog = self.engine.partition(TXN_TOPIC, partition)
            # Appends answered or still in flight count too (flush.messages=1 holds the high
            # watermark back until their fsync): wait for them, then read everything.
            await plog.wait_durable((await plog.offsets()).log_end)
            await scan_partition(plog, on_batch)
        return out

    # -- requests -------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before a core call: the state is loaded and producer ids are at hand."""
        await self.ready()
        try:
            await self.producer_ids.ensure(IDS_PER_CALL)
        except StorageError as exc:
            raise CoordinatorUnavailable(f"cannot reserve producer ids: {exc}") from exc

    async def run(self, step: Step[T]) -> T:
        """Appends the step's records, then returns its answer; markers follow."""
        await self.apply(step)
        return step.result

    async def apply(self, step: Step[Any]) -> None:
        if step.records:
            try:
                await self._persist(step.records)
            except (StorageError, OSError) as exc:
                # The core already moved on: forget it and replay the log on the next call.
                log.error("appending to %s failed (%s); reloading the transaction state",
                          TXN_TOPIC, exc)
                self._ready = False
                raise CoordinatorUnavailable(str(exc)) from exc
        for batch in step.markers:
            task = asyncio.create_task(self._write_markers(batch, self._generation))
            self._markers.add(task)
            task.add_done_callback(self._markers.discard)
        self._wake.set()

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
               partitions: Sequence[tuple[str, int]]) -> int:
        """KIP-890 part 1: 0 if every partition is in the producer's ongoing transaction,
        else the error to answer (synchronous, so a produce can verify and append with no
        suspension in between)."""
        if not self._ready:
            return int(ErrorCode.coordinator_not_available)
        step = self.coordinator.add_partitions(transactional_id, producer_id, producer_epoch,
                                               partitions, now_ms(), verify_only=True)
        if step.result.error:
            return int(step.result.error)
        for _topic, _partition, error in step.result.partition_errors:
            if error:
                return int(error)
        return 0

    # -- persistence ----------------------------------------------------------------------

    async def _persist(self, records: Sequence[TxnLogRecord]) -> None:
        stamp = now_ms()
        by_partition: dict[int, list[TxnLogRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        # Every append starts before any is awaited, so records keep the core's order.
        appends = []
        for partition, group in by_partition.items():
            plog = self.engine.partition(TXN_TOPIC, partition)
            data = bytearray(build_batch([(r.key, r.value, [], stamp) for r in group]))
            appends.append(asyncio.ensure_future(
                plog.append([AppendBatch(data, len(group), stamp, stamp)])))
        results = await asyncio.gather(*appends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _write_markers(self, batch: MarkerBatch, generation: int) -> None:
        """Writes the batch's marker to each partition (retrying storage errors until it is
        written or the broker stops), then completes the transaction in the core. A writer
        of an older load stops: the reload started its own for the same transaction."""
        for topic, partition in batch.partitions:
            delay = MARKER_RETRY_S[0]
            while True:
                if generation != self._generation:
                    return
                if await self._write_marker(batch, topic, partition):
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, MARKER_RETRY_S[1])
        while True:
            try:
                await self.prepare()
                if generation != self._generation:
                    return
                await self.apply(self.coordinator.markers_written(
                    batch.transactional_id, batch.producer_id, batch.producer_epoch,
                    now_ms()))
                return
            except CoordinatorUnavailable:
                await asyncio.sleep(MARKER_RETRY_S[1])

    async def _write_marker(self, batch: MarkerBatch, topic: str, partition: int) -> bool:
        try:
            plog = self.engine.partition(topic, partition)
            await plog.append_marker(batch.producer_id, batch.producer_epoch, batch.commit)
        except UnknownTopic:
            log.info("transaction %s: %s-%d is gone; no marker written",
                     batch.transactional_id, topic, partition)
            return True
        except InvalidProducerEpoch as exc:
            # A newer epoch of this producer already wrote there (it was fenced and moved
            # on): Kafka drops such a marker too.
            log.warning("transaction %s: marker for %s-%d not written: %s",
                        batch.transactional_id, topic, partition, exc)
            return True
        except (StorageError, OSError) as exc:
            log.error("transaction %s: writing the marker to %s-%d failed (%s); retrying",
                      batch.transactional_id, topic, partition, exc)
            return False
        if topic == OFFSETS_TOPIC:
            await self.groups.complete_txn(partition, batch.producer_id, batch.commit)
        return True

    # -- time -----------------------------------------------------------------------------

    async def _run_timers(self) -> None:
        while not self._stopping:
            deadline = self.coordinator.next_deadline_ms() if self._ready else None
            sleep_s = (TIMER_MAX_SLEEP_S if deadline is None
                       else (deadline - now_ms()) / 1000)
            self._wake.clear()
            if sleep_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(sleep_s, TIMER_MAX_SLEEP_S))
            if not self._ready and TXN_TOPIC not in self.engine.topics():
                continue  # not created yet; once it exists (a failed append) reload it
            try:
                await self.prepare()
                await self.apply(self.coordinator.tick(now_ms()))
            except CoordinatorUnavailable as exc:
                log.warning("transaction timeouts not run: %s", exc)
                await asyncio.sleep(TIMER_MAX_SLEEP_S)
            except Exception:
                log.exception("transaction coordinator timer failed")
                await asyncio.sleep(TIMER_MAX_SLEEP_S)


def now_ms() -> int:
    return int(time.time() * 1000)


def _collect(partition: int, header: BatchHeader, batch: memoryview, start: int,
             out: list[TxnLogRecord]) -> None:
    """Adds the batch's keyed records at or after `start`."""
    if header.is_control:
        return
    try:
        for record in iter_records(batch):
            if header.base_offset + record.offset_delta >= start and record.key:
                out.append(TxnLogRecord(partition, bytes(record.key),
                                        None if record.value is None else bytes(record.value)))
    except RecordsError as exc:
        raise LogFormatError(f"{TXN_TOPIC}-{partition} offset {header.base_offset}: "
                             f"{exc}") from exc
