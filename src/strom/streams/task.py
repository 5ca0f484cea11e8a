"""A task: one sub-topology's processors and stores for one partition of its source topics.

Records are pushed through depth first, as Kafka Streams does: a source deserializes and
timestamps the record, each processor's `context.forward` calls its children at once, a sink
serializes and hands the bytes to the record collector (the producer, or the test driver).
The task's stream time is the largest timestamp it has seen; stream-time punctuators fire as
it moves on, wall-clock ones when `punctuate_wall_clock(now)` is called.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from strom.streams.errors import ErrorHandling, dead_letter_headers
from strom.streams.processor import (
    Cancellable,
    Processor,
    PunctuationType,
    Punctuator,
)
from strom.streams.record import Headers, Record, RecordMetadata
from strom.streams.serdes import Serde, SerializationError
from strom.streams.stores.api import EngineFactory, StateStore
from strom.streams.stores.caching import CachingStore, ThreadCache
from strom.streams.topology import ProcessorNode, SinkNode, SourceNode, SubTopology, Topology

log = logging.getLogger(__name__)


class StreamsError(RuntimeError):
    """Processing cannot go on (a record that cannot be read with LogAndFail, a bad
    timestamp, a processor's exception); the message says which record."""


class RecordCollector(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers, partition: int | None) -> None: ...


# (error, topic, partition, offset) -> True to skip the record, False to fail
DeserializationHandler = Callable[[Exception, str, int, int], bool]


def log_and_fail(error: Exception, topic: str, partition: int, offset: int) -> bool:
    return False


def log_and_continue(error: Exception, topic: str, partition: int, offset: int) -> bool:
    log.warning("skipping the record at %s-%d@%d that cannot be read: %s", topic, partition,
                offset, error)
    return True


class _Schedule:
    __slots__ = ("cancelled", "interval", "punctuator")

    def __init__(self, interval: int, punctuator: Punctuator) -> None:
        self.interval = interval
        self.punctuator = punctuator
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Punctuations:
    """Schedules by next time; fires each due one once, then the next after the given time
    (missed ones are skipped, as Kafka's PunctuationSchedule does)."""

    def __init__(self) -> None:
        self._queue: list[tuple[int, int, _Schedule]] = []
        self._order = itertools.count()

    def add(self, first: int, schedule: _Schedule) -> None:
        heapq.heappush(self._queue, (first, next(self._order), schedule))

    def fire(self, now: int, run: Callable[[_Schedule, int], None]) -> bool:
        fired = False
        while self._queue and self._queue[0][0] <= now:
            due, _, schedule = heapq.heappop(self._queue)
            if schedule.cancelled:
                continue
            run(schedule, now)
            fired = True
            following = due + schedule.interval
            if following <= now:  # missed some: the next one after now
                following = now - (now - due) % schedule.interval + schedule.interval
            heapq.heappush(self._queue, (following, next(self._order), schedule))
        return fired


class Task:
    def __init__(self, task_id: str, topology: Topology, sub: SubTopology, partition: int, *,
                 application_id: str, collector: RecordCollector, clock: Callable[[], int],
                 default_key_serde: Serde[Any], default_value_serde: Serde[Any],
                 state_directory: str = "",
                 deserialization_handler: DeserializationHandler = log_and_fail,
                 default_engine: EngineFactory | None = None,
                 global_stores: Mapping[str, StateStore] | None = None,
                 errors: ErrorHandling | None = None,
                 stores: Mapping[str, StateStore] | None = None,
                 processor_metadata: Mapping[str, int] | None = None,
                 record_cache: ThreadCache | None = None) -> None:
        self.id = task_id
        self.record_cache = record_cache  # the thread's, for the caching stores (init)
        self.topology = topology
        self.sub = sub
        self.partition = partition
        self.application_id = application_id
        self.collector = collector
        self.clock = clock
        self.default_key_serde = default_key_serde
        self.default_value_serde = default_value_serde
        self.deserialization_handler = deserialization_handler
        self.errors = errors or ErrorHandling()
        self.stream_time = -1
        self.record_metadata: RecordMetadata | None = None
        # The source record being processed as read: key, value, timestamp, headers.
        self._source: tuple[bytes | None, bytes | None, int, Headers] | None = None
        self.commit_requested = False
        # Processor metadata (strom.streams.processor_metadata): as committed before (given
        # here, so that the processors' init sees it), and whether it changed since the last
        # commit (a commit then includes every input partition, consumed or not).
        self.processor_metadata: dict[str, int] = dict(processor_metadata or {})
        self.metadata_changed = False
        self.processed = 0
        self.dropped = 0
        # Stores given (a standby task's, promoted) are taken as they are; the others built.
        given = stores or {}
        self.stores: dict[str, StateStore] = {
            name: given[name] if name in given else topology.stores[name].build(
                state_directory, default_key_serde, default_value_serde, default_engine)
            for name in sub.stores}
        # The instance's global stores, shared by its tasks (any processor may read them).
        self.global_stores: Mapping[str, StateStore] = global_stores or {}
        for store in self.stores.values():
            store.init(self)
        self._stream_punctuations = _Punctuations()
        self._wall_punctuations = _Punctuations()
        self._runtimes: dict[str, _Runtime] = {}
        for name in sub.nodes:
            self._runtime(name)
        self._sources = {topology.physical(application_id, topic): self._runtimes[node.name]
                         for name in sub.nodes
                         if isinstance(node := topology.nodes[name], SourceNode)
                         for topic in node.topics}
        for runtime in self._runtimes.values():
            if isinstance(runtime, _ProcessorRuntime):
                runtime.processor.init(runtime.context)

    # -- StoreContext --------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self.id

    def changelog_topic(self, store_name: str) -> str:
        return f"{self.application_id}-{store_name}-changelog"

    def log_change(self, topic: str, key: bytes, value: bytes | None, timestamp: int) -> None:
        self.collector.send(topic, key, value, timestamp if timestamp >= 0 else max(
            self.stream_time, 0), (), self.partition)

    # -- building ------------------------------------------------------------------------

    def _runtime(self, name: str) -> _Runtime:
        runtime = self._runtimes.get(name)
        if runtime is not None:
            return runtime
        node = self.topology.nodes[name]
        if isinstance(node, SinkNode):
            runtime = _SinkRuntime(self, node)
        else:
            children = [self._runtime(child) for child in node.children]
            if isinstance(node, SourceNode):
                runtime = _SourceRuntime(self, node, children)
            else:
                runtime = _ProcessorRuntime(self, node, children)
        self._runtimes[name] = runtime
        return runtime

    # -- processing ----------------------------------------------------------------------

    def process(self, topic: str, offset: int, key: bytes | None, value: bytes | None,
                timestamp: int, headers: Headers = (), partition: int | None = None) -> None:
        """One record of `topic` (of the task's partition, or of `partition`: the global
        task reads every partition)."""
        source = self._sources.get(topic)
        if source is None:
            raise StreamsError(f"task {self.id} does not read topic {topic}")
        self.record_metadata = RecordMetadata(
            topic, self.partition if partition is None else partition, offset)
        self._source = (key, value, timestamp, headers)
        try:
            assert isinstance(source, _SourceRuntime)
            source.receive(key, value, timestamp, headers)
        except StreamsError:
            raise
        except Exception as exc:
            self._processing_failed(exc)
        finally:
            self.record_metadata = None
            self._source = None
        self.processed += 1
        self._stream_punctuations.fire(self.stream_time, self._punctuate)

    # -- failures (strom.streams.errors) -----------------------------------------------------

    def _processing_failed(self, error: Exception) -> None:
        meta = self.record_metadata
        assert meta is not None
        self.dead_letter(error)
        if self.errors.processing(error, meta.topic, meta.partition, meta.offset):
            self.dropped += 1
            return
        raise StreamsError(f"task {self.id}: processing the record at {meta.topic}-"
                           f"{meta.partition}@{meta.offset} failed: {error!r} (processing."
                           "exception.handler=LogAndContinue skips such records)") from error

    def production_failed(self, error: Exception, topic: str, key: Any, value: Any) -> None:
        """A sink record that could not be serialized or handed to the producer: skipped if
        the production handler says so, else StreamsError."""
        self.dead_letter(error)
        if self.errors.production(error, topic, key, value):
            self.dropped += 1
            return
        where = f" (from {self.record_metadata.topic}-{self.record_metadata.partition}@" \
            f"{self.record_metadata.offset})" if self.record_metadata else ""
        raise StreamsError(f"task {self.id}: cannot write a record to {topic}{where}: "
                           f"{error!r} (default.production.exception.handler=LogAndContinue "
                           "skips such records)") from error

    def dead_letter(self, error: Exception) -> None:
        """Writes the source record being processed to the dead-letter queue, if there is
        one, with headers naming the error and where the record was read."""
        topic, meta, source = self.errors.dead_letter_queue, self.record_metadata, self._source
        if topic is None or meta is None or source is None:
            return
        key, value, timestamp, headers = source
        self.collector.send(topic, key, value, timestamp, (*headers, *dead_letter_headers(
            error, meta.topic, meta.partition, meta.offset)), None)

    def advance_stream_time(self, timestamp: int) -> None:
        if timestamp > self.stream_time:
            self.stream_time = timestamp

    def punctuate_wall_clock(self, now_ms: int) -> bool:
        return self._wall_punctuations.fire(now_ms, self._punctuate)

    def _punctuate(self, schedule: _Schedule, now: int) -> None:
        try:
            schedule.punctuator(now)
        except Exception as exc:
            raise StreamsError(f"task {self.id}: a punctuator failed: {exc!r}") from exc

    def schedule(self, interval_ms: int, kind: PunctuationType,
                 punctuator: Punctuator) -> Cancellable:
        if interval_ms < 1:
            raise ValueError("a punctuation interval is at least 1 ms")
        schedule = _Schedule(interval_ms, punctuator)
        if kind is PunctuationType.STREAM_TIME:
            self._stream_punctuations.add(0, schedule)  # the first record fires it
        else:
            self._wall_punctuations.add(self.clock() + interval_ms, schedule)
        return schedule

    def add_processor_metadata(self, key: str, value: int) -> None:
        if self.processor_metadata.get(key) != value:
            self.processor_metadata[key] = value
            self.metadata_changed = True

    def flush_cache(self) -> None:
        """Flushes the stores' record caches (before each commit): each dirty entry written
        to its store and changelog and forwarded (strom.streams.stores.caching). Until none
        is dirty: what one store's flush forwards may update a cached store downstream."""
        caching = [s for s in self.stores.values() if isinstance(s, CachingStore)]
        while dirty := [store for store in caching if store.dirty]:
            for store in dirty:
                try:
                    store.flush_cache()
                except StreamsError:
                    raise
                except Exception as exc:
                    raise StreamsError(f"task {self.id}: forwarding what the record cache of "
                                       f"{store.name} flushed failed: {exc!r}") from exc

    def flush(self) -> None:
        for store in self.stores.values():
            store.flush()
        self.commit_requested = False

    def close(self, stores: bool = True) -> None:
        """Closes the processors, and the stores unless `stores` is False (the test
        driver's restart keeps them for the task it creates again)."""
        for runtime in self._runtimes.values():
            if isinstance(runtime, _ProcessorRuntime):
                runtime.processor.close()
        if stores:
            for store in self.stores.values():
                store.close()


class _Runtime:
    def process(self, record: Record) -> None:
        raise NotImplementedError


class _NodeContext:
    """A processor's ProcessorContext: forward goes to this node's children."""

    def __init__(self, task: Task, node: ProcessorNode, children: Sequence[_Runtime]) -> None:
        self._task = task
        self._node = node
        self._children = list(children)
        self._by_name = dict(zip(node.children, self._children, strict=True))

    @property
    def application_id(self) -> str:
        return self._task.application_id

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def record_metadata(self) -> RecordMetadata | None:
        return self._task.record_metadata

    @property
    def stream_time(self) -> int:
        return self._task.stream_time

    @property
    def key_serde(self) -> Serde[Any]:
        return self._task.default_key_serde

    @property
    def value_serde(self) -> Serde[Any]:
        return self._task.default_value_serde

    def current_system_time_ms(self) -> int:
        return self._task.clock()

    def forward(self, record: Record, child: str | None = None) -> None:
        if child is not None:
            target = self._by_name.get(child)
            if target is None:
                raise StreamsError(f"{self._node.name} has no child {child!r}")
            target.process(record)
            return
        for runtime in self._children:
            runtime.process(record)

    def schedule(self, interval_ms: int, kind: PunctuationType,
                 punctuator: Punctuator) -> Cancellable:
        return self._task.schedule(interval_ms, kind, punctuator)

    def get_state_store(self, name: str) -> Any:
        if name not in self._node.stores:
            if name in self._task.global_stores:
                return self._task.global_stores[name]
            raise StreamsError(f"processor {self._node.name} is not connected to store "
                               f"{name!r} (connect it when adding the store)")
        return self._task.stores[name]

    def commit(self) -> None:
        self._task.commit_requested = True

    def add_processor_metadata(self, key: str, value: int) -> None:
        self._task.add_processor_metadata(key, value)

    def processor_metadata(self, key: str) -> int | None:
        return self._task.processor_metadata.get(key)


class _ProcessorRuntime(_Runtime):
    def __init__(self, task: Task, node: ProcessorNode, children: Sequence[_Runtime]) -> None:
        self.node = node
        self.processor: Processor = node.supplier()
        self.context = _NodeContext(task, node, children)
        self.process = self.processor.process  # type: ignore[method-assign]


class _SourceRuntime(_Runtime):
    def __init__(self, task: Task, node: SourceNode, children: Sequence[_Runtime]) -> None:
        self.task = task
        self.node = node
        self.children = list(children)
        self.key_serde = node.key_serde or task.default_key_serde
        self.value_serde = node.value_serde or task.default_value_serde
        self.extractor = node.timestamp_extractor

    def receive(self, key: bytes | None, value: bytes | None, timestamp: int,
                headers: Headers) -> None:
        task = self.task
        meta = task.record_metadata
        assert meta is not None
        try:
            record = Record(self.key_serde.deserialize(meta.topic, key),
                            self.value_serde.deserialize(meta.topic, value), timestamp, headers)
        except SerializationError as exc:
            task.dead_letter(exc)
            if task.deserialization_handler(exc, meta.topic, meta.partition, meta.offset):
                task.dropped += 1
                return
            raise StreamsError(f"cannot read the record at {meta.topic}-{meta.partition}@"
                               f"{meta.offset}: {exc} (default.deserialization.exception."
                               "handler=LogAndContinue skips such records)") from exc
        if self.extractor is not None:
            record.timestamp = self.extractor(record, task.stream_time)
        if record.timestamp < 0:
            raise StreamsError(f"the record at {meta.topic}-{meta.partition}@{meta.offset} "
                               f"has the invalid timestamp {record.timestamp} (give the "
                               "source a timestamp extractor)")
        task.advance_stream_time(record.timestamp)
        for child in self.children:
            child.process(record)


class _SinkRuntime(_Runtime):
    def __init__(self, task: Task, node: SinkNode) -> None:
        self.task = task
        self.node = node
        self.key_serde = node.key_serde or task.default_key_serde
        self.value_serde = node.value_serde or task.default_value_serde
        self.topic = (task.topology.physical(task.application_id, node.topic)
                      if isinstance(node.topic, str) else None)

    def process(self, record: Record) -> None:
        topic = self.topic if self.topic is not None else self.node.topic(record)  # type: ignore[operator]
        try:
            key = self.key_serde.serialize(topic, record.key)
            value = self.value_serde.serialize(topic, record.value)
            partition = None
            if self.node.partitioner is not None:
                partition = self.node.partitioner(topic, record.key, record.value, -1)
            self.task.collector.send(topic, key, value, record.timestamp, record.headers,
                                     partition)
        except Exception as exc:  # KIP-399: serializing is part of producing
            self.task.production_failed(exc, topic, record.key, record.value)
