"""Standby tasks (`num.standby.replicas`): warm copies of the stores of tasks that other
instances run, kept by reading the stores' changelogs (no processing, nothing written), so
that a task moving here restores only the changelog's tail.

Which standbys an instance keeps is decided elsewhere (strom.streams.membership, from the
group's assignment); `update(wanted)` makes this instance's set so. A standby lives in the
task's own directory (`<state.dir>/<application.id>/<task id>/`, locked while it is here),
restored from the task's checkpoint when its stores are persistent, and writes that
checkpoint as it goes (every commit interval) and when it is dropped, so a standby of a
restarted instance goes on from where it was. Records are read with read_committed under
exactly-once: a standby's stores hold only committed writes, and its checkpoints are safe.

When a stream thread is given a task that has a standby here, it `take`s it: the standby's
open stores, its directory (still locked) and the changelog offsets it holds up to become
the active task's, which restores from those offsets. A task run here is never a standby
here (`take` records it as active until `released`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from strom.streams.config import StreamsConfig
from strom.streams.state_dir import StateDirectory, StateDirectoryLocked, TaskDirectory
from strom.streams.stores.api import StateStore
from strom.streams.task import StreamsError
from strom.streams.thread import Handover, RestoreListener, RestoreProgress
from strom.streams.topology import SubTopology, Topology

log = logging.getLogger(__name__)

BATCH: Final = 5000
CHECKPOINT_INTERVAL_MS: Final = 5000  # at least (or the commit interval when longer)


@dataclass
class _Standby:
    task_id: str
    partition: int
    directory: TaskDirectory
    stores: dict[str, StateStore]
    by_changelog: dict[str, StateStore]
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    catching_up: dict[tuple[str, int], RestoreProgress] = field(default_factory=dict)


class _StandbyContext:
    """A standby store's StoreContext: it is restored only, it never logs."""

    def __init__(self, task_id: str, partition: int, application_id: str) -> None:
        self.task_id = task_id
        self.partition = partition
        self.application_id = application_id

    def changelog_topic(self, store_name: str) -> str:
        return f"{self.application_id}-{store_name}-changelog"

    def log_change(self, topic: str, key: bytes, value: bytes | None, timestamp: int) -> None:
        raise StreamsError(f"standby task {self.task_id} wrote to {topic}: standby stores "
                           "are only restored")


def stateful_sub_topologies(topology: Topology) -> dict[int, SubTopology]:
    """Sub-topologies with a store that logs (their tasks can have standbys)."""
    return {sub.id: sub for sub in topology.sub_topologies()
            if any(getattr(topology.stores[s], "logging", False) for s in sub.stores)}


