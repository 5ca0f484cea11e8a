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

Besides its stream threads an instance may run: a global stream thread
(strom.streams.global_thread), when the topology has global stores, which fills them before
any stream thread starts and keeps them up to date; and a keeper thread, when
`num.standby.replicas` > 0 or the instance has an endpoint (`application.server`, or
`http=(host, port)`), which follows the group's membership (strom.streams.membership),
keeps the standby tasks placed here (strom.streams.standby) and knows every instance's
endpoint for `metadata_for_key` and `all_metadata` (strom.streams.queries). With `http` (or
`application.server.http=true`) a small HTTP endpoint answers queries for any key
(strom.streams.http_api).
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
from strom.streams.global_thread import GlobalStreamThread
from strom.streams.http_api import QueryServer
from strom.streams.internal_topics import (
    Layout,
    TopicLayoutError,
    TopicPlan,
    external_topics,
    global_topics,
    layout,
)
from strom.streams.membership import Membership, instances_topic
from strom.streams.queries import KeyQueryMetadata, StreamsMetadata, all_metadata
from strom.streams.queries import metadata_for_key as _metadata_for_key
from strom.streams.serdes import Serde
from strom.streams.standby import StandbyTasks, stateful_sub_topologies
from strom.streams.state_dir import StateDirectory
from strom.streams.task import StreamsError
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
                 restore_listener: RestoreListener | None = None,
                 http: tuple[str, int] | None = None) -> None:
        """`http=(host, port)` serves interactive queries over HTTP there (port 0: any free
        port); `application.server` is then the bound address unless it is set."""
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
        self.global_thread: GlobalStreamThread | None = None
        self.standbys: StandbyTasks | None = None
        self.membership: Membership | None = None
        self.query_server: QueryServer | None = None
        self.endpoint: str | None = self.config.application_server or None
        if http is None and self.config.application_server_http:
            host, _, port = self.config.application_server.rpartition(":")
            http = (host.strip("[]"), int(port))
        self._http = http
        self._background: list[threading.Thread] = []
        self._stop_background = threading.Event()

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
        state, planned = self._prepare()
        try:
            self._start_helpers(state)
        except BaseException:
            self._close_helpers()
            raise
        global_stores = self.global_thread.stores if self.global_thread is not None else None
        membership = self.membership
        for index in range(self.config.num_stream_threads):
            self.threads.append(StreamThread(
                index, self.topology, self.config, self.process_id, state,
                planned.sub_partitions, self.restore_listener,
                global_stores=global_stores, standbys=self.standbys,
                on_tasks_changed=membership.refresh_soon if membership is not None else None))
        self._set_state(State.REBALANCING)
        app = self.config.application_id
        if self.global_thread is not None:
            self._spawn(self._run_global, self.global_thread, f"{app}-global-thread")
        if self.membership is not None:
            self._spawn(self._keep, None, f"{app}-keeper")
        for thread in self.threads:
            runner = threading.Thread(target=self._run, args=(thread,), daemon=True,
                                      name=f"{app}-thread-{thread.index}")
            self._runners.append(runner)
            runner.start()
        if self.query_server is not None:
            self.query_server.start()

    def _prepare(self) -> tuple[StateDirectory, Layout]:
        """The HTTP endpoint bound (its address known), the topics made, the state directory
        locked."""
        if self._http is not None:
            self.query_server = QueryServer(self, *self._http)
            if self.endpoint is None:
                self.endpoint = "{}:{}".format(*self.query_server.address)
        try:
            planned = self.layout = self._setup_topics()
            state = StateDirectory(self.config.state_dir, self.config.application_id)
            state.lock()
        except BaseException:
            if self.query_server is not None:
                self.query_server.close()
            raise
        self._state_dir = state
        self.process_id = state.process_id()
        return state, planned

    def _start_helpers(self, state: StateDirectory) -> None:
        """The global thread (bootstrapping starts at once), standbys and membership."""
        if self.topology.global_stores:
            self.global_thread = GlobalStreamThread(self.topology, self.config,
                                                    self.process_id, state,
                                                    self.restore_listener)
            self.global_thread.start()
        if self.config.num_standby_replicas > 0:
            self.standbys = StandbyTasks(self.topology, self.config, self.process_id, state,
                                         self.restore_listener)
        if self.standbys is not None or self.endpoint is not None:
            stateful = stateful_sub_topologies(self.topology)
            self.membership = Membership(
                self.topology, self.config, self.process_id, self.endpoint,
                lambda task: int(task.partition("_")[0]) in stateful)

    def _close_helpers(self) -> None:
        """What start() made before it failed: closed, the state directory unlocked."""
        closers: list[Callable[[], None]] = []
        if self.global_thread is not None:
            closers.append(lambda: self.global_thread.close(False) if self.global_thread
                           else None)
        if self.standbys is not None:
            closers.append(self.standbys.close)
        if self.membership is not None:
            closers.append(lambda: self.membership.close(False) if self.membership else None)
        if self.query_server is not None:
            closers.append(self.query_server.close)
        for close in closers:
            try:
                close()
            except Exception:
                log.exception("closing after a failed start failed")
        if self._state_dir is not None:
            self._state_dir.unlock()

    def _spawn(self, target: Callable[[Any], None], arg: Any, name: str) -> None:
        runner = threading.Thread(target=target, args=(arg,), daemon=True, name=name)
        self._background.append(runner)
        runner.start()

    def _fail(self, what: str, exc: BaseException) -> None:
        log.error("%s failed", what, exc_info=exc)
        self._set_state(State.ERROR)  # first: whoever sees the failure sees the state too
        self.failure = self.failure or exc

    def _run_global(self, thread: GlobalStreamThread) -> None:
        clean = True
        try:
            while not self._stop_background.is_set():
                thread.run_once()
        except BaseException as exc:
            clean = False
            self._fail("the global stream thread", exc)
        finally:
            try:
                thread.close(clean)
            except Exception:
                log.exception("closing the global stream thread failed")

    def _keep(self, _: None) -> None:
        """Follows the group; keeps the standbys this instance should have."""
        membership, standbys = self.membership, self.standbys
        assert membership is not None
        clean = True
        try:
            while not self._stop_background.is_set():
                membership.refresh()
                if standbys is not None:
                    standbys.update(set(membership.view.standby.get(self.process_id, ())))
                    standbys.poll(0.1)
                else:
                    self._stop_background.wait(0.1)
        except BaseException as exc:
            clean = False
            self._fail("the keeper thread (standbys, membership)", exc)
        finally:
            try:
                if standbys is not None:
                    standbys.close()
                membership.close(clean)
            except Exception:
                log.exception("closing the keeper thread failed")

    def _global_ready(self) -> bool:
        """Waits until the global stores are restored; False if the application stops."""
        if self.global_thread is None:
            return True
        while not self.global_thread.ready.wait(0.1):
            if self._stop.is_set() or self.state is State.ERROR:
                return False
        return True

    def _run(self, thread: StreamThread) -> None:
        try:
            if not self._global_ready():
                return
            thread.start()
            while not self._stop.is_set():
                thread.run_once()
                if self.state is State.REBALANCING and thread.tasks and all(
                        not r.restoring for r in thread.tasks.values()):
                    self._set_state(State.RUNNING)
        except BaseException as exc:  # the thread dies; the application reports it
            thread.failure = exc
            self._fail(f"stream thread {thread.index}", exc)
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
        self._stop_background.set()  # after the stream threads: they read the global stores
        for runner in self._background:
            runner.join(max(0.0, deadline - time.monotonic()))
        if self.query_server is not None:
            self.query_server.close()
        stopped = not any(r.is_alive() for r in self._runners + self._background)
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
        missing = [t for t in external_topics(self.topology) + global_topics(self.topology)
                   if t not in existing]
        if missing:
            raise TopicLayoutError(f"the source topics {', '.join(missing)} do not exist: "
                                   "create them first")
        dead_letters = self.config.error_handling.dead_letter_queue
        if dead_letters is not None and dead_letters not in existing:
            raise TopicLayoutError(f"the dead-letter queue topic {dead_letters} (errors.dead."
                                   "letter.queue.topic.name) does not exist: create it first")
        planned = layout(self.topology, self.config.application_id, existing)
        plans = list(planned.internal)
        if self.endpoint is not None:  # where the instances publish their endpoints
            plans.append(TopicPlan(instances_topic(self.config.application_id), 1,
                                   {"cleanup.policy": "compact"}))
        self._create_topics(admin, plans, existing)
        return planned

    def _create_topics(self, admin: AdminClient, plans: list[TopicPlan],
                       existing: Mapping[str, int]) -> None:
        """The internal topics not there yet; TopicLayoutError for one of the wrong size."""
        to_create = []
        for plan in plans:
            have = existing.get(plan.name)
            if have is None:
                to_create.append(NewTopic(plan.name, plan.partitions,
                                          self.config.replication_factor, config=plan.config))
            elif have != plan.partitions:
                raise TopicLayoutError(
                    f"the internal topic {plan.name} has {have} partitions where the "
                    f"application needs {plan.partitions}: delete it (and reset the "
                    "application) or give the sources their former partition counts")
        for name, future in (admin.create_topics(to_create).items() if to_create else ()):
            try:
                future.result(ADMIN_TIMEOUT_S)
                log.info("created the internal topic %s", name)
            except KafkaException as exc:
                if "already exists" not in str(exc).lower() and \
                        "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    # -- stores --------------------------------------------------------------------------

    def store(self, name: str, stale: bool = False) -> LocalStore:
        """The store `name` of this instance's tasks (or its global store), read-only
        (interactive queries). With `stale=True` (Kafka's StoreQueryParameters
        enableStaleStores) also the stores of its standby tasks and of tasks still restoring,
        which may lag behind the active ones."""
        if name not in self.topology.stores:
            raise KeyError(f"no store named {name!r}")
        return LocalStore(self, name, stale)

    def metrics(self) -> dict[str, Any]:
        """A snapshot of the application's metrics (strom.streams.metrics): per thread and
        per task, with Kafka Streams' names."""
        return {"state": self.state.value,
                "threads": {f"{self.config.application_id}-thread-{t.index}":
                            t.metrics.snapshot() for t in self.threads},
                "tasks": {task_id: values for t in self.threads
                          for task_id, values in t.task_metrics().items()}}

    @property
    def tasks(self) -> list[str]:
        """The tasks this instance runs."""
        return sorted(t for thread in self.threads for t in thread.tasks)

    @property
    def standby_tasks(self) -> list[str]:
        """The tasks of other instances this instance keeps standbys of."""
        return self.standbys.task_ids if self.standbys is not None else []

    def serving(self, task_id: str | None) -> bool:
        """Whether a task runs here with its stores restored."""
        return any(task_id in thread.tasks and not thread.tasks[task_id].restoring
                   for thread in self.threads)

    # -- interactive queries across instances --------------------------------------------

    def _membership(self) -> Membership:
        if self.membership is None:
            raise StreamsError("metadata of other instances needs application.server (or "
                               "http=..., or num.standby.replicas > 0), and a started "
                               "application")
        return self.membership

    def all_metadata(self) -> list[StreamsMetadata]:
        """Every instance of the application in its group: endpoint, tasks, stores (as of
        the group's last stable description)."""
        membership = self._membership()
        return all_metadata(self.topology, membership.view, membership.endpoints)

    def metadata_for_key(self, store: str, key: Any, key_serde: Serde[Any],
                         partitioner: Callable[[bytes, int], int] | None = None
                         ) -> KeyQueryMetadata:
        """Which instance holds `key` of `store` (`active` is its application.server). Keys
        are taken to be partitioned by Java's default partitioner (murmur2 of the serialized
        key), as strom.streams writes them; give `partitioner(key bytes, partitions)` for a
        store fed straight from a topic that was written otherwise."""
        membership = self._membership()
        assert self.layout is not None
        return _metadata_for_key(self.topology, self.layout.sub_partitions, membership.view,
                                 membership.endpoints, (self.process_id, self.endpoint),
                                 store, key, key_serde, partitioner)


class LocalStore:
    """A store across the tasks of this instance (each holds the keys of its partition)."""

    def __init__(self, app: StreamsApp, name: str, stale: bool = False) -> None:
        self.app = app
        self.name = name
        self.stale = stale

    def _stores(self) -> Iterator[Any]:
        global_thread = self.app.global_thread
        if self.name in self.app.topology.global_stores:
            if global_thread is not None and global_thread.ready.is_set():
                yield global_thread.stores[self.name]
            return
        for thread in self.app.threads:
            for running in list(thread.tasks.values()):
                if (self.stale or not running.restoring) and self.name in running.task.stores:
                    yield running.task.stores[self.name]
        if self.stale and self.app.standbys is not None:
            yield from self.app.standbys.stores(self.name)

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
