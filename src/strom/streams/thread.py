"""A stream thread: a consumer in the application's group, the tasks it runs, its producer.

How tasks are assigned with an ordinary consumer group (no custom assignor, so any Kafka
cluster and librdkafka's cooperative rebalancing work): each sub-topology has one *anchor*
topic (its first source topic); the group consumer subscribes to the anchor topics only, with
the cooperative-sticky assignor. Owning partition p of a sub-topology's anchor topic means
running task `<sub-topology>_<p>`: the thread then reads partition p of the sub-topology's
other source topics itself (a second consumer, `assign`ed, starting at the group's committed
offsets), so a task's co-partitioned inputs always stay together, rebalances move only the
tasks that change hands, and tasks stay where they are (sticky). Offsets of every input are
committed through the group (with exactly-once, in the producer's transaction), each with
the task's processor metadata in its metadata string (strom.streams.processor_metadata), which
a task created again reads back from its inputs' committed offsets.

A new task first restores its stores from their changelogs (for persistent stores from
their checkpoint, written when a task is closed after a successful commit; under exactly-once
a crash leaves none), with its anchor partition paused; then it processes.
A task that was a standby here (strom.streams.standby) takes over the standby's stores and
restores only from where they are. Every task reads the instance's global stores
(strom.streams.global_thread).
Records of a task's inputs are processed in timestamp order across its partitions (the
smallest buffered timestamp first).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.streams import processor_metadata
from strom.streams.collector import ProducerCollector, ProductionError
from strom.streams.config import StreamsConfig
from strom.streams.membership import consumer_client_id
from strom.streams.metrics import ThreadMetrics
from strom.streams.record import Headers
from strom.streams.state_dir import StateDirectory, TaskDirectory
from strom.streams.stores.api import StateStore
from strom.streams.stores.caching import ThreadCache
from strom.streams.task import StreamsError, Task
from strom.streams.topology import SubTopology, Topology

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 30.0
# Commit errors that mean the group has moved on without this member (Kafka Streams'
# TaskMigratedException).
MIGRATED = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                      KafkaError.REBALANCE_IN_PROGRESS, KafkaError.FENCED_INSTANCE_ID,
                      KafkaError._FENCED})
FENCED = MIGRATED | {KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


class TaskMigrated(Exception):
    """The group moved on without this thread: its tasks are closed and it joins again."""
RESTORE_BATCH = 10_000
BATCH = 500  # records taken from a consumer at a time
IDLE_WAIT_CAP_MS = 10_000  # how long a task waits for an input behind (max.task.idle.ms=0)


@dataclass
class RestoreProgress:
    task_id: str
    store: str
    changelog: str
    partition: int
    restored: int = 0
    done: bool = False
    standby: bool = False  # a standby task caught up with the changelog's end


# Told of each store restored (a stream thread's tasks), of each standby store that caught up
# (standby=True), and of each global topic partition read to its end (task id "global"); it
# runs in the thread that did it.
RestoreListener = Callable[[RestoreProgress], None]


@dataclass
class Handover:
    """What a standby task gives the active task it becomes (strom.streams.standby)."""

    directory: TaskDirectory  # locked
    stores: dict[str, StateStore]
    positions: dict[tuple[str, int], int]  # changelog (topic, partition) -> next offset


class Standbys(Protocol):
    def take(self, task_id: str) -> Handover | None:
        """The task runs here from now on: its standby's stores, if it has one here."""

    def released(self, task_id: str) -> None:
        """The task no longer runs here."""


@dataclass
class _Running:
    task: Task
    anchor: tuple[str, int]
    inputs: list[tuple[str, int]]
    directory: TaskDirectory
    queues: dict[str, deque[Message]] = field(default_factory=dict)
    consumed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offsets
    # The next offset of every input known (committed at creation, then consumed): where a
    # commit for processor metadata that changed puts the inputs not consumed since the last.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    restoring: dict[tuple[str, int], RestoreProgress] = field(default_factory=dict)
    # changelog (topic, partition) -> the offset its store holds up to (restored)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    caught_up: set[tuple[str, int]] = field(default_factory=set)  # inputs at their end
    waiting_since: float | None = None  # since when it waits for an input behind


