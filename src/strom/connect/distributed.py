"""Distributed mode: workers with one `group.id` form a cluster (see docs/connect.md,
"Distributed mode").

- Configs live in `config.storage.topic` (Kafka Connect's records: `connector-<name>`,
  `task-<name>-<n>`, `commit-<name>`, `target-state-<name>`, `restart-connector-<name>`), which
  every worker reads whole and tails; the leader writes connector configs and target states, the
  worker running a connector writes its task configs.
- Membership: each worker is a consumer of the group `group.id` subscribed to the config topic
  (one partition): the member assigned partition 0 is the leader; each member's client.id is its
  worker id (`host:port`, its REST address). The leader lists the members (DescribeGroups),
  computes the incremental cooperative assignment (strom.connect.assignment) and publishes it
  as the record `assignment` of the config topic ({"generation", "leader", "assignments"});
  each worker starts and stops what that record gives it, and stops everything when it loses
  its group membership (a zombie stops its tasks).
- Statuses in `status.storage.topic` (`status-connector-<name>`, `status-task-<name>-<n>`):
  each worker writes those of what it runs; every worker answers from what it read.
- Source offsets in `offset.storage.topic` (KafkaOffsetBackingStore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from strom.connect import loggers
from strom.connect.api import SinkConnector
from strom.connect.assignment import (
    RUNNING_STATES,
    Assignment,
    Item,
    WorkerLoad,
    assign,
    defer_moves,
)
from strom.connect.discovery import find_connector
from strom.connect.herder import ConnectorInfo, StandaloneHerder, check_connector_config
from strom.connect.kafka_store import (
    Fenced,
    KafkaLog,
    KafkaOffsetBackingStore,
    Record,
    ensure_topic,
    fence_producers,
)
from strom.connect.metrics import RebalanceState
from strom.connect.states import Conflict, NotFound, State, Status, TargetState
from strom.connect.worker import (
    Worker,
    WorkerConfig,
    WorkerConnector,
    WorkerSinkTask,
    WorkerSourceTask,
    WorkerTask,
)

log = logging.getLogger(__name__)

ASSIGNMENT_KEY = "assignment"
LOGGER_PREFIX = "logger-cluster-"
ACTIVE = RUNNING_STATES  # what a status says while its worker still runs it
REBALANCING = ("Cannot complete request because of a conflicting operation (e.g. worker "
               "rebalance)")
STALE = ("Cannot complete request momentarily due to stale configuration (typically caused by "
         "a concurrent config change)")
TICK_S = 0.25
# How long a move waits for the worker losing a connector or task to say it stopped it (an
# UNASSIGNED status, written once its task stopped within its 5 s and flushed its offsets)
# before the leader gives it to its new worker anyway.
MOVE_TIMEOUT_S = 15.0
# Kafka's herder retries a connector's task reconfiguration from 250 ms up to 60 s.
RECONFIGURE_BACKOFF_S = 0.25
RECONFIGURE_BACKOFF_MAX_S = 60.0


class DistributedConfig:
    """The distributed worker's own properties (Kafka's names and defaults, except the
    replication factors: -1, what the cluster allows up to 3)."""

    def __init__(self, props: Mapping[str, str]) -> None:
        self.props = props
        self.group_id = props.get("group.id", "connect-cluster")
        self.config_topic = props.get("config.storage.topic", "connect-configs")
        self.offset_topic = props.get("offset.storage.topic", "connect-offsets")
        self.status_topic = props.get("status.storage.topic", "connect-status")
        self.offset_partitions = int(props.get("offset.storage.partitions", "25"))
        self.status_partitions = int(props.get("status.storage.partitions", "5"))
        self.session_timeout_ms = int(props.get("session.timeout.ms", "10000"))
        self.heartbeat_interval_ms = int(props.get("heartbeat.interval.ms", "3000"))
        self.rebalance_delay_s = int(props.get("scheduled.rebalance.max.delay.ms",
                                               "300000")) / 1000

    def replication(self, name: str) -> int:
        return int(self.props.get(f"{name}.storage.replication.factor", "-1"))


class Membership:
    """The worker's consumer in the group: `leader` while it holds the config topic's
    partition 0, `member` while it has an assignment."""

    def __init__(self, client: dict[str, Any], topic: str, group_id: str, worker_id: str,
                 session_timeout_ms: int, heartbeat_interval_ms: int) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient
        self.topic = topic
        self.group_id = group_id
        self.member = False
        self.leader = False
        self.changes = 0
        self.rebalancing = False  # from the revocation of a group rebalance to its assignment
        self._consumer = Consumer({
            **client, "group.id": group_id, "client.id": worker_id,
            "enable.auto.commit": False, "auto.offset.reset": "latest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": min(heartbeat_interval_ms,
                                         max(100, session_timeout_ms // 3)),
            "partition.assignment.strategy": "range",
        })
        self._admin = AdminClient(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connect-membership",
                                        daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self.topic], on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._lost)
        self._thread.start()

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        self.leader = any(p.partition == 0 for p in partitions)
        self.member = True
        self.rebalancing = False
        self.changes += 1
        log.info("joined group %s%s", self.group_id, " as its leader" if self.leader else "")

    def _revoked(self, _consumer: Any, _partitions: list[Any]) -> None:
        self.leader = False
        self.rebalancing = True

    def _lost(self, _consumer: Any, _partitions: list[Any]) -> None:
        log.warning("lost the membership of group %s", self.group_id)
        self.leader = False
        self.member = False
        self.changes += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consumer.consume(100, timeout=0.2)  # heartbeats and callbacks
            except Exception:
                log.exception("group membership")
                self._stop.wait(0.5)

    def members(self, timeout: float = 5.0) -> list[str] | None:
        """The client ids of the group's members, None unless the group is stable."""
        from confluent_kafka import ConsumerGroupState
        future = self._admin.describe_consumer_groups([self.group_id],
                                                      request_timeout=timeout)[self.group_id]
        try:
            description = future.result()
        except Exception as error:
            log.debug("describing group %s: %s", self.group_id, error)
            return None
        if description.state != ConsumerGroupState.STABLE:
            return None
        return sorted(m.client_id for m in description.members)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._consumer.close()  # leaves the group: the others rebalance at once


