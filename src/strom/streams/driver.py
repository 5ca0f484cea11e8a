"""Runs a topology without a broker (Kafka Streams' TopologyTestDriver): pipe records into
input topics with the timestamps you choose, move the wall clock, read what the topology
wrote and look into its stores.

    driver = TopologyTestDriver(builder.build(), {"application.id": "wordcount"})
    words = driver.create_input_topic("words", Serdes.String(), Serdes.String())
    counts = driver.create_output_topic("counts", Serdes.String(), Serdes.Long())
    words.pipe_input(None, "a b a", timestamp=1000)
    assert counts.read_key_values_to_map() == {"a": 2, "b": 1}

Every sub-topology runs as one task (partition 0). A record written to a topic the topology
reads (a repartition topic) is processed at once, before `pipe_input` returns, as Kafka's
driver does; every written record (changelogs too) can be read from its topic. Global stores
live in one more task (`global_task`), which every other task reads them from; a record piped
into a global store's topic updates the store at once. `restart_tasks()` creates the tasks
again over the same stores and processor metadata, as a restarted application would find
them (restored from their changelogs and committed offsets).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from strom.streams.config import StreamsConfig
from strom.streams.record import Headers, Record
from strom.streams.serdes import Serde
from strom.streams.stores.api import StateStore
from strom.streams.stores.caching import ThreadCache
from strom.streams.task import Task
from strom.streams.topology import SubTopology, Topology


class _Written:
    __slots__ = ("headers", "key", "partition", "timestamp", "value")

    def __init__(self, key: bytes | None, value: bytes | None, timestamp: int,
                 headers: Headers, partition: int | None) -> None:
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers
        self.partition = partition


class TopologyTestDriver:
    def __init__(self, topology: Topology, config: Mapping[str, Any] | None = None, *,
                 initial_wall_clock_ms: int = 0) -> None:
        # Stores in memory unless default.dsl.store says rocksDB (then in a temporary
        # state directory, removed by close()).
        self.config = StreamsConfig(config or {}, require_bootstrap=False,
                                    default_store="in_memory")
        self._state_dir: str | None = None
        if self.config.default_engine is not None:
            self._state_dir = tempfile.mkdtemp(prefix="strom-streams-driver-")
        self.topology = topology
        self.wall_clock_ms = initial_wall_clock_ms
        self.outputs: dict[str, deque[_Written]] = {}
        self._offsets: dict[str, int] = {}
        self._pending: deque[tuple[str, _Written]] = deque()
        self._draining = False
        # One thread's record cache for the tasks, flushed after every record processed (as
        # Kafka's driver commits after each): one record's updates of a key come out once.
        self.record_cache = ThreadCache.for_thread(self.config.cache_max_bytes, 1)
        self.tasks: list[Task] = []
        self._task_of: dict[str, Task] = {}
        self.global_task: Task | None = None
        global_sub = topology.global_sub_topology()
        if global_sub is not None:
            self.global_task = self._task("global", global_sub)
        for sub in topology.sub_topologies():
            self.tasks.append(self._task(f"{sub.id}_0", sub))

    def _task(self, task_id: str, sub: SubTopology, previous: Task | None = None) -> Task:
        task = Task(task_id, self.topology, sub, 0,
                    application_id=self.config.application_id, collector=self,
                    clock=lambda: self.wall_clock_ms,
                    default_key_serde=self.config.default_key_serde,
                    default_value_serde=self.config.default_value_serde,
                    deserialization_handler=self.config.deserialization_handler,
                    errors=self.config.error_handling,
                    global_stores=self.global_task.stores if self.global_task else None,
                    default_engine=self.config.default_engine,
                    state_directory=os.path.join(self._state_dir or "", task_id),
                    stores=previous.stores if previous is not None else None,
                    processor_metadata=previous.processor_metadata if previous is not None
                    else None,
                    record_cache=self.record_cache)
        for topic in sub.source_topics:
            self._task_of[self.topology.physical(self.config.application_id, topic)] = task
        return task

    def restart_tasks(self) -> None:
        """Closes the tasks' processors and creates the tasks again over the same stores,
        with their processor metadata, as a restarted application (or another instance)
        would have them: the stores restored from their changelogs, the metadata from the
        committed offsets (here everything is committed). Only what processors keep in
        memory is lost (a stream time, a suppression's buffer). The global task stays."""
        previous, self.tasks = self.tasks, []
        for task in previous:
            task.close(stores=False)
            self.tasks.append(self._task(task.id, task.sub, task))

    # -- the collector the tasks write to ------------------------------------------------

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers, partition: int | None) -> None:
        written = _Written(key, value, timestamp, tuple(headers), partition)
        self.outputs.setdefault(topic, deque()).append(written)
        if topic in self._task_of:
            self._pending.append((topic, written))

    # -- input ---------------------------------------------------------------------------

    def pipe(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers = ()) -> None:
        task = self._task_of.get(topic)
        if task is None:
            raise ValueError(f"the topology reads no topic {topic!r} (it reads "
                             f"{', '.join(sorted(self._task_of)) or 'none'})")
        self._pending.append((topic, _Written(key, value, timestamp, tuple(headers), 0)))
        self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._pending:
                topic, written = self._pending.popleft()
                offset = self._offsets.get(topic, 0)
                self._offsets[topic] = offset + 1
                self._task_of[topic].process(topic, offset, written.key, written.value,
                                             written.timestamp, written.headers)
                self._commit()
        finally:
            self._draining = False

    def advance_wall_clock_time(self, ms: int) -> None:
        """Moves the wall clock on, firing the wall-clock punctuators that fall due."""
        if ms < 0:
            raise ValueError("the wall clock does not go back")
        self.wall_clock_ms += ms
        for task in self.tasks:
            task.punctuate_wall_clock(self.wall_clock_ms)
        self._commit()
        self._drain()

    def _commit(self) -> None:
        """What a commit does here: the record caches flushed (what they forward to a topic
        the topology reads is processed next)."""
        for task in self.tasks:
            task.flush_cache()

    def create_input_topic(self, topic: str, key_serde: Serde[Any],
                           value_serde: Serde[Any]) -> TestInputTopic:
        return TestInputTopic(self, topic, key_serde, value_serde)

    def create_output_topic(self, topic: str, key_serde: Serde[Any],
                            value_serde: Serde[Any]) -> TestOutputTopic:
        return TestOutputTopic(self, topic, key_serde, value_serde)

    # -- stores --------------------------------------------------------------------------

    def get_state_store(self, name: str) -> StateStore:
        for task in [*self.tasks, *([self.global_task] if self.global_task else [])]:
            if name in task.stores:
                return task.stores[name]
        raise KeyError(f"no store named {name!r} (the topology has "
                       f"{', '.join(sorted(self.topology.stores)) or 'none'})")

    get_key_value_store = get_state_store

    @property
    def producer_topics(self) -> list[str]:
        return sorted(self.outputs)

    def close(self) -> None:
        for task in self.tasks:
            task.close()
        if self.global_task is not None:
            self.global_task.close()
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    def __enter__(self) -> TopologyTestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TestInputTopic:
    """Records into one input topic; a record without a timestamp takes the wall clock's."""

    __test__ = False  # not a pytest test class

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde[Any],
                 value_serde: Serde[Any]) -> None:
        self.driver = driver
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde

    def pipe_input(self, key: Any, value: Any, timestamp: int | None = None,
                   headers: Headers = ()) -> None:
        self.driver.pipe(self.topic, self.key_serde.serialize(self.topic, key),
                         self.value_serde.serialize(self.topic, value),
                         self.driver.wall_clock_ms if timestamp is None else timestamp, headers)

    def pipe_value_list(self, values: Iterable[Any], timestamp: int | None = None) -> None:
        for value in values:
            self.pipe_input(None, value, timestamp)

    def pipe_key_value_list(self, pairs: Iterable[tuple[Any, Any]],
                            timestamp: int | None = None) -> None:
        for key, value in pairs:
            self.pipe_input(key, value, timestamp)


