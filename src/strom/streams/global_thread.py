"""The global stream thread: the application instance's global stores (global tables), each
holding every partition of its topic, shared by all the instance's tasks.

One consumer, `assign`ed to every partition of each global store's topic (no group: every
instance reads everything), read_committed under exactly-once. The stores are first filled
from the topics' beginning, or, for persistent stores, from the offsets of the global
checkpoint (`<state.dir>/<application.id>/global/.checkpoint`), up to the end of every
partition; until then `ready` is not set and no stream thread processes (Kafka Streams'
global bootstrap). The thread then keeps applying the records that arrive, flushing the
stores and writing the checkpoint every commit interval (5 s at least) and when it closes.

Records go through the global store's source and processor (deserialized, timestamped, then
the processor updates the store), during the bootstrap too, as Kafka's `reprocessOnRestore`
does: a custom global processor sees every record. The global topic is the store's changelog,
so nothing is written to the cluster; checkpoints are safe under exactly-once as well (only
committed records are read). Stream threads read the stores while this thread writes them:
single-key reads and range copies of the engines are safe from another thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from strom.streams.config import StreamsConfig
from strom.streams.record import Headers
from strom.streams.state_dir import StateDirectory, TaskDirectory
from strom.streams.stores.api import StateStore
from strom.streams.task import StreamsError, Task
from strom.streams.thread import RestoreListener, RestoreProgress, headers_of
from strom.streams.topology import Topology

log = logging.getLogger(__name__)

GLOBAL_TASK: Final = "global"
METADATA_TIMEOUT_S: Final = 30.0
BATCH: Final = 5000
CHECKPOINT_INTERVAL_MS: Final = 5000  # at least (or the commit interval when longer)


class _NoWrites:
    """The global task's collector: a global store's processor writes to no topic."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers, partition: int | None) -> None:
        raise StreamsError(f"a global store's processor wrote to {topic}: global processors "
                           "only update their store")


class GlobalStreamThread:
    def __init__(self, topology: Topology, config: StreamsConfig, process_id: str,
                 state: StateDirectory, restore_listener: RestoreListener | None = None
                 ) -> None:
        sub = topology.global_sub_topology()
        if sub is None:
            raise ValueError("the topology has no global stores")
        self.topology = topology
        self.config = config
        self.restore_listener = restore_listener
        self.directory: TaskDirectory = state.task(GLOBAL_TASK)
        self.directory.lock()
        self.task = Task(GLOBAL_TASK, topology, sub, -1,
                         application_id=config.application_id, collector=_NoWrites(),
                         clock=lambda: int(time.time() * 1000),
                         default_key_serde=config.default_key_serde,
                         default_value_serde=config.default_value_serde,
                         state_directory=str(self.directory.path),
                         deserialization_handler=config.deserialization_handler,
                         default_engine=config.default_engine)
        # topic -> the stores it feeds
        self.stores_of: dict[str, list[StateStore]] = {}
        for name, spec in topology.global_stores.items():
            self.stores_of.setdefault(spec.topic, []).append(self.task.stores[name])
        self.consumer = Consumer(config.reader_settings("global", process_id))
        self.ready = threading.Event()
        self.positions: dict[tuple[str, int], int] = {}  # next offset of each partition
        self._bootstrapping: dict[tuple[str, int], RestoreProgress] = {}
        self._last_checkpoint = time.monotonic()

    @property
    def stores(self) -> dict[str, StateStore]:
        return self.task.stores

    def start(self) -> None:
        """Assigns every partition of the global topics, from the checkpoint's offsets for
        topics whose stores are all persistent, else from the beginning."""
        checkpoint = self.directory.read_checkpoint()
        assignment = []
        for topic, stores in sorted(self.stores_of.items()):
            metadata = self.consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise StreamsError(f"the global table topic {topic} does not exist")
            persistent = all(store.persistent for store in stores)
            for partition in sorted(found.partitions):
                start = checkpoint.get((topic, partition), OFFSET_BEGINNING) \
                    if persistent else OFFSET_BEGINNING
                assignment.append(TopicPartition(topic, partition, start))
                self._bootstrapping[(topic, partition)] = RestoreProgress(
                    GLOBAL_TASK, ",".join(s.name for s in stores), topic, partition)
        self.consumer.assign(assignment)
        log.info("global thread: restoring %d global stores from %d partitions",
                 len(self.task.stores), len(assignment))

    def run_once(self, timeout_s: float = 0.1) -> int:
        """Applies what arrived; sets `ready` once every partition was read to its end.
        Returns the records applied."""
        applied = 0
        for message in self.consumer.consume(BATCH, timeout_s):
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._reached_end((topic, partition), offset)
                elif error.fatal():
                    raise StreamsError(f"the global consumer failed: {error.str()}")
                else:
                    log.warning("global thread: consumer: %s", error.str())
                continue
            self.task.process(topic, offset, message.key(), message.value(),
                              message.timestamp()[1], headers_of(message), partition)
            self.positions[(topic, partition)] = offset + 1
            progress = self._bootstrapping.get((topic, partition))
            if progress is not None:
                progress.restored += 1
            applied += 1
        if (time.monotonic() - self._last_checkpoint) * 1000 >= max(
                self.config.commit_interval_ms, CHECKPOINT_INTERVAL_MS):
            self.checkpoint()
        return applied

    def _reached_end(self, key: tuple[str, int], end: int) -> None:
        if end >= 0:
            self.positions[key] = max(end, self.positions.get(key, 0))
        progress = self._bootstrapping.pop(key, None)
        if progress is None:
            return
        progress.done = True
        if self.restore_listener is not None:
            self.restore_listener(progress)
        if not self._bootstrapping and not self.ready.is_set():
            self.checkpoint()
            log.info("global thread: global stores restored")
            self.ready.set()

    def checkpoint(self) -> None:
        """Flushes the stores; records the offsets the persistent ones hold up to."""
        self.task.flush()
        if any(store.persistent for store in self.task.stores.values()) and self.positions:
            self.directory.write_checkpoint(self.positions)
        self._last_checkpoint = time.monotonic()

    def close(self, clean: bool = True) -> None:
        try:
            if clean:
                self.checkpoint()
        finally:
            self.consumer.close()
            self.task.close()
            self.directory.unlock()
