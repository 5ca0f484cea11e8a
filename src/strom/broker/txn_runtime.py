"""The transaction coordinator on the coordinator runtime (broker/coordinator_runtime.py;
docs/decisions/0003).

One `TransactionCoordinator` core per partition of `__transaction_state`, holding the
transactional ids that hash to it. Per request the core's records are appended to the shard's
partition before the answer; then the step's transaction markers are written in the background:
one COMMIT/ABORT control batch per partition of the transaction, appended here when this
broker leads the partition and otherwise sent to its leader in a WriteTxnMarkers request
(broker/txn_markers.py: which answers retry, drop the marker or stop; for `__consumer_offsets`
partitions the group coordinator then completes the pending transactional offset commits),
after which the core is told (`markers_written`) and the transaction completes. A marker
writer belongs to its shard and stops when the shard is unloaded or reloaded: the next load
asks again for the markers of every transaction it finds in Prepare*.

`__transaction_state` is created on first use, as Kafka does on the first FindCoordinator for a
transactional id (this runtime is the only creator), and this broker then owns every partition
of it; transactional ids map to its actual partition count, which wins over
transaction.state.log.num.partitions once it exists (as in Kafka). A failed append reloads the
shard from its log (the runtime's failure policy), as decisions/0003 requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final, TypeVar

from strom.broker.coordinator_runtime import (
    CoordinatorError,
    CoordinatorRuntime,
    Shard,
    ShardStatus,
    wall_clock_ms,
)
from strom.broker.group_runtime import GroupRuntime
from strom.broker.internal_topic_create import create_internal_topic
from strom.broker.log_scan import replay_partition
from strom.broker.peers import Peers
from strom.broker.producer_ids import ProducerIdAllocator
from strom.broker.txn_markers import (
    MarkerOutcome,
    TxnMarker,
    answered,
    send_marker,
    write_local_marker,
)
from strom.config.broker import BrokerConfig
from strom.coordinator.internal_topics import TXN_TOPIC, TXN_TOPIC_CONFIGS
from strom.coordinator.log_codec import LogFormatError
from strom.coordinator.transaction import (
    AddPartitionsResult,
    MarkerBatch,
    ProducerIdUnavailable,
    Step,
    TransactionConfig,
    TransactionCoordinator,
    TransactionCounts,
    TransactionDescription,
    TransactionListing,
    TxnLogRecord,
    TxnState,
)
from strom.protocol.batch_header import BatchHeader
from strom.protocol.client import PeerUnavailable
from strom.protocol.messages import ErrorCode
from strom.protocol.record_builder import build_batch
from strom.protocol.records import RecordsError, iter_records
from strom.storage.api import (
    AppendBatch,
    PartitionLog,
    StorageEngine,
    StorageError,
    UnknownTopic,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MARKER_RETRY_S: Final = (0.05, 2.0)  # first and longest backoff of a failed marker write
# The most producer ids one core call can take: a new id and an exhausted epoch's successor.
IDS_PER_CALL: Final = 2

TxnOp = Callable[[TransactionCoordinator, int], Step[T]]


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
        offsets_partition_for=groups.partition_for)


class TransactionRuntime:
    """The transaction coordinator's shards and their marker writers."""

    def __init__(self, engine: StorageEngine, config: TransactionConfig,
                 producer_ids: ProducerIdAllocator, groups: GroupRuntime, peers: Peers,
                 clock: Callable[[], int] = wall_clock_ms, replication_factor: int = 1) -> None:
        """`peers` carries the markers for partitions other brokers lead; this broker is
        `peers.node_id`. `replication_factor`: transaction.state.log.replication.factor
        (capped by the live brokers when the topic is created)."""
        self.replication_factor = replication_factor
        self.engine = engine
        self.config = config
        self.producer_ids = producer_ids
        self.groups = groups
        self.peers = peers
        self.runtime: CoordinatorRuntime[TransactionCoordinator] = CoordinatorRuntime(
            engine, TXN_TOPIC, self, config.transaction_state_partitions, peers.node_id,
            clock)
        self._owned = False  # the topic exists and the shards led here were loaded once
        self._owning = asyncio.Lock()
        self._markers: dict[int, set[asyncio.Task[None]]] = {}  # writers by shard partition
        self.counts = TransactionCounts()  # ended transactions, for the metrics

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the shards of `__transaction_state` this broker leads if the topic exists
        (it is created on first use), and follows leadership as it moves."""
        self.engine.on_leadership_change(self.runtime.reconcile)
        if TXN_TOPIC in self.engine.topics():
            await self.own(create=False)
        self.runtime.start()

    async def stop(self) -> None:
        writers = [task for tasks in self._markers.values() for task in tasks]
        await self.runtime.stop()  # unloads every shard, which cancels its marker writers
        for task in writers:  # a writer's failure was logged where it happened
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def own(self, create: bool) -> None:
        """On first use: creates the topic (if `create`) and loads the shards this broker
        leads. Raises CoordinatorError(COORDINATOR_NOT_AVAILABLE) if it cannot be created."""
        if not self._owned:
            async with self._owning:
                await self._own(create)

    async def _own(self, create: bool) -> None:
        if self._owned:
            return  # another call took them while this one waited for the lock
        if TXN_TOPIC not in self.engine.topics():
            if not create:
                return
            try:
                await create_internal_topic(
                    self.engine, TXN_TOPIC, self.config.transaction_state_partitions,
                    TXN_TOPIC_CONFIGS, self.peers.node_id, self.replication_factor)
            except (StorageError, OSError) as exc:
                log.error("cannot create %s: %s", TXN_TOPIC, exc)
                raise CoordinatorError(ErrorCode.coordinator_not_available, str(exc)) from exc
        await self.runtime.load_led()
        self._owned = True

    # -- for handlers ---------------------------------------------------------------------

    def partition_for(self, transactional_id: str) -> int:
        return self.runtime.partition_for(transactional_id)

    def owns(self, transactional_id: str) -> bool:
        """FindCoordinator: this broker serves the id's shard (loaded or loading)."""
        status = self.runtime.status(self.partition_for(transactional_id))
        return status in (ShardStatus.ACTIVE, ShardStatus.LOADING)

    async def write(self, transactional_id: str, op: TxnOp[T]) -> T:
        """Runs `op(core, now_ms)` on the id's shard (producer ids at hand), appends its
        records, returns its answer and starts its marker writers; raises CoordinatorError."""
        await self.own(create=True)
        await self._reserve_ids()
        shard = self.runtime.shard(self.partition_for(transactional_id))
        step = op(shard.core, self.runtime.clock())
        await self._apply(shard, step)
        return step.result

    def verify(self, transactional_id: str, producer_id: int, producer_epoch: int,
               partitions: Sequence[tuple[str, int]]) -> int:
        """KIP-890 part 1: 0 if every partition is in the producer's ongoing transaction,
        else the error to answer (synchronous, so a produce can verify and append with no
        suspension in between). A shard not served: COORDINATOR_NOT_AVAILABLE, or
        COORDINATOR_LOAD_IN_PROGRESS while it loads."""
        try:
            result = self.verify_partitions(transactional_id, producer_id, producer_epoch,
                                            partitions)
        except CoordinatorError as exc:
            if exc.error == ErrorCode.coordinator_load_in_progress:
                return exc.error
            return int(ErrorCode.coordinator_not_available)
        if result.error:
            return int(result.error)
        for _topic, _partition, error in result.partition_errors:
            if error:
                return int(error)
        return 0

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: Sequence[tuple[str, int]]) -> AddPartitionsResult:
        """AddPartitionsToTxn with verify_only (v4+): each partition's answer, changing
        nothing (the topic is not created, no producer id reserved). Raises CoordinatorError
        for a shard not served."""
        shard = self.runtime.shard(self.partition_for(transactional_id))
        step = shard.core.add_partitions(transactional_id, producer_id, producer_epoch,
                                         partitions, self.runtime.clock(), verify_only=True)
        assert not step.records and not step.markers, "a verification changed the state"
        return step.result

    async def describe(self, transactional_id: str) -> TransactionDescription:
        """DescribeTransactions of one id; raises CoordinatorError for a shard not served.
        Before the topic exists no id is known (it is not created just for this)."""
        await self.own(create=False)
        if not self._owned:
            return TransactionCoordinator(self.config).describe([transactional_id])[0]
        shard = self.runtime.shard(self.partition_for(transactional_id))
        return shard.core.describe([transactional_id])[0]

    async def list_transactions(self, state_filters: Iterable[str],
                                producer_id_filters: Iterable[int], duration_filter_ms: int,
                                ) -> tuple[tuple[str, ...], list[TransactionListing]]:
        """ListTransactions over every shard owned here; raises CoordinatorError while one
        is loading (COORDINATOR_LOAD_IN_PROGRESS) or cannot be loaded."""
        await self.own(create=False)
        states, producer_ids = tuple(state_filters), tuple(producer_id_filters)
        now = self.runtime.clock()
        unknown = tuple(label for label in states if TxnState.from_label(label) is None)
        listings: list[TransactionListing] = []
        for shard in self.runtime.shards():
            core = self.runtime.shard(shard.partition).core
            listings += core.list_transactions(states, producer_ids, duration_filter_ms,
                                               now)[1]
        return unknown, listings

    # -- the runtime's host ---------------------------------------------------------------

    def new_core(self, partition: int, partitions: int) -> TransactionCoordinator:
        return TransactionCoordinator(replace(self.config,
                                              transaction_state_partitions=partitions),
                                      self.counts)

    async def replay(self, core: TransactionCoordinator, plog: PartitionLog,
                     partition: int) -> int:
        records: list[TxnLogRecord] = []

        def on_batch(header: BatchHeader, batch: memoryview, start: int) -> None:
            _collect(partition, header, batch, start, records)

        await replay_partition(plog, on_batch)
        for record in records:
            core.replay(record)
        return len(records)

    async def on_timer(self, shard: Shard[TransactionCoordinator], now_ms: int) -> None:
        """Markers of transactions loaded in Prepare*, transaction timeouts, id expiry."""
        await self._reserve_ids()
        if self.runtime.is_current(shard):
            await self._apply(shard, shard.core.tick(self.runtime.clock()))

    def on_unloaded(self, shard: Shard[TransactionCoordinator]) -> None:
        current = asyncio.current_task()
        for task in self._markers.pop(shard.partition, set()):
            if task is not current:  # the current one sees it is stale and returns
                task.cancel()

    # -- the write path -------------------------------------------------------------------

    async def _reserve_ids(self) -> None:
        try:
            await self.producer_ids.ensure(IDS_PER_CALL)
        except StorageError as exc:
            raise CoordinatorError(ErrorCode.coordinator_not_available,
                                   f"cannot reserve producer ids: {exc}") from exc

    async def _apply(self, shard: Shard[TransactionCoordinator], step: Step[Any]) -> None:
        if step.records and not await self.runtime.append(
                shard, [_batch(shard.partition, step.records, self.runtime.clock())]):
            return  # written, but the shard was unloaded: whoever loads it writes the markers
        for batch in step.markers:
            task = asyncio.get_running_loop().create_task(self._write_markers(shard, batch))
            writers = self._markers.setdefault(shard.partition, set())
            writers.add(task)
            task.add_done_callback(writers.discard)
        self.runtime.touched(shard)

    async def _write_markers(self, shard: Shard[TransactionCoordinator],
                             batch: MarkerBatch) -> None:
        """Writes the batch's marker to each partition (retrying until it is written or
        dropped, or the shard goes), then completes the transaction in the core."""
        marker = TxnMarker(batch.producer_id, batch.producer_epoch, batch.commit, shard.epoch)
        for topic, partition in batch.partitions:
            delay = MARKER_RETRY_S[0]
            while True:
                if not self.runtime.is_current(shard):
                    return
                outcome = await self._write_marker(batch.transactional_id, marker, topic,
                                                   partition)
                if outcome is MarkerOutcome.DONE:
                    break
                if outcome is MarkerOutcome.STOP:
                    return
                await asyncio.sleep(MARKER_RETRY_S[1] if outcome is MarkerOutcome.RETRY_SLOWLY
                                    else delay)
                delay = min(delay * 2, MARKER_RETRY_S[1])
        while self.runtime.is_current(shard):
            try:
                await self._reserve_ids()
                if not self.runtime.is_current(shard):
                    return
                await self._apply(shard, shard.core.markers_written(
                    batch.transactional_id, batch.producer_id, batch.producer_epoch,
                    self.runtime.clock()))
                return
            except CoordinatorError:
                await asyncio.sleep(MARKER_RETRY_S[1])

    async def _write_marker(self, transactional_id: str, marker: TxnMarker, topic: str,
                            partition: int) -> MarkerOutcome:
        """One attempt at the marker for one partition: appended here if this broker leads
        it, else sent to its leader; retried while it has none."""
        try:
            leader = self.engine.leadership(topic, partition).leader
        except UnknownTopic:
            log.info("transaction %s: %s-%d is gone; no marker written", transactional_id,
                     topic, partition)
            return MarkerOutcome.DONE
        if leader is None:
            log.debug("transaction %s: %s-%d has no leader yet", transactional_id, topic,
                      partition)
            return MarkerOutcome.RETRY
        if leader == self.peers.node_id:
            error: int = await write_local_marker(self.engine, self.groups, leader, marker,
                                                  topic, partition)
        else:
            try:
                error = await send_marker(self.peers, leader, marker, topic, partition)
            except PeerUnavailable as exc:
                log.info("transaction %s: the %s for %s-%d did not reach its leader (%s); "
                         "retrying", transactional_id, marker.describe(), topic, partition, exc)
                return MarkerOutcome.RETRY
        return answered(transactional_id, leader, marker, topic, partition, error)


def _batch(partition: int, records: Sequence[TxnLogRecord], now_ms: int) -> AppendBatch:
    assert all(r.partition == partition for r in records), "a record of another shard"
    data = bytearray(build_batch([(r.key, r.value, [], now_ms) for r in records]))
    return AppendBatch(data, len(records), now_ms, now_ms)


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