class TestOutputTopic:
    """Reads (and removes) what the topology wrote to one topic, oldest first."""

    __test__ = False

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde[Any],
                 value_serde: Serde[Any]) -> None:
        self.driver = driver
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde

    def _queue(self) -> deque[_Written]:
        return self.driver.outputs.setdefault(self.topic, deque())

    @property
    def queue_size(self) -> int:
        return len(self._queue())

    def is_empty(self) -> bool:
        return not self._queue()

    def read_record(self) -> Record:
        queue = self._queue()
        if not queue:
            raise IndexError(f"nothing (more) was written to {self.topic}")
        w = queue.popleft()
        return Record(self.key_serde.deserialize(self.topic, w.key),
                      self.value_serde.deserialize(self.topic, w.value), w.timestamp, w.headers)

    def read_key_value(self) -> tuple[Any, Any]:
        record = self.read_record()
        return record.key, record.value

    def read_value(self) -> Any:
        return self.read_record().value

    def read_records_to_list(self) -> list[Record]:
        return [self.read_record() for _ in range(self.queue_size)]

    def read_key_values_to_list(self) -> list[tuple[Any, Any]]:
        return [self.read_key_value() for _ in range(self.queue_size)]

    def read_values_to_list(self) -> list[Any]:
        return [self.read_value() for _ in range(self.queue_size)]

    def read_key_values_to_map(self) -> dict[Any, Any]:
        """The last value of each key (a None value removes the key)."""
        table: dict[Any, Any] = {}
        for key, value in self.read_key_values_to_list():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return table