def _generation(value: Mapping[str, Any]) -> int:
    try:
        return int(value.get("generation") or 0)
    except (TypeError, ValueError):
        return 0


def _status_json(status: Status, generation: int) -> dict[str, Any]:
    return {"state": status.state.value, "trace": status.trace,
            "worker_id": status.worker_id, "generation": generation}


class DistributedHerder(StandaloneHerder):
    """The herder of one worker of a cluster. REST writes reach it on the leader only (the
    REST layer forwards them there, see `forwarding_middleware`)."""

    def __init__(self, worker: Worker, dconfig: DistributedConfig,
                 offsets: KafkaOffsetBackingStore) -> None:
        super().__init__(worker)
        self.dconfig = dconfig
        self.offset_store = offsets
        client = worker.config.client_config("admin")
        self.client = client
        self.config_log = KafkaLog(client, dconfig.config_topic, self._config_records)
        self.status_log = KafkaLog(client, dconfig.status_topic, self._status_records)
        self.membership = Membership(client, dconfig.config_topic, dconfig.group_id,
                                     worker.config.worker_id, dconfig.session_timeout_ms,
                                     dconfig.heartbeat_interval_ms)
        self.pending_tasks: dict[str, dict[int, dict[str, str]]] = {}
        self.assignment: Assignment = {}
        self.generation = 0
        self.leader_id: str | None = None
        self.statuses: dict[str, dict[str, Any]] = {}
        self._status_lock = threading.Lock()
        self.published: dict[str, dict[str, Any]] = {}
        self.departed_since: dict[str, float] = {}
        self.deferred_since: dict[Item, float] = {}  # moves waiting for the old worker
        self.loaded = False
        self._restarts: list[tuple[str, dict[str, Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False
        self.rebalances = 0  # assignments applied since the worker started
        # Task reconfigurations to do: connector -> when (monotonic; 0 at once), with the
        # failed attempts of each (the backoff of `_retry_reconfiguration`).
        self._reconfigure_at: dict[str, float] = {}
        self._reconfigure_attempts: dict[str, int] = {}
        self._reconfigure_lock = threading.Lock()
        # Exactly-once source support: the leader writes the config topic in transactions of
        # `connect-cluster-<group.id>` (Kafka's); fenced by a newer leader's claim, this worker
        # stops leading until its group membership changes (the membership count it saw then).
        self._fenced_at: int | None = None
        worker.collector.rebalance = self.rebalance_state

    # --- startup ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        d = self.dconfig
        for topic, partitions, kind in ((d.config_topic, 1, "config"),
                                        (d.offset_topic, d.offset_partitions, "offset"),
                                        (d.status_topic, d.status_partitions, "status")):
            await asyncio.to_thread(ensure_topic, self.client, topic, partitions,
                                    d.replication(kind))
        await asyncio.to_thread(self.status_log.start)
        await self._unassign_leftovers()
        await asyncio.to_thread(self.offset_store.start)
        await asyncio.to_thread(self.config_log.start)
        # After the records the initial read scheduled: restart requests from then on apply.
        self._loop.call_soon(self._set_loaded)
        await asyncio.sleep(0)
        self.membership.start()
        self._ticker = self._loop.create_task(self._tick_loop(), name="connect-herder")

    def _set_loaded(self) -> None:
        self.loaded = True

    async def _unassign_leftovers(self) -> None:
        """What a previous run of this worker id left RUNNING or PAUSED (it was killed, so it
        did not write UNASSIGNED at shutdown): UNASSIGNED, it runs nothing yet."""
        me = self.config.worker_id
        with self._status_lock:
            left = [(key, {**value, "state": State.UNASSIGNED.value, "trace": None})
                    for key, value in self.statuses.items()
                    if value.get("worker_id") == me and value.get("state") in ACTIVE]
        if left:
            await asyncio.to_thread(self.status_log.send, left, False)

    # --- the config topic -------------------------------------------------------------------

    def _config_records(self, records: list[Record]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._apply_config_records, records)

    def _apply_config_records(self, records: list[Record]) -> None:
        for key, value in records:
            if key is None:
                continue
            try:
                self._apply_config(key, value)
            except Exception:
                log.exception("config record %s: %r", key, value)

    def _apply_config(self, key: str, value: Any) -> None:
        if key == ASSIGNMENT_KEY:
            self._apply_assignment(value)
        elif key.startswith("connector-"):
            self._apply_connector(key[len("connector-"):], value)
        elif key.startswith("target-state-"):
            name = key[len("target-state-"):]
            if value is None:
                self.target.pop(name, None)
            else:
                self.target[name] = TargetState(value.get("state.v2") or value["state"])
        elif key.startswith("task-"):
            name, _, number = key[len("task-"):].rpartition("-")
            if value is not None:
                self.pending_tasks.setdefault(name, {})[int(number)] = {
                    str(k): str(v) for k, v in value.get("properties", {}).items()}
        elif key.startswith("commit-"):
            self._apply_commit(key[len("commit-"):], value)
        elif self.loaded and value is not None:
            self._apply_request(key, value)

    def _apply_request(self, key: str, value: Any) -> None:
        """The records that are requests, applied when read after this worker started."""
        if key.startswith(("restart-connector-", "restart-task-")):
            self._restarts.append((key, value))
        elif key.startswith(LOGGER_PREFIX) and isinstance(value, dict):
            # KIP-976: a cluster-wide level, applied by every worker that reads it.
            level = loggers.parse_level(str(value.get("level")))
            if level is not None:
                loggers.set_level(key[len(LOGGER_PREFIX):], level)

    def _apply_assignment(self, value: Any) -> None:
        if isinstance(value, dict) and int(value.get("generation", 0)) >= self.generation:
            if self.loaded and int(value["generation"]) > self.generation:
                self.rebalances += 1
            self.generation = int(value["generation"])
            self.leader_id = value.get("leader")
            self.assignment = {w: WorkerLoad.from_json(load)
                               for w, load in value.get("assignments", {}).items()}

    def _apply_connector(self, name: str, value: Any) -> None:
        if value is None:
            for mapping in (self.configs, self.target, self.task_config_map,
                            self.plugins, self.pending_tasks):
                mapping.pop(name, None)
            return
        config = {str(k): str(v) for k, v in value.get("properties", {}).items()}
        self.configs[name] = config
        self.target.setdefault(name, TargetState.STARTED)
        try:
            self.plugins[name] = find_connector(config.get("connector.class", ""))
        except Exception:
            log.warning("connector %s: plugin %s not found", name,
                        config.get("connector.class"))
            self.plugins.pop(name, None)

    def _apply_commit(self, name: str, value: Any) -> None:
        if value is None:
            return
        count = int(value.get("tasks", 0))
        pending = self.pending_tasks.get(name, {})
        if all(i in pending for i in range(count)):
            self.task_config_map[name] = [pending[i] for i in range(count)]
            self.pending_tasks[name] = {}

    # --- the status topic -------------------------------------------------------------------

    def _status_records(self, records: list[Record]) -> None:
        with self._status_lock:
            for key, value in records:
                if key is None:
                    continue
                if value is None:
                    self.statuses.pop(key, None)
                elif isinstance(value, dict):
                    # As Kafka's status store: a status of an older assignment generation (a
                    # zombie's, written late) does not replace a newer one.
                    known = self.statuses.get(key)
                    if known is not None and _generation(value) < _generation(known):
                        continue
                    self.statuses[key] = value
                    if value.get("worker_id") != self.config.worker_id \
                            and self._loop is not None:
                        self._loop.call_soon_threadsafe(self._overwritten, key)

    def _overwritten(self, key: str) -> None:
        """Another worker wrote a status this one publishes (e.g. the UNASSIGNED of a task's
        previous owner, read after this one's RUNNING): publish ours again on the next tick."""
        self.published.pop(key, None)

    def _status(self, key: str, owner: str | None) -> dict[str, Any]:
        with self._status_lock:
            value = self.statuses.get(key)
        if value is None:
            return {"state": State.UNASSIGNED.value,
                    "worker_id": owner or self.config.worker_id}
        out = {"state": value.get("state", "UNASSIGNED"), "worker_id": value.get("worker_id")}
        if value.get("trace"):
            out["trace"] = value["trace"]
        return out

    def _owner(self, item: str | tuple[str, int]) -> str | None:
        for worker, load in self.assignment.items():
            if item in (load.tasks if isinstance(item, tuple) else load.connectors):
                return worker
        return None

    # --- the loop ---------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while not self._stopping:
            try:
                if self.config_log.claimed and not self.leading:
                    await asyncio.to_thread(self.config_log.release)
                if self.leading and self.loaded:
                    await self._lead()
                await self._reconcile()
                await self._reconfigure_due()
                await self._publish_statuses()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("distributed herder")
            await asyncio.sleep(TICK_S)

    def _wanted_tasks(self) -> list[tuple[str, int]]:
        return [(name, i) for name, configs in self.task_config_map.items()
                if name in self.configs and self.target.get(name) != TargetState.STOPPED
                for i in range(len(configs))]

    @property
    def leading(self) -> bool:
        """The group made this worker its leader, and no newer leader fenced its writes."""
        if self._fenced_at is not None and self._fenced_at != self.membership.changes:
            self._fenced_at = None  # a new membership: it may lead again
        return self.membership.leader and self._fenced_at is None

    async def _leader_write(self, records: list[tuple[str, Any]]) -> None:
        """The leader's writes to the config topic. With exactly-once source support, as
        Kafka's leader: in transactions of `connect-cluster-<group.id>`, claimed when it first
        writes, so the writes of a previous leader that does not know it was replaced (a
        zombie: frozen, cut off) are fenced rather than mixed with the new leader's."""
        if not self.config.exactly_once_source:
            await asyncio.to_thread(self.config_log.send, records)
            return
        if not self.config_log.claimed:
            await asyncio.to_thread(self.config_log.claim,
                                    f"connect-cluster-{self.dconfig.group_id}")
        try:
            await asyncio.to_thread(self.config_log.send, records, True, True)
        except Fenced:
            log.warning("a newer leader fenced this worker's writes to %s: it stops leading "
                        "until it rejoins the group", self.dconfig.config_topic)
            self._fenced_at = self.membership.changes
            raise Conflict(REBALANCING) from None

    async def _lead(self) -> None:
        members = await asyncio.to_thread(self.membership.members)
        if members is None or not self.leading:
            return
        now = time.monotonic()
        previous = self.assignment
        for worker in previous:
            if worker not in members:
                self.departed_since.setdefault(worker, now)
        for worker in list(self.departed_since):
            if worker in members:
                del self.departed_since[worker]
        reserved = [w for w, since in self.departed_since.items()
                    if now - since < self.dconfig.rebalance_delay_s and w in previous]
        new = assign(previous, members, reserved, list(self.configs), self._wanted_tasks())
        new, deferred = defer_moves(new, previous, members, self._running_on(),
                                    self._move_expired)
        for item in [i for i in self.deferred_since if i not in deferred]:
            del self.deferred_since[item]
        me = self.config.worker_id
        if self._same(new, previous) and self.leader_id == me:
            return
        generation = self.generation + 1
        log.info("publishing assignment generation %d: %s", generation,
                 {w: load.to_json() for w, load in new.items()})
        await self._leader_write([(ASSIGNMENT_KEY, {
            "generation": generation, "leader": me,
            "assignments": {w: load.to_json() for w, load in new.items()},
            "reserved": reserved})])

    def _running_on(self) -> dict[Item, str]:
        """What the status records say runs where (strom.connect.assignment.RUNNING_STATES)."""
        out: dict[Item, str] = {}
        with self._status_lock:
            statuses = list(self.statuses.items())
        for key, value in statuses:
            worker = value.get("worker_id")
            if value.get("state") not in RUNNING_STATES or not isinstance(worker, str):
                continue
            if key.startswith("status-connector-"):
                out[key.removeprefix("status-connector-")] = worker
            elif key.startswith("status-task-"):
                name, _, number = key.removeprefix("status-task-").rpartition("-")
                if number.isdigit():
                    out[(name, int(number))] = worker
        return out

    def _move_expired(self, item: Item) -> bool:
        now = time.monotonic()
        since = self.deferred_since.setdefault(item, now)
        if now - since < MOVE_TIMEOUT_S:
            return False
        log.warning("moving %s although its worker did not say it stopped it within %.0f s",
                    item, MOVE_TIMEOUT_S)
        return True

    @staticmethod
    def _same(a: Assignment, b: Assignment) -> bool:
        return ({w: load.to_json() for w, load in a.items()}
                == {w: load.to_json() for w, load in b.items()})

    def _mine(self) -> WorkerLoad:
        if not self.membership.member or self._stopping:
            return WorkerLoad()
        return self.assignment.get(self.config.worker_id, WorkerLoad())

    async def _reconcile(self) -> None:
        async with self._lock:
            mine = self._mine()
            restarts, self._restarts = self._restarts, []
            await self._reconcile_connectors(mine)
            await self._reconcile_tasks(mine)
            for key, value in restarts:
                await self._apply_restart(key, value)

    async def _reconcile_connectors(self, mine: WorkerLoad) -> None:
        """Stop the connectors no longer ours (or whose config changed), start the rest."""
        wanted = {c for c in mine.connectors if c in self.configs and c in self.plugins}
        for name, connector in list(self.worker.connectors.items()):
            if name not in wanted or connector.config != self.configs[name]:
                await self._stop_connector_only(name)
        for name in sorted(wanted):
            await self._ensure_connector(name)

    async def _reconcile_tasks(self, mine: WorkerLoad) -> None:
        wanted: dict[tuple[str, int], dict[str, str]] = {}
        for name, number in mine.tasks:
            configs = self.task_config_map.get(name, [])
            if (name in self.configs and name in self.plugins and number < len(configs)
                    and self.target.get(name) != TargetState.STOPPED):
                wanted[(name, number)] = configs[number]
        await self._stop_unwanted(wanted)
        starting = [tid for tid in sorted(wanted) if tid not in self.worker.tasks]
        if starting:
            await asyncio.to_thread(self.offset_store.read_to_end)
        for tid in starting:
            self._start_task(tid, wanted[tid])
        for (name, _number), task in self.worker.tasks.items():
            paused = self.target.get(name) == TargetState.PAUSED
            if paused and not task.paused:
                task.pause()
            elif not paused and task.paused:
                task.resume()

    async def _stop_unwanted(self, wanted: Mapping[tuple[str, int], dict[str, str]]) -> None:
        """Stop the tasks no longer ours, and those whose configs changed."""
        for tid, task in list(self.worker.tasks.items()):
            if (tid not in wanted or task.task_config != wanted[tid]
                    or task.connector_config != self.configs.get(tid[0])):
                await self.worker.stop_task(tid)
                if tid not in wanted:
                    await self._unassigned(tid)

    async def _unassigned(self, tid: tuple[str, int]) -> None:
        """As Kafka's workers when a task shuts down: its status UNASSIGNED, unless another
        worker has written one since (the task moved there). Written after the task's last
        offset commit, so the leader knows when a stopped connector's offsets can change."""
        key = f"status-task-{tid[0]}-{tid[1]}"
        self.published.pop(key, None)
        with self._status_lock:
            known = self.statuses.get(key)
        if known is not None and known.get("worker_id") != self.config.worker_id:
            return
        status = Status(State.UNASSIGNED, self.config.worker_id)
        await asyncio.to_thread(self.status_log.send,
                                [(key, _status_json(status, self.generation))], False)

    def _stopping_tasks(self, name: str, members: list[str]) -> list[str]:
        """The connector's tasks some live worker still reports RUNNING or PAUSED."""
        prefix = f"status-task-{name}-"
        with self._status_lock:
            return sorted(key[len(prefix):] for key, value in self.statuses.items()
                          if key.startswith(prefix) and key[len(prefix):].isdigit()
                          and value.get("state") in ACTIVE
                          and value.get("worker_id") in members)

    async def _stop_connector_only(self, name: str) -> None:
        connector = self.worker.connectors.pop(name, None)
        if connector is not None:
            await connector.stop()

    async def _ensure_connector(self, name: str) -> None:
        target = self.target.get(name, TargetState.STARTED)
        connector = self.worker.connectors.get(name)
        if connector is None:
            connector = WorkerConnector(self.worker, name, self.plugins[name].cls,
                                        self.configs[name])
            self.worker.connectors[name] = connector
            if target != TargetState.STOPPED:
                await self._start_and_configure(connector, target)
        elif (target != TargetState.STOPPED and connector.instance is None
              and connector.status.state != State.FAILED):
            await self._start_and_configure(connector, target)
        if target == TargetState.STOPPED:
            if connector.instance is not None:
                await connector.stop()
            connector.status = Status(State.STOPPED, self.config.worker_id)
            if self.task_config_map.get(name):
                await self._fence_removed_tasks(connector, 0)
                await self._write_task_configs(name, [])
        elif connector.instance is not None and connector.status.state in (State.RUNNING,
                                                                           State.PAUSED):
            state = State.PAUSED if target == TargetState.PAUSED else State.RUNNING
            if connector.status.state != state:
                connector.status = Status(state, self.config.worker_id)

    async def _start_and_configure(self, connector: WorkerConnector,
                                   target: TargetState) -> None:
        if not await connector.start(paused=target == TargetState.PAUSED):
            return
        await self._update_task_configs(connector)

    async def _update_task_configs(self, connector: WorkerConnector) -> None:
        try:
            configs = connector.task_configs()
        except Exception as error:
            from strom.connect.states import trace_of
            connector.status = Status(State.FAILED, self.config.worker_id, trace_of(error))
            return
        if configs != self.task_config_map.get(connector.name):
            try:
                await self._fence_removed_tasks(connector, len(configs))
                await self._write_task_configs(connector.name, configs)
            except Exception as error:
                self._retry_reconfiguration(connector.name, error)
                return
        self._reconfigure_attempts.pop(connector.name, None)

    async def _fence_removed_tasks(self, connector: WorkerConnector, count: int) -> None:
        """Exactly-once source support (KIP-618): before an exactly-once source connector's
        task count shrinks, the transactional ids of the tasks that go are fenced, so a zombie
        of one (its worker frozen or cut off) can commit nothing more. The tasks that stay are
        fenced by their new incarnations' `init_transactions`."""
        previous = len(self.task_config_map.get(connector.name, []))
        if not self.config.exactly_once_source or connector.is_sink or previous <= count:
            return
        ids = [self.config.transactional_id(connector.name, i) for i in range(count, previous)]
        log.info("connector %s: fencing the producers of its removed tasks %s",
                 connector.name, ids)
        await asyncio.to_thread(fence_producers,
                                self.config.connector_client_config("producer",
                                                                    connector.config), ids)

    async def _write_task_configs(self, name: str, configs: list[dict[str, str]]) -> None:
        records: list[tuple[str, Any]] = [(f"task-{name}-{i}", {"properties": config})
                                          for i, config in enumerate(configs)]
        records.append((f"commit-{name}", {"tasks": len(configs)}))
        await asyncio.to_thread(self.config_log.send, records)

    def _start_task(self, tid: tuple[str, int], task_config: dict[str, str]) -> None:
        name, number = tid
        cls = self.plugins[name].cls
        try:
            task_cls = cls().task_class()
        except Exception as error:
            from strom.connect.states import trace_of
            log.exception("task %s-%d: no task class", name, number)
            self.worker.counts.task_startup_attempts += 1
            self.worker.counts.task_startup_failures += 1
            self.statuses_failed(name, number, trace_of(error))
            return
        kind: type[WorkerTask] = (WorkerSinkTask if issubclass(cls, SinkConnector)
                                  else WorkerSourceTask)
        task = kind(self.worker, name, number, task_cls, task_config, self.configs[name],
                    self.target.get(name) == TargetState.PAUSED)
        self.worker.tasks[tid] = task
        task.start()

    def statuses_failed(self, name: str, number: int, trace: str) -> None:
        assert self._loop is not None
        status = Status(State.FAILED, self.config.worker_id, trace)
        self._loop.create_task(asyncio.to_thread(
            self.status_log.send, [(f"status-task-{name}-{number}",
                                    _status_json(status, self.generation))], False))

    def _request_reconfiguration(self, name: str) -> None:
        """ConnectorContext.request_task_reconfiguration, from any thread: the next tick asks
        the connector for its task configs (`_reconfigure_due`)."""
        with self._reconfigure_lock:
            self._reconfigure_at[name] = 0.0

    def _retry_reconfiguration(self, name: str, error: BaseException) -> None:
        """As Kafka's herder: a reconfiguration whose task configs could not be written is
        tried again with an exponential backoff (250 ms up to 60 s), never dropped."""
        attempts = self._reconfigure_attempts.get(name, 0) + 1
        self._reconfigure_attempts[name] = attempts
        delay = min(RECONFIGURE_BACKOFF_MAX_S, RECONFIGURE_BACKOFF_S * 2 ** (attempts - 1))
        log.warning("connector %s: writing its task configs failed (%s); trying again in "
                    "%.2f s", name, error, delay)
        with self._reconfigure_lock:
            self._reconfigure_at[name] = time.monotonic() + delay

    async def _reconfigure_due(self) -> None:
        now = time.monotonic()
        with self._reconfigure_lock:
            due = sorted(n for n, at in self._reconfigure_at.items() if at <= now)
            for name in due:
                del self._reconfigure_at[name]
        for name in due:
            async with self._lock:
                connector = self.worker.connectors.get(name)
                if connector is not None and connector.instance is not None:
                    await self._update_task_configs(connector)

    async def _apply_restart(self, key: str, value: Mapping[str, Any]) -> None:
        if key.startswith("restart-task-"):
            name, _, number = key[len("restart-task-"):].rpartition("-")
            tid = (name, int(number))
            task = self.worker.tasks.get(tid)
            if task is not None:
                await self.worker.stop_task(tid)
                self._start_task(tid, task.task_config)
            return
        name = key[len("restart-connector-"):]
        only_failed = bool(value.get("only-failed"))
        include_tasks = bool(value.get("include-tasks"))
        connector = self.worker.connectors.get(name)
        if connector is not None and (not only_failed or connector.status.state == State.FAILED):
            await self._stop_connector_only(name)
            await self._ensure_connector(name)
        if include_tasks:
            for task in list(self.worker.tasks_of(name)):
                if not only_failed or task.status.state == State.FAILED:
                    await self.worker.stop_task(task.id)
                    self._start_task(task.id, task.task_config)

    async def _publish_statuses(self) -> None:
        current: dict[str, dict[str, Any]] = {}
        for name, connector in self.worker.connectors.items():
            current[f"status-connector-{name}"] = _status_json(connector.status, self.generation)
        for (name, number), task in self.worker.tasks.items():
            current[f"status-task-{name}-{number}"] = _status_json(task.status, self.generation)
        changed = [(k, v) for k, v in current.items()
                   if {**self.published.get(k, {}), "generation": 0} != {**v, "generation": 0}]
        # As Kafka's onShutdown: what this worker stopped while its connector still exists
        # (moved to another worker, stopped) is UNASSIGNED, which lets the leader assign a
        # moved one to its new worker (DistributedHerder._lead); a FAILED status stays.
        for key, value in list(self.published.items()):
            if key not in current:
                del self.published[key]
                if (value.get("state") != State.FAILED.value
                        and self._connector_of_status(key) in self.configs):
                    changed.append((key, {**value, "state": State.UNASSIGNED.value,
                                          "trace": None, "generation": self.generation}))
        if changed:
            await asyncio.to_thread(self.status_log.send, changed, False)
            self.published.update((k, v) for k, v in changed if k in current)

    @staticmethod
    def _connector_of_status(key: str) -> str:
        if key.startswith("status-connector-"):
            return key.removeprefix("status-connector-")
        return key.removeprefix("status-task-").rpartition("-")[0]

    def rebalance_state(self) -> RebalanceState:
        """For /metrics: rebalancing while the group rebalances, the worker is out of it, or
        the assignment does not name it yet."""
        membership = self.membership
        return RebalanceState(
            completed=self.rebalances,
            rebalancing=(membership.rebalancing or not membership.member
                         or self.config.worker_id not in self.assignment),
            generation=self.generation, leader=membership.leader)

    # --- REST: reads ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.leading

    def leader_url(self) -> str | None:
        return f"http://{self.leader_id}" if self.leader_id else None

    async def connector_status(self, name: str) -> dict[str, Any]:
        self._require(name)
        if self.target.get(name) == TargetState.STOPPED and name not in self.worker.connectors:
            connector = {"state": State.STOPPED.value,
                         "worker_id": self._owner(name) or self.config.worker_id}
        else:
            connector = self._status(f"status-connector-{name}", self._owner(name))
        tasks = [{"id": i, **self._status(f"status-task-{name}-{i}", self._owner((name, i)))}
                 for i in range(len(self.task_config_map.get(name, [])))]
        return {"name": name, "connector": connector, "tasks": tasks, "type": self._type(name)}

    async def task_status(self, name: str, task: int) -> dict[str, Any]:
        self._require(name)
        if not 0 <= task < len(self.task_config_map.get(name, [])):
            raise NotFound(f"Task {name}-{task} not found")
        return {"id": task, **self._status(f"status-task-{name}-{task}",
                                           self._owner((name, task)))}

    async def connector_offsets(self, name: str) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.offset_store.read_to_end)
        return await super().connector_offsets(name)

    # --- REST: writes (on the leader) -------------------------------------------------------

    def _require_leader(self) -> None:
        if not self.leading:
            raise Conflict(REBALANCING)

    async def _write(self, records: list[tuple[str, Any]]) -> None:
        await self._leader_write(records)

    async def put_connector_config(self, name: str, config: Mapping[str, str],
                                   allow_replace: bool,
                                   initial_state: TargetState | None = None
                                   ) -> tuple[bool, ConnectorInfo]:
        self._require_leader()
        config = {**config, "name": name}
        exists = name in self.configs
        if exists and not allow_replace:
            from strom.connect.states import AlreadyExists
            raise AlreadyExists(f"Connector {name} already exists")
        check_connector_config(config, self.config.exactly_once_source,
                               self.config.override_policy)
        records: list[tuple[str, Any]] = [(f"connector-{name}", {"properties": config})]
        if not exists:
            state = (initial_state or TargetState.STARTED).value
            records.insert(0, (f"target-state-{name}", {"state": state, "state.v2": state}))
        await self._write(records)
        return not exists, await self.connector_info(name)

    async def delete_connector(self, name: str) -> None:
        self._require_leader()
        self._require(name)
        count = len(self.task_config_map.get(name, []))
        await self._write([(f"connector-{name}", None), (f"target-state-{name}", None)])
        await asyncio.to_thread(self.status_log.send, [
            (f"status-connector-{name}", None),
            *((f"status-task-{name}-{i}", None) for i in range(count))], False)

    async def set_target_state(self, name: str, state: TargetState) -> None:
        self._require_leader()
        self._require(name)
        await self._write([(f"target-state-{name}", {"state": state.value,
                                                     "state.v2": state.value})])

    async def restart_connector(self, name: str, include_tasks: bool, only_failed: bool
                                ) -> dict[str, Any] | None:
        self._require_leader()
        self._require(name)
        status = await self.connector_status(name)
        await self._write([(f"restart-connector-{name}", {"include-tasks": include_tasks,
                                                          "only-failed": only_failed})])
        if not include_tasks and not only_failed:
            return None
        if not only_failed or status["connector"]["state"] == State.FAILED.value:
            status["connector"]["state"] = State.RESTARTING.value
        if include_tasks:
            for task in status["tasks"]:
                if not only_failed or task["state"] == State.FAILED.value:
                    task["state"] = State.RESTARTING.value
        return status

    async def restart_task(self, name: str, task: int) -> None:
        self._require_leader()
        await self.task_status(name, task)
        await self._write([(f"restart-task-{name}-{task}", {})])

    async def alter_offsets(self, name: str, offsets: list[dict[str, Any]] | None) -> None:
        self._require_leader()
        self._require(name)
        self._require_stopped(name)
        # STOPPED, but a worker may not have stopped its tasks yet (their last offset commit
        # would land after ours): as Kafka's leader before the rebalance completes, 409.
        await asyncio.to_thread(self.status_log.read_to_end)
        members = await asyncio.to_thread(self.membership.members) or list(self.assignment)
        stopping = self._stopping_tasks(name, members)
        if stopping:
            raise Conflict(f"Cannot complete request momentarily: the tasks {stopping} of "
                           f"connector {name} are still stopping")
        await asyncio.to_thread(self.offset_store.read_to_end)
        await super().alter_offsets(name, offsets)

    async def set_cluster_logger_level(self, namespace: str, level: str) -> None:
        """As Kafka's workers: any worker writes the record (not forwarded to the leader)."""
        await self._write([(f"{LOGGER_PREFIX}{namespace}", {"level": level})])

    # --- shutdown ---------------------------------------------------------------------------

    async def stop(self) -> None:
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(BaseException):
                await self._ticker
        async with self._lock:
            for tid in list(self.worker.tasks):
                await self.worker.stop_task(tid)
            for name in list(self.worker.connectors):
                await self._stop_connector_only(name)
        # As Kafka's workers on shutdown: what this one ran is UNASSIGNED until it runs again.
        unassigned = [(key, {**value, "state": State.UNASSIGNED.value, "trace": None})
                      for key, value in self.published.items()
                      if value.get("state") != State.FAILED.value]
        if unassigned:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.status_log.send, unassigned, False)
        await asyncio.to_thread(self.membership.stop)
        for store in (self.config_log, self.status_log, self.offset_store):
            await asyncio.to_thread(store.stop)


class DistributedRuntime:
    """A distributed worker: its herder, worker and REST server (with write forwarding)."""

    def __init__(self, props: Mapping[str, str]) -> None:
        from strom.connect.standalone import parse_listeners, worker_id
        self.props = dict(props)
        self.listeners = parse_listeners(self.props.get("listeners"))
        if (not self.props.get("rest.advertised.host.name")
                and self.listeners[0].host in ("0.0.0.0", "::", "")):
            # The other workers forward writes to this address: not "localhost" (Kafka's
            # default is the host's name too).
            import socket
            self.props["rest.advertised.host.name"] = socket.gethostname()
        self.config = WorkerConfig(self.props, worker_id(self.props, self.listeners[0]))
        _ = self.config.override_policy  # a bad policy fails the worker's start
        self.dconfig = DistributedConfig(self.props)
        offsets = KafkaOffsetBackingStore(self.config.client_config("admin"),
                                          self.dconfig.offset_topic)
        self.herder = DistributedHerder(Worker(self.config, offsets), self.dconfig, offsets)
        self.runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        from strom.connect.rest import make_app
        from strom.connect.rest_forward import forwarding_middleware
        from strom.connect.standalone import _cluster_id
        self.herder.cluster_id = await asyncio.to_thread(
            _cluster_id, self.config.bootstrap_servers, self.config)
        await self.herder.start()
        app = make_app(self.herder)
        app.middlewares.insert(0, forwarding_middleware)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        for listener in self.listeners:
            await web.TCPSite(self.runner, listener.host, listener.port).start()
            log.info("REST API listening on http://%s:%d", listener.host, listener.port)

    async def close(self) -> None:
        await self.herder.stop()
        if self.runner is not None:
            await self.runner.cleanup()


async def run_distributed(props: Mapping[str, str], stop: asyncio.Event | None = None) -> None:
    import signal
    runtime = DistributedRuntime(props)
    await runtime.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"strom connect (distributed) worker {runtime.config.worker_id} of group "
          f"{runtime.dconfig.group_id} is running", flush=True)
    try:
        await stop.wait()
    finally:
        await runtime.close()
