"""A running application (Kafka Streams' KafkaStreams): its internal topics made, its stream
threads started, its state and its stores.

    app = StreamsApp(builder.build(), {"application.id": "wordcount",
                                       "bootstrap.servers": "localhost:9092",
                                       "processing.guarantee": "exactly_once_v2"})
    app.start()
    ...
    app.close()

Several instances with one application.id share the work: each thread is a member of the
application's consumer group (strom.streams.thread says how tasks are assigned).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from strom.streams.config import StreamsConfig
from strom.streams.internal_topics import Layout, TopicLayoutError, external_topics, layout
from strom.streams.state_dir import StateDirectory
from strom.streams.thread import RestoreListener, StreamThread
from strom.streams.topology import Topology

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0


class State(enum.Enum):
    CREATED = "CREATED"
    REBALANCING = "REBALANCING"
    RUNNING = "RUNNING"
    PENDING_SHUTDOWN = "PENDING_SHUTDOWN"
    NOT_RUNNING = "NOT_RUNNING"
    ERROR = "ERROR"


class StreamsApp:
    def __init__(self, topology: Topology, config: Mapping[str, Any] | StreamsConfig, *,
                 restore_listener: RestoreListener | None = None) -> None:
        self.topology = topology
        self.config = config if isinstance(config, StreamsConfig) else StreamsConfig(config)
        self.process_id = uuid.uuid4().hex[:12]
        self.state = State.CREATED
        self.restore_listener = restore_listener
        self.threads: list[StreamThread] = []
        self._runners: list[threading.Thread] = []
        self._stop = threading.Event()
        self._state_listeners: list[Callable[[State, State], None]] = []
        self.failure: BaseException | None = None
        self.layout: Layout | None = None
        self._state_dir: StateDirectory | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def on_state_change(self, listener: Callable[[State, State], None]) -> None:
        self._state_listeners.append(listener)

    def _set_state(self, state: State) -> None:
        old, self.state = self.state, state
        if old is not state:
            for listener in self._state_listeners:
                listener(state, old)

    def start(self) -> None:
        """Makes the internal topics, then starts the threads (processing begins once they
        have their tasks). TopicLayoutError when the topics cannot work."""
        if self.state is not State.CREATED:
            raise RuntimeError(f"start() is for a new application, this one is {self.state}")
        if self.topology.global_stores:
            raise TopicLayoutError(
                f"global stores ({', '.join(sorted(self.topology.global_stores))}) need a "
                "global thread, which StreamsApp does not have yet (the TopologyTestDriver "
                "runs them)")
        self.layout = self._setup_topics()
        state = StateDirectory(self.config.state_dir, self.config.application_id)
        state.lock()
        self._state_dir = state
        self.process_id = state.process_id()
        for index in range(self.config.num_stream_threads):
            thread = StreamThread(index, self.topology, self.config, self.process_id, state,
                                  self.layout.sub_partitions, self.restore_listener)
            thread.start()
            self.threads.append(thread)
        self._set_state(State.REBALANCING)
        for thread in self.threads:
            runner = threading.Thread(target=self._run, args=(thread,), daemon=True,
                                      name=f"{self.config.application_id}-thread-{thread.index}")
            self._runners.append(runner)
            runner.start()

    def _run(self, thread: StreamThread) -> None:
        try:
            while not self._stop.is_set():
                thread.run_once()
                if self.state is State.REBALANCING and thread.tasks and all(
                        not r.restoring for r in thread.tasks.values()):
                    self._set_state(State.RUNNING)
        except BaseException as exc:  # the thread dies; the application reports it
            log.exception("stream thread %d failed", thread.index)
            thread.failure = exc
            self.failure = self.failure or exc
            self._set_state(State.ERROR)
        finally:
            try:
                thread.close()
            except Exception:
                log.exception("closing stream thread %d failed", thread.index)

    def close(self, timeout_s: float = 60.0) -> bool:
        """Commits, closes the tasks and leaves the group; True if every thread stopped in
        time."""
        if self.state is not State.ERROR:
            self._set_state(State.PENDING_SHUTDOWN)
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for runner in self._runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(r.is_alive() for r in self._runners)
        if stopped and self._state_dir is not None:
            self._state_dir.unlock()
        if self.state is not State.ERROR:
            self._set_state(State.NOT_RUNNING)
        return stopped

    def __enter__(self) -> StreamsApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics --------------------------------------------------------------------------

    def _setup_topics(self) -> Layout:
        admin = AdminClient(self.config.client_settings("admin"))
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        existing = {name: len(t.partitions) for name, t in metadata.topics.items()
                    if t.error is None}
        missing = [t for t in external_topics(self.topology) if t not in existing]
        if missing:
            raise TopicLayoutError(f"the source topics {', '.join(missing)} do not exist: "
                                   "create them first")
        dead_letters = self.config.error_handling.dead_letter_queue
        if dead_letters is not None and dead_letters not in existing:
            raise TopicLayoutError(f"the dead-letter queue topic {dead_letters} (errors.dead."
                                   "letter.queue.topic.name) does not exist: create it first")
        planned = layout(self.topology, self.config.application_id, existing)
        to_create = []
        for plan in planned.internal:
            have = existing.get(plan.name)
            if have is None:
                to_create.append(NewTopic(plan.name, plan.partitions,
                                          self.config.replication_factor, config=plan.config))
            elif have != plan.partitions:
                raise TopicLayoutError(
                    f"the internal topic {plan.name} has {have} partitions where the "
                    f"application needs {plan.partitions}: delete it (and reset the "
                    "application) or give the sources their former partition counts")
        if to_create:
            for name, future in admin.create_topics(to_create).items():
                try:
                    future.result(ADMIN_TIMEOUT_S)
                    log.info("created the internal topic %s", name)
                except KafkaException as exc:
                    if "already exists" not in str(exc).lower() and \
                            "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
        return planned

    # -- stores --------------------------------------------------------------------------

    def store(self, name: str) -> LocalStore:
        """The store `name` of this instance's tasks, read-only (interactive queries)."""
        if name not in self.topology.stores:
            raise KeyError(f"no store named {name!r}")
        return LocalStore(self, name)

    @property
    def tasks(self) -> list[str]:
        return sorted(t for thread in self.threads for t in thread.tasks)


class LocalStore:
    """A store across the tasks of this instance (each holds the keys of its partition)."""

    def __init__(self, app: StreamsApp, name: str) -> None:
        self.app = app
        self.name = name

    def _stores(self) -> Iterator[Any]:
        for thread in self.app.threads:
            for running in list(thread.tasks.values()):
                if not running.restoring and self.name in running.task.stores:
                    yield running.task.stores[self.name]

    def get(self, key: Any) -> Any:
        for store in self._stores():
            value = store.get(key)
            if value is not None:
                return value
        return None

    def all(self) -> Iterator[tuple[Any, Any]]:
        for store in self._stores():
            yield from store.all()

    def approximate_num_entries(self) -> int:
        return sum(store.approximate_num_entries() for store in self._stores())