class StandbyTasks:
    def __init__(self, topology: Topology, config: StreamsConfig, process_id: str,
                 state: StateDirectory, restore_listener: RestoreListener | None = None
                 ) -> None:
        self.topology = topology
        self.config = config
        self.state = state
        self.restore_listener = restore_listener
        self.subs = stateful_sub_topologies(topology)
        self.consumer = Consumer(config.reader_settings("standby", process_id))
        self._lock = threading.Lock()
        self._tasks: dict[str, _Standby] = {}
        self._by_changelog: dict[tuple[str, int], _Standby] = {}
        self._active: set[str] = set()
        self._unassign: list[TopicPartition] = []
        self._last_checkpoint = time.monotonic()

    @property
    def task_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._tasks)

    def stores(self, name: str) -> list[StateStore]:
        """The store `name` of every standby task kept here (for stale queries)."""
        with self._lock:
            return [s.stores[name] for s in self._tasks.values() if name in s.stores]

    def offsets(self) -> dict[str, dict[tuple[str, int], int]]:
        """Task id -> changelog (topic, partition) -> the next offset its standby reads."""
        with self._lock:
            return {t: dict(s.positions) for t, s in self._tasks.items()}

    # -- the stream threads' side ---------------------------------------------------------

    def take(self, task_id: str) -> Handover | None:
        """The task runs here from now on: its standby (if any) is handed over."""
        with self._lock:
            self._active.add(task_id)
            standby = self._tasks.pop(task_id, None)
            if standby is None:
                return None
            self._forget(standby)
            for store in standby.stores.values():
                store.flush()
        log.info("standby task %s promoted (its stores hold changelog offsets %s)", task_id,
                 standby.positions)
        return Handover(standby.directory, standby.stores, dict(standby.positions))

    def released(self, task_id: str) -> None:
        """The task no longer runs here (it may become a standby again)."""
        with self._lock:
            self._active.discard(task_id)

    # -- the keeper's side (one thread) ----------------------------------------------------

    def update(self, wanted: set[str]) -> None:
        """Keeps standbys of `wanted` (less the tasks run here), drops the others."""
        self._apply_unassign()  # first: a task taken and released may come back at once
        with self._lock:
            for task_id in [t for t in self._tasks if t not in wanted or t in self._active]:
                standby = self._tasks.pop(task_id)
                self._forget(standby)
                self._close(standby)
            for task_id in sorted(wanted - self._active - set(self._tasks)):
                opened = self._open(task_id)
                if opened is not None:
                    self._tasks[task_id] = opened
        self._apply_unassign()

    def _open(self, task_id: str) -> _Standby | None:
        sub_id, _, partition_text = task_id.partition("_")
        sub = self.subs.get(int(sub_id))
        if sub is None:
            return None
        partition = int(partition_text)
        directory = self.state.task(task_id)
        try:
            directory.lock()
        except StateDirectoryLocked:
            log.warning("standby task %s: its directory is in use; not kept", task_id)
            return None
        checkpoint = directory.read_checkpoint()
        if self.config.exactly_once and not checkpoint:
            directory.wipe_stores()  # may hold writes of an active task that crashed
        context = _StandbyContext(task_id, partition, self.config.application_id)
        stores: dict[str, StateStore] = {}
        for name in sub.stores:
            builder = self.topology.stores[name]
            if getattr(builder, "logging", False):
                store = builder.build(str(directory.path), self.config.default_key_serde,
                                      self.config.default_value_serde,
                                      self.config.default_engine)
                store.init(context)
                stores[name] = store
        standby = _Standby(task_id, partition, directory, stores,
                           {context.changelog_topic(n): s for n, s in stores.items()})
        assignment = []
        for changelog, store in standby.by_changelog.items():
            key = (changelog, partition)
            start = checkpoint.get(key, OFFSET_BEGINNING) if store.persistent \
                else OFFSET_BEGINNING
            if start >= 0:
                standby.positions[key] = start
            standby.catching_up[key] = RestoreProgress(task_id, store.name, changelog,
                                                       partition, standby=True)
            self._by_changelog[key] = standby
            assignment.append(TopicPartition(changelog, partition, start))
        self.consumer.incremental_assign(assignment)
        log.info("standby task %s created (%d stores)", task_id, len(stores))
        return standby

    def _forget(self, standby: _Standby) -> None:
        """Its changelogs are no longer read (unassigned by the keeper's thread)."""
        for key in standby.catching_up.keys() | standby.positions.keys() | {
                (c, standby.partition) for c in standby.by_changelog}:
            if self._by_changelog.get(key) is standby:
                del self._by_changelog[key]
                self._unassign.append(TopicPartition(*key))

    def _apply_unassign(self) -> None:
        with self._lock:
            pending, self._unassign = self._unassign, []
        if pending:
            self.consumer.incremental_unassign(pending)

    def _close(self, standby: _Standby) -> None:
        self._checkpoint(standby)
        for store in standby.stores.values():
            store.close()
        standby.directory.unlock()
        log.info("standby task %s closed", standby.task_id)

    def _checkpoint(self, standby: _Standby) -> None:
        for store in standby.stores.values():
            store.flush()
        if any(s.persistent for s in standby.stores.values()) and standby.positions:
            standby.directory.write_checkpoint(standby.positions)

    def poll(self, timeout_s: float) -> int:
        """Applies the changelog records that arrived; the records applied."""
        self._apply_unassign()
        messages = self.consumer.consume(BATCH, timeout_s)
        done: list[RestoreProgress] = []
        with self._lock:
            applied = sum(self._apply(message, done) for message in messages)
            if (time.monotonic() - self._last_checkpoint) * 1000 >= max(
                    self.config.commit_interval_ms, CHECKPOINT_INTERVAL_MS):
                for standby in self._tasks.values():
                    self._checkpoint(standby)
                self._last_checkpoint = time.monotonic()
        for progress in done:
            log.info("standby task %s: store %s caught up (%d records)", progress.task_id,
                     progress.store, progress.restored)
            if self.restore_listener is not None:
                self.restore_listener(progress)
        return applied

    def _apply(self, message: Message, done: list[RestoreProgress]) -> int:
        """One changelog record (or end of partition) into its standby; 1 if applied."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return 0
        key = (topic, partition)
        standby = self._by_changelog.get(key)
        if standby is None:
            return 0  # dropped or promoted meanwhile
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                standby.positions[key] = max(offset, standby.positions.get(key, 0))
                progress = standby.catching_up.pop(key, None)
                if progress is not None:
                    progress.done = True
                    done.append(progress)
            elif error.fatal():
                raise StreamsError(f"the standby consumer failed: {error.str()}")
            return 0
        record_key = message.key()
        if record_key is not None:
            standby.by_changelog[topic].restore(record_key, message.value(),
                                                message.timestamp()[1])
        standby.positions[key] = offset + 1
        progress = standby.catching_up.get(key)
        if progress is not None:
            progress.restored += 1
        return 1

    def close(self) -> None:
        with self._lock:
            for standby in self._tasks.values():
                self._close(standby)
            self._tasks.clear()
            self._by_changelog.clear()
            self._unassign.clear()
        self.consumer.close()