class StreamThread:
    def __init__(self, index: int, topology: Topology, config: StreamsConfig,
                 process_id: str, state: StateDirectory, sub_partitions: dict[int, int],
                 restore_listener: RestoreListener | None = None, *,
                 global_stores: Mapping[str, StateStore] | None = None,
                 standbys: Standbys | None = None,
                 on_tasks_changed: Callable[[], None] | None = None) -> None:
        self.index = index
        self.topology = topology
        self.config = config
        self.app = config.application_id
        self.state = state
        self.sub_partitions = sub_partitions
        self.restore_listener = restore_listener
        self.global_stores = global_stores
        self.standbys = standbys
        self.on_tasks_changed = on_tasks_changed
        self.subs = {sub.id: sub for sub in topology.sub_topologies()}
        self.anchors: dict[str, SubTopology] = {
            self._physical(sub.source_topics[0]): sub for sub in self.subs.values()}
        self.tasks: dict[str, _Running] = {}
        self._by_input: dict[tuple[str, int], _Running] = {}
        self.last_commit = time.monotonic()
        self.running = False
        self.failure: BaseException | None = None
        exactly_once = config.exactly_once
        consumer = {**config.client_settings("consumer"), "group.id": self.app,
                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                    "enable.partition.eof": True,  # tells when an input has caught up
                    "isolation.level": "read_committed" if exactly_once else "read_uncommitted"}
        self.group = Consumer({**consumer,
                               "partition.assignment.strategy": "cooperative-sticky",
                               "client.id": consumer_client_id(self.app, process_id, index)})
        plain = {k: v for k, v in consumer.items() if k != "group.id"}
        self.side = Consumer({**plain, "group.id": f"{self.app}-side-{process_id}-{index}",
                              "client.id": f"{self.app}-{process_id}-{index}-side"})
        self.restore = Consumer({**plain, "group.id": f"{self.app}-restore-{process_id}-{index}",
                                 "enable.partition.eof": True,
                                 "client.id": f"{self.app}-{process_id}-{index}-restore"})
        self.collector = ProducerCollector(
            {**config.client_settings("producer"),
             "client.id": f"{self.app}-{process_id}-{index}-producer"},
            transactional_id=f"{self.app}-{process_id}-{index}" if exactly_once else None,
            errors=config.error_handling)
        if exactly_once:
            self.collector.producer.init_transactions(COMMIT_TIMEOUT_S)
            self.collector.begin()
        self._side_assigned: set[tuple[str, int]] = set()
        self._rejoin = False
        # The record cache of this thread's tasks (statestore.cache.max.bytes / threads).
        self.record_cache = ThreadCache.for_thread(config.cache_max_bytes,
                                                   config.num_stream_threads)
        self.metrics = ThreadMetrics(cache=self.record_cache)

    def _physical(self, topic: str) -> str:
        return self.topology.physical(self.app, topic)

    # -- group membership ----------------------------------------------------------------

    def start(self) -> None:
        self.group.subscribe(sorted(self.anchors), on_assign=self._assigned,
                             on_revoke=self._revoked, on_lost=self._lost)
        self.running = True

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        new = [(sub, tp.partition) for tp in partitions
               if (sub := self.anchors.get(tp.topic)) is not None]
        committed = self._committed([(self._physical(t), p) for sub, p in new
                                     for t in sub.source_topics],
                                    any(len(sub.source_topics) > 1 for sub, _ in new))
        for sub, partition in new:
            self._create_task(sub, partition, committed)
        consumer.incremental_assign(partitions)
        paused = [TopicPartition(r.anchor[0], r.anchor[1])
                  for r in self.tasks.values() if r.restoring]
        if paused:
            consumer.pause(paused)
        self._changed()

    def _changed(self) -> None:
        if self.on_tasks_changed is not None:
            self.on_tasks_changed()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        leaving = [self.tasks[f"{self.anchors[tp.topic].id}_{tp.partition}"]
                   for tp in partitions if tp.topic in self.anchors
                   and f"{self.anchors[tp.topic].id}_{tp.partition}" in self.tasks]
        if leaving:
            try:
                self.commit()  # what the leaving tasks did is committed before they go
            except TaskMigrated as exc:
                self._migrated(exc)
            for running in leaving:
                if running.task.id in self.tasks:
                    self._close_task(running, clean=True)
        consumer.incremental_unassign(partitions)
        self._changed()

    def _migrated(self, exc: TaskMigrated) -> None:
        """The group moved on without this thread (a rebalance it was late for, a zombie's
        generation): what was not committed is given up (aborted under exactly-once), every
        task closed without committing, and the thread joins the group again; the tasks'
        new owners (maybe this thread again) restore them from their changelogs."""
        log.warning("thread %d: %s: closing its tasks without committing and joining the "
                    "group again", self.index, exc)
        self.collector.abort(COMMIT_TIMEOUT_S)
        for running in list(self.tasks.values()):
            self._close_task(running, clean=False)
        self.collector.begin()
        self._rejoin = True

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("thread %d lost its partitions (it left the group): closing its tasks "
                    "without committing", self.index)
        self.collector.abort(COMMIT_TIMEOUT_S)
        for running in list(self.tasks.values()):
            self._close_task(running, clean=False)
        consumer.incremental_unassign(partitions)
        self.collector.begin()
        self._changed()

    # -- tasks ---------------------------------------------------------------------------

    def _committed(self, inputs: list[tuple[str, int]], needed: bool
                   ) -> dict[tuple[str, int], TopicPartition]:
        """The group's committed offsets (with their metadata) of the new tasks' inputs.
        If they cannot be read: an error when `needed` (side inputs start there), else a
        warning (the tasks start without their processor metadata)."""
        if not inputs:
            return {}
        try:
            found = self.group.committed([TopicPartition(t, p) for t, p in inputs],
                                         timeout=COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            if needed:
                raise
            log.warning("thread %d: cannot read the committed offsets of %d input partitions "
                        "(%s): their tasks start without their processor metadata (windows "
                        "emitted on close before may be emitted again)", self.index,
                        len(inputs), exc)
            return {}
        return {(tp.topic, tp.partition): tp for tp in found}

    def _create_task(self, sub: SubTopology, partition: int,
                     committed: Mapping[tuple[str, int], TopicPartition]) -> None:
        task_id = f"{sub.id}_{partition}"
        inputs = [(self._physical(t), partition) for t in sub.source_topics]
        # The processor metadata committed with the task's offsets (each input partition's;
        # the largest value of each key), for its processors' init.
        metadata = processor_metadata.merge(
            committed[tp].metadata if tp in committed else None
            for tp in inputs)
        handover = self.standbys.take(task_id) if self.standbys is not None else None
        if handover is not None:
            directory = handover.directory  # locked by the standby
        else:
            directory = self.state.task(task_id)
            directory.lock()
        checkpoint = handover.positions if handover is not None else \
            directory.read_checkpoint()
        if self.config.exactly_once:
            # Under exactly-once a checkpoint is written only at a clean close, after the last
            # commit (the stores hold exactly what was committed), and removed while the task
            # runs: after a crash there is none, the stores may hold writes not committed, and
            # they are restored from scratch (a standby's stores hold only committed writes).
            directory.remove_checkpoint()
            if handover is None and not checkpoint:
                directory.wipe_stores()
        task = Task(task_id, self.topology, sub, partition, application_id=self.app,
                    collector=self.collector, clock=lambda: int(time.time() * 1000),
                    default_key_serde=self.config.default_key_serde,
                    default_value_serde=self.config.default_value_serde,
                    state_directory=str(directory.path),
                    deserialization_handler=self.config.deserialization_handler,
                    default_engine=self.config.default_engine,
                    errors=self.config.error_handling,
                    global_stores=self.global_stores,
                    stores=handover.stores if handover is not None else None,
                    processor_metadata=metadata,
                    record_cache=self.record_cache)
        running = _Running(task, inputs[0], inputs, directory,
                           queues={t: deque() for t, _ in inputs},
                           next_offsets={tp: committed[tp].offset for tp in inputs
                                         if tp in committed and committed[tp].offset >= 0})
        for store in task.stores.values():
            if not getattr(store, "logging", False):
                continue
            changelog = task.changelog_topic(store.name)
            running.restoring[(changelog, partition)] = RestoreProgress(
                task_id, store.name, changelog, partition)
            kept = store.persistent or (handover is not None and store.name in handover.stores)
            start = checkpoint.get((changelog, partition), OFFSET_BEGINNING) \
                if kept else OFFSET_BEGINNING
            self.restore.incremental_assign([TopicPartition(changelog, partition, start)])
        self.tasks[task_id] = running
        for tp in inputs:
            self._by_input[tp] = running
        others = inputs[1:]
        if others:
            self.side.incremental_assign([
                TopicPartition(t, p, committed[(t, p)].offset
                               if committed[(t, p)].offset >= 0 else OFFSET_BEGINNING)
                for t, p in others])
            self._side_assigned.update(others)
            if running.restoring:
                self.side.pause([TopicPartition(t, p) for t, p in others])
        log.info("thread %d: task %s created (%d stores to restore%s)", self.index, task_id,
                 len(running.restoring), ", from its standby" if handover is not None else "")

    def _close_task(self, running: _Running, clean: bool) -> None:
        task = running.task
        for tp in running.inputs:
            self._by_input.pop(tp, None)
        others = [TopicPartition(t, p) for t, p in running.inputs[1:]
                  if (t, p) in self._side_assigned]
        if others:
            self.side.incremental_unassign(others)
            self._side_assigned.difference_update((tp.topic, tp.partition) for tp in others)
        if running.restoring:
            self.restore.incremental_unassign([TopicPartition(t, p)
                                               for t, p in running.restoring])
        if clean and any(s.persistent for s in task.stores.values()):
            changelogs = {task.changelog_topic(n) for n in task.stores}
            positions = dict(running.positions)  # where restoration ended
            for tp, offset in self.collector.written.items():  # and what was written since
                if tp[1] == task.partition and tp[0] in changelogs:
                    positions[tp] = max(offset, positions.get(tp, 0))
            task.flush()  # the stores hold on disk what the checkpoint says
            running.directory.write_checkpoint(positions)
        task.close()
        running.directory.unlock()
        del self.tasks[task.id]
        if self.standbys is not None:
            self.standbys.released(task.id)
        log.info("thread %d: task %s closed%s", self.index, task.id,
                 "" if clean else " (not committed)")

    # -- the loop ------------------------------------------------------------------------

    def run_once(self) -> int:
        """One poll, restore or process, punctuate and maybe commit; records processed."""
        if self._rejoin:
            self._rejoin = False
            self.group.unsubscribe()
            self.group.subscribe(sorted(self.anchors), on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._lost)
        self._poll()
        self.metrics.poll_total += 1
        if any(r.restoring for r in self.tasks.values()):
            started = time.monotonic()
            self._restore_some()
            self.metrics.restore_time_total_s += time.monotonic() - started
        processed = 0
        now = int(time.time() * 1000)
        for running in list(self.tasks.values()):
            if not running.restoring:
                processed += self._process(running)
                running.task.punctuate_wall_clock(now)
        if processed:
            self.metrics.processed(processed)
        if (time.monotonic() - self.last_commit) * 1000 >= self.config.commit_interval_ms or \
                any(r.task.commit_requested for r in self.tasks.values()):
            try:
                self.commit()
            except TaskMigrated as exc:
                self._migrated(exc)
        return processed

    def _poll(self) -> None:
        """Fetched records into their tasks' queues (the group consumer's poll also runs the
        rebalance callbacks)."""
        # What is there now, without waiting; with nothing there, waiting (up to poll.ms) for
        # the first record only, so that one record is not held back to fill a batch.
        messages = self.group.consume(BATCH, 0)
        if self._side_assigned:
            messages += self.side.consume(BATCH, 0)
        if not messages:
            messages = self.group.consume(1, self.config.poll_ms / 1000)
            if messages:
                messages += self.group.consume(BATCH - 1, 0)
        for message in messages:
            error = message.error()
            topic, partition = message.topic(), message.partition()
            running = None if topic is None or partition is None else self._by_input.get(
                (topic, partition))
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and running is not None:
                    running.caught_up.add((str(topic), int(partition or 0)))
                else:
                    self._consume_error(error)
                continue
            if running is not None:
                running.caught_up.discard((str(topic), int(partition or 0)))
                running.queues[str(topic)].append(message)

    def _waiting(self, running: _Running) -> bool:
        """Whether a task reading several partitions is to wait before processing: one of
        them has no record buffered and has not caught up with its end (its records would
        come later than records of the others that they precede, e.g. a table's rows before
        the stream records joined with them: Kafka's KIP-695), for at most the idle limit."""
        limit_ms = self.config.max_task_idle_ms
        if len(running.inputs) < 2 or limit_ms < 0:
            return False
        behind = any(not running.queues[t] and (t, p) not in running.caught_up
                     for t, p in running.inputs)
        if not behind:
            running.waiting_since = None
            return False
        now = time.monotonic()
        if running.waiting_since is None:
            running.waiting_since = now
        waited_ms = (now - running.waiting_since) * 1000
        return waited_ms < (limit_ms if limit_ms > 0 else IDLE_WAIT_CAP_MS)

    def _consume_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise StreamsError(f"the consumer failed: {error.str()}")
        log.warning("thread %d: consumer: %s", self.index, error.str())

    def _process(self, running: _Running) -> int:
        if self._waiting(running):
            return 0
        queues = [q for q in running.queues.values() if q]
        count = 0
        task = running.task
        while queues:
            queue = queues[0] if len(queues) == 1 else min(
                queues, key=lambda q: q[0].timestamp()[1])
            message = queue.popleft()
            topic, partition, offset = _where(message)
            task.process(topic, offset, message.key(), message.value(),
                         message.timestamp()[1], headers_of(message))
            running.consumed[(topic, partition)] = running.next_offsets[(topic, partition)] \
                = offset + 1
            count += 1
            if not queue:
                if self._waiting(running):
                    break
                queues = [q for q in queues if q]
        return count

    def _restore_some(self) -> None:
        for message in self.restore.consume(RESTORE_BATCH, 0.05):
            topic, partition = message.topic(), message.partition()
            if topic is None or partition is None:
                continue
            key = (topic, partition)
            error = message.error()
            running = next((r for r in self.tasks.values() if key in r.restoring), None)
            if running is None:
                continue
            progress = running.restoring[key]
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._reached_end(running, key, message.offset())
                else:
                    self._consume_error(error)
                continue
            record_key = message.key()
            if record_key is None:
                continue  # a changelog record always has a key
            running.task.stores[progress.store].restore(record_key, message.value(),
                                                        message.timestamp()[1])
            progress.restored += 1
        for running in self.tasks.values():
            for key, progress in list(running.restoring.items()):
                if progress.done:
                    self._restored(running, key)

    def _reached_end(self, running: _Running, key: tuple[str, int], end: int | None) -> None:
        running.restoring[key].done = True
        if end is not None and end >= 0:
            running.positions[key] = end
        self._restored(running, key)

    def _restored(self, running: _Running, key: tuple[str, int]) -> None:
        progress = running.restoring.pop(key, None)
        if progress is None:
            return
        self.restore.incremental_unassign([TopicPartition(*key)])
        if self.restore_listener is not None:
            self.restore_listener(progress)
        self.metrics.restore_total += progress.restored
        log.info("task %s: store %s restored (%d records)", progress.task_id, progress.store,
                 progress.restored)
        if not running.restoring:
            self.group.resume([TopicPartition(*running.anchor)])
            others = [TopicPartition(t, p) for t, p in running.inputs[1:]]
            if others:
                self.side.resume(others)

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """Per task: records processed and dropped, and the input lag (records between the
        position and the end of each input partition, from the last fetch)."""
        out: dict[str, dict[str, Any]] = {}
        for task_id, running in list(self.tasks.items()):
            lag = {}
            for topic, partition in running.inputs:
                consumer = self.group if (topic, partition) == running.anchor else self.side
                tp = TopicPartition(topic, partition)
                try:
                    _low, high = consumer.get_watermark_offsets(tp, cached=True)
                    position = consumer.position([tp])[0].offset
                except KafkaException:
                    continue
                if high >= 0 and position >= 0:
                    lag[f"{topic}-{partition}"] = max(high - position, 0)
            out[task_id] = {"process-total": running.task.processed,
                            "dropped-records-total": running.task.dropped,
                            "restoring": bool(running.restoring), "records-lag": lag}
        return out

    # -- commits -------------------------------------------------------------------------

    def _offsets(self) -> list[TopicPartition]:
        """The offsets to commit: each task's inputs consumed since the last commit, all
        its inputs (that have an offset) if its processor metadata changed, each with the
        task's processor metadata (strom.streams.processor_metadata)."""
        offsets = []
        for running in self.tasks.values():
            task = running.task
            consumed = dict(running.next_offsets) if task.metadata_changed else \
                running.consumed
            if not consumed:
                continue
            text = processor_metadata.encode(task.processor_metadata)
            offsets += [TopicPartition(t, p, o, metadata=text) if text else
                        TopicPartition(t, p, o) for (t, p), o in consumed.items()]
        return offsets

    def commit(self) -> None:
        """Everything processed so far: outputs written, then input offsets committed (in
        one transaction under exactly-once). TaskMigrated when the group has moved on."""
        started = time.monotonic()
        for running in self.tasks.values():  # what the caches hold, written and forwarded
            running.task.flush_cache()
        offsets = self._offsets()
        # The stores are not flushed to disk here: their changelogs are what a crash restores
        # from, and a checkpoint (written at a clean close, after a flush) is what may skip
        # that (Kafka Streams flushes at every commit; RocksDB's flushes cost seconds here).
        for running in self.tasks.values():
            running.task.commit_requested = False
        if self.config.exactly_once:
            self._commit_transaction(offsets)
        else:
            self.collector.flush(COMMIT_TIMEOUT_S)
            if offsets:
                self._commit_offsets(offsets)
        for running in self.tasks.values():
            running.consumed.clear()
            running.task.metadata_changed = False
        self.last_commit = time.monotonic()
        self.metrics.committed(self.last_commit - started)

    def _commit_transaction(self, offsets: list[TopicPartition]) -> None:
        producer = self.collector.producer
        try:
            producer.flush(COMMIT_TIMEOUT_S)  # the delivery reports, before committing
            if offsets:
                producer.send_offsets_to_transaction(
                    offsets, self.group.consumer_group_metadata(), COMMIT_TIMEOUT_S)
            producer.commit_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            failed = self.collector.failed_write()
            if failed is not None and not failed.fatal() and failed.code() not in FENCED:
                # A record the broker refused: processing it again would fail again.
                raise ProductionError(
                    f"a record could not be written: {failed.str()} (under exactly-once the "
                    "transaction fails with it, whatever the production handler says)") from exc
            if error.txn_requires_abort() or error.code() in MIGRATED:
                raise TaskMigrated(f"the transaction could not be committed: {error.str()}"
                                   ) from exc
            raise StreamsError(f"the transaction could not be committed: {exc}") from exc
        self.collector.begin()

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        try:
            self.group.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in MIGRATED:
                raise TaskMigrated(f"the offsets could not be committed: {error.str()}"
                                   ) from exc
            if error.code() != KafkaError._NO_OFFSET:
                raise StreamsError(f"the offsets could not be committed: {exc}") from exc

    def close(self) -> None:
        """Commits and closes every task, leaves the group, closes the clients."""
        committed = False
        try:
            if self.failure is None:
                self.commit()
                committed = True
        finally:
            # A task is closed clean (its stores flushed and checkpointed) only when what it
            # did is committed: a checkpoint past writes not committed would keep them.
            for running in list(self.tasks.values()):
                self._close_task(running, clean=committed)
            self.group.close()
            self.side.close()
            self.restore.close()
            if self.config.exactly_once and not committed:
                self.collector.abort(COMMIT_TIMEOUT_S)
            self.collector.close(COMMIT_TIMEOUT_S)


def _where(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record (never None for a record)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def headers_of(message: Message) -> Headers:
    headers = message.headers()
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((k, v if isinstance(v, bytes | None) else str(v).encode()) for k, v in items)
