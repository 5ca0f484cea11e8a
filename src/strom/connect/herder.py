"""The herder: what the REST API talks to, managing connectors, their configs and tasks.

`Herder` is the interface (Kafka Connect's Herder); `StandaloneHerder` keeps configs in memory
and runs everything on its own worker, as Kafka's standalone mode. A distributed herder
(configs, offsets and statuses in the compacted topics connect-configs / connect-offsets /
connect-status, connectors and tasks balanced over the workers of a group) implements the same
interface (strom.connect.distributed); the REST layer does not change.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strom import __version__
from strom.connect import loggers
from strom.connect.discovery import ConnectorPlugin, PluginNotFound, find_connector
from strom.connect.offsets import OffsetBackingStore, offset_key
from strom.connect.states import (
    AlreadyExists,
    BadRequest,
    Conflict,
    NotFound,
    State,
    Status,
    TargetState,
)
from strom.connect.validation import validate_connector_config
from strom.connect.worker import Worker, WorkerConfig, WorkerConnector, WorkerTask

log = logging.getLogger(__name__)

# The Kafka version this API answers as (Kafka UI reads it from GET /).
KAFKA_VERSION = "3.9.0"


@dataclass
class ConnectorInfo:
    name: str
    config: dict[str, str]
    tasks: list[int]
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config,
                "tasks": [{"connector": self.name, "task": t} for t in self.tasks],
                "type": self.type}


class Herder(ABC):
    """Everything the REST API needs; implemented by the standalone and distributed herders."""

    @abstractmethod
    def server_info(self) -> dict[str, Any]: ...

    @abstractmethod
    async def connectors(self) -> list[str]: ...

    @abstractmethod
    async def connector_info(self, name: str) -> ConnectorInfo: ...

    @abstractmethod
    async def connector_config(self, name: str) -> dict[str, str]: ...

    @abstractmethod
    async def put_connector_config(self, name: str, config: Mapping[str, str],
                                   allow_replace: bool,
                                   initial_state: TargetState | None = None
                                   ) -> tuple[bool, ConnectorInfo]:
        """(created, info); raises AlreadyExists when it exists and not allow_replace.
        `initial_state` (KIP-980) applies to a new connector only."""

    @abstractmethod
    async def delete_connector(self, name: str) -> None: ...

    @abstractmethod
    async def connector_status(self, name: str) -> dict[str, Any]: ...

    @abstractmethod
    async def task_status(self, name: str, task: int) -> dict[str, Any]: ...

    @abstractmethod
    async def task_configs(self, name: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def restart_connector(self, name: str, include_tasks: bool, only_failed: bool
                                ) -> dict[str, Any] | None:
        """None when only the connector was restarted; else the status with RESTARTING."""

    @abstractmethod
    async def restart_task(self, name: str, task: int) -> None: ...

    @abstractmethod
    async def set_target_state(self, name: str, state: TargetState) -> None: ...

    @abstractmethod
    async def active_topics(self, name: str) -> list[str]: ...

    @abstractmethod
    async def reset_active_topics(self, name: str) -> None: ...

    @abstractmethod
    async def connector_offsets(self, name: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def alter_offsets(self, name: str, offsets: list[dict[str, Any]] | None) -> None:
        """Set (or, offsets None, reset) a STOPPED connector's offsets."""

    async def validate(self, plugin: str, config: Mapping[str, str]) -> dict[str, Any]:
        return validate_connector_config(plugin, config)

    async def metrics(self) -> bytes:
        """GET /metrics: the worker's metrics in Prometheus' text format."""
        raise NotFound("This herder has no metrics")

    async def set_cluster_logger_level(self, namespace: str, level: str) -> None:
        """PUT /admin/loggers/{namespace}?scope=cluster (KIP-976): on every worker of the
        cluster; a standalone worker is a cluster of one."""
        parsed = loggers.parse_level(level)
        if parsed is None:
            raise BadRequest(f"invalid log level '{level}'.")
        loggers.set_level(namespace, parsed)


class StandaloneHerder(Herder):
    def __init__(self, worker: Worker, cluster_id: str | None = None) -> None:
        self.worker = worker
        self.cluster_id = cluster_id
        worker._reconfigure = self._request_reconfiguration
        self.configs: dict[str, dict[str, str]] = {}
        self.target: dict[str, TargetState] = {}
        self.task_config_map: dict[str, list[dict[str, str]]] = {}
        self.plugins: dict[str, ConnectorPlugin] = {}
        self._lock = asyncio.Lock()
        # Reconfigurations the connectors requested, still running (kept so they are not
        # garbage-collected, and cancelled at stop).
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> WorkerConfig:
        return self.worker.config

    def server_info(self) -> dict[str, Any]:
        return {"version": KAFKA_VERSION, "commit": f"strom-{__version__}",
                "kafka_cluster_id": self.cluster_id or ""}

    async def metrics(self) -> bytes:
        return await self.worker.scrape()

    async def validate(self, plugin: str, config: Mapping[str, str]) -> dict[str, Any]:
        return validate_connector_config(plugin, config, self.config.exactly_once_source,
                                         self.config.override_policy)

    def _require(self, name: str) -> dict[str, str]:
        if name not in self.configs:
            raise NotFound(f"Connector {name} not found")
        return self.configs[name]

    def _connector(self, name: str) -> WorkerConnector | None:
        return self.worker.connectors.get(name)

    async def connectors(self) -> list[str]:
        return sorted(self.configs)

    def _type(self, name: str) -> str:
        plugin = self.plugins.get(name)
        return plugin.type if plugin is not None else "unknown"

    async def connector_info(self, name: str) -> ConnectorInfo:
        config = self._require(name)
        tasks = list(range(len(self.task_config_map.get(name, []))))
        return ConnectorInfo(name, dict(config), tasks, self._type(name))

    async def connector_config(self, name: str) -> dict[str, str]:
        return dict(self._require(name))

    async def put_connector_config(self, name: str, config: Mapping[str, str],
                                   allow_replace: bool,
                                   initial_state: TargetState | None = None
                                   ) -> tuple[bool, ConnectorInfo]:
        config = {**config, "name": name}
        async with self._lock:
            exists = name in self.configs
            if exists and not allow_replace:
                raise AlreadyExists(f"Connector {name} already exists")
            class_name = check_connector_config(config, self.config.exactly_once_source,
                                                self.config.override_policy)
            if exists:
                await self._stop_connector(name)
            self.configs[name] = config
            self.plugins[name] = find_connector(class_name)
            self.target.setdefault(name, initial_state or TargetState.STARTED)
            await self._start_connector(name)
        return not exists, await self.connector_info(name)

    async def _start_connector(self, name: str) -> None:
        target = self.target[name]
        if target == TargetState.STOPPED:
            self.task_config_map[name] = []
            return
        connector = WorkerConnector(self.worker, name, self.plugins[name].cls,
                                    self.configs[name])
        self.worker.connectors[name] = connector
        if await connector.start(paused=target == TargetState.PAUSED):
            await self._update_tasks(name)

    async def _update_tasks(self, name: str) -> None:
        """Kafka's updateConnectorTasks: the running connector's task configs; its tasks are
        restarted when they changed, and the missing ones started."""
        connector = self._connector(name)
        if connector is None or connector.instance is None:
            return
        try:
            configs = connector.task_configs()
        except Exception as error:
            log.error("connector %s failed to generate its task configs", name, exc_info=error)
            connector.status = Status(State.FAILED, self.config.worker_id,
                                      "".join(_trace(error)))
            return
        paused = self.target.get(name) == TargetState.PAUSED
        if configs != self.task_config_map.get(name):
            await self.worker.stop_tasks(name)
            self.task_config_map[name] = configs
        for task_id, task_config in enumerate(configs):
            if (name, task_id) not in self.worker.tasks:
                self.worker.start_task(connector, task_id, task_config, paused)

    async def _stop_connector(self, name: str) -> None:
        await self.worker.stop_tasks(name)
        connector = self.worker.connectors.pop(name, None)
        if connector is not None:
            await connector.stop()

    def _request_reconfiguration(self, name: str) -> None:
        pending = asyncio.get_running_loop().create_task(
            self._reconfigure(name), name=f"connect-reconfigure-{name}")
        self._pending.add(pending)
        pending.add_done_callback(self._reconfigured)

    def _reconfigured(self, pending: asyncio.Task[None]) -> None:
        self._pending.discard(pending)
        if not pending.cancelled() and pending.exception() is not None:
            log.error("reconfiguring the tasks of a connector failed",
                      exc_info=pending.exception())

    async def _reconfigure(self, name: str) -> None:
        async with self._lock:
            if name in self.configs and self.target.get(name) != TargetState.STOPPED:
                await self._update_tasks(name)

    async def delete_connector(self, name: str) -> None:
        async with self._lock:
            self._require(name)
            await self._stop_connector(name)
            for mapping in (self.configs, self.target, self.task_config_map, self.plugins):
                mapping.pop(name, None)
            self.worker.active_topics.pop(name, None)

    def _connector_status(self, name: str) -> Status:
        connector = self._connector(name)
        if self.target.get(name) == TargetState.STOPPED:
            return Status(State.STOPPED, self.config.worker_id)
        if connector is None:
            return Status(State.UNASSIGNED, self.config.worker_id)
        return connector.status

    def _task_json(self, task: WorkerTask) -> dict[str, Any]:
        return {"id": task.task_id, **task.status.to_json()}

    async def connector_status(self, name: str) -> dict[str, Any]:
        self._require(name)
        tasks = [self._task_json(t) for t in self.worker.tasks_of(name)]
        return {"name": name, "connector": self._connector_status(name).to_json(),
                "tasks": tasks, "type": self._type(name)}

    def _task(self, name: str, task: int) -> WorkerTask:
        self._require(name)
        found = self.worker.tasks.get((name, task))
        if found is None:
            raise NotFound(f"Task {name}-{task} not found")
        return found

    async def task_status(self, name: str, task: int) -> dict[str, Any]:
        return self._task_json(self._task(name, task))

    async def task_configs(self, name: str) -> list[dict[str, Any]]:
        self._require(name)
        return [{"id": {"connector": name, "task": i}, "config": config}
                for i, config in enumerate(self.task_config_map.get(name, []))]

    async def restart_connector(self, name: str, include_tasks: bool, only_failed: bool
                                ) -> dict[str, Any] | None:
        async with self._lock:
            self._require(name)
            connector = self._connector(name)
            restart_connector = (not only_failed or connector is None
                                 or connector.status.state == State.FAILED)
            tasks = [t for t in self.worker.tasks_of(name)
                     if include_tasks and (not only_failed or t.status.state == State.FAILED)]
            if not include_tasks and not only_failed:
                await self._restart_connector_only(name)
                return None
            status = await self.connector_status(name)
            if restart_connector:
                status["connector"]["state"] = State.RESTARTING.value
            restarting = {t.task_id for t in tasks}
            for task_json in status["tasks"]:
                if task_json["id"] in restarting:
                    task_json["state"] = State.RESTARTING.value
            if restart_connector and include_tasks and not only_failed:
                await self._stop_connector(name)
                await self._start_connector(name)
                return status
            if restart_connector:
                await self._restart_connector_only(name)
            for task in tasks:
                await self._restart_task(name, task.task_id)
            return status

    async def _restart_connector_only(self, name: str) -> None:
        connector = self.worker.connectors.pop(name, None)
        if connector is not None:
            await connector.stop()
        if self.target.get(name) == TargetState.STOPPED:
            return
        connector = WorkerConnector(self.worker, name, self.plugins[name].cls,
                                    self.configs[name])
        self.worker.connectors[name] = connector
        # As Kafka's (and the distributed herder's): a restarted connector's task configs are
        # regenerated, changed tasks restarted and missing ones (a connector whose start had
        # failed has none) started.
        if await connector.start(paused=self.target.get(name) == TargetState.PAUSED):
            await self._update_tasks(name)

    async def _restart_task(self, name: str, task_id: int) -> None:
        connector = self._connector(name)
        configs = self.task_config_map.get(name, [])
        await self.worker.stop_task((name, task_id))
        if connector is None or connector.instance is None or task_id >= len(configs):
            return
        self.worker.start_task(connector, task_id, configs[task_id],
                               paused=self.target.get(name) == TargetState.PAUSED)

    async def restart_task(self, name: str, task: int) -> None:
        async with self._lock:
            self._task(name, task)
            await self._restart_task(name, task)

    async def set_target_state(self, name: str, state: TargetState) -> None:
        async with self._lock:
            self._require(name)
            previous = self.target.get(name, TargetState.STARTED)
            self.target[name] = state
            if state == TargetState.STOPPED:
                await self._stop_connector(name)
                self.task_config_map[name] = []
                return
            if previous == TargetState.STOPPED or self._connector(name) is None:
                await self._start_connector(name)
                return
            connector = self._connector(name)
            assert connector is not None
            for task in self.worker.tasks_of(name):
                task.pause() if state == TargetState.PAUSED else task.resume()
            if connector.status.state in (State.RUNNING, State.PAUSED):
                connector.status = Status(State.PAUSED if state == TargetState.PAUSED
                                          else State.RUNNING, self.config.worker_id)

    async def active_topics(self, name: str) -> list[str]:
        self._require(name)
        return sorted(self.worker.active_topics.get(name, set()))

    async def reset_active_topics(self, name: str) -> None:
        self._require(name)
        self.worker.active_topics.pop(name, None)

    def _require_stopped(self, name: str) -> None:
        if self.target.get(name) != TargetState.STOPPED:
            raise BadRequest("Connectors must be in the STOPPED state before their offsets "
                             "can be modified. This can be done for the specified connector "
                             "by issuing a 'PUT' request to the '/connectors/" + name
                             + "/stop' endpoint")

    @property
    def offsets(self) -> OffsetBackingStore:
        return self.worker.offsets

    async def connector_offsets(self, name: str) -> list[dict[str, Any]]:
        self._require(name)
        if self.plugins[name].type == "sink":
            return await asyncio.to_thread(self._sink_offsets, name)
        return [{"partition": partition, "offset": offset}
                for partition, offset in self.offsets.connector_offsets(name)]

    def _group(self, name: str) -> str:
        return self.configs[name].get("consumer.override.group.id", f"connect-{name}")

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient
        return AdminClient(self.config.client_config("admin"))

    def _sink_offsets(self, name: str) -> list[dict[str, Any]]:
        from confluent_kafka import ConsumerGroupTopicPartitions
        admin = self._admin()
        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(self._group(name))])
        out = []
        for future in futures.values():
            try:
                result = future.result(10)
            except Exception:
                return []
            for tp in result.topic_partitions or []:
                if tp.offset >= 0:
                    out.append({"partition": {"kafka_topic": tp.topic,
                                              "kafka_partition": tp.partition},
                                "offset": {"kafka_offset": tp.offset}})
        return sorted(out, key=lambda o: (o["partition"]["kafka_topic"],
                                          o["partition"]["kafka_partition"]))

    async def alter_offsets(self, name: str, offsets: list[dict[str, Any]] | None) -> None:
        async with self._lock:
            self._require(name)
            self._require_stopped(name)
            if self.plugins[name].type == "sink":
                await asyncio.to_thread(self._alter_sink_offsets, name, offsets)
                return
            if offsets is None:
                values: dict[str, Any] = {key: None for key in (
                    offset_key(name, p) for p, _ in self.offsets.connector_offsets(name))}
            else:
                values = {}
                for entry in offsets:
                    partition = entry.get("partition")
                    if not isinstance(partition, dict):
                        raise BadRequest("Source partitions may not be null")
                    offset = entry.get("offset")
                    if offset is not None and not isinstance(offset, dict):
                        raise BadRequest("Source offsets must be objects")
                    values[offset_key(name, partition)] = offset
            await asyncio.to_thread(self.offsets.set, values)

    def _alter_sink_offsets(self, name: str, offsets: list[dict[str, Any]] | None) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        admin = self._admin()
        group = self._group(name)
        if offsets is None:
            for future in admin.delete_consumer_groups([group]).values():
                try:
                    future.result(10)
                except Exception as error:
                    if "GROUP_ID_NOT_FOUND" not in str(error):
                        raise BadRequest(f"Failed to reset offsets of {name}: {error}") from error
            return
        parts = []
        for entry in offsets:
            partition = entry.get("partition") or {}
            topic = partition.get("kafka_topic")
            number = partition.get("kafka_partition")
            if not isinstance(topic, str) or not isinstance(number, int):
                raise BadRequest("Partitions of sink connectors must have kafka_topic and "
                                 "kafka_partition")
            offset = entry.get("offset")
            value = offset.get("kafka_offset") if isinstance(offset, dict) else None
            if offset is not None and not isinstance(value, int):
                raise BadRequest("Offsets of sink connectors must have a kafka_offset")
            if value is None:
                raise BadRequest("Resetting one partition of a sink connector's offsets is not "
                                 "supported yet: DELETE /offsets resets them all")
            parts.append(TopicPartition(topic, number, value))
        futures = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, parts)])
        for future in futures.values():
            future.result(10)

    async def stop(self) -> None:
        for pending in list(self._pending):
            pending.cancel()
        for name in list(self.worker.connectors):
            await self._stop_connector(name)


def check_connector_config(config: Mapping[str, str], exactly_once_source: bool = False,
                           override_policy: str = "All") -> str:
    """The connector's class name; BadRequest (Kafka's messages) when the config is invalid.
    `exactly_once_source`: the worker's exactly.once.source.support is enabled (KIP-618's
    exactly.once.support / transaction.boundary checks); `override_policy`: the worker's
    connector.client.config.override.policy."""
    class_name = config.get("connector.class")
    if not class_name:
        raise BadRequest("Connector config {...} contains no connector type"
                         .replace("{...}", str(dict(config))))
    result = validate_connector_config(class_name, config, exactly_once_source,
                                       override_policy)
    if result["error_count"]:
        messages = [f"{c['value']['name']}: {e}" for c in result["configs"]
                    for e in c["value"]["errors"]]
        raise BadRequest(f"Connector configuration is invalid and contains the "
                         f"following {result['error_count']} error(s):\n"
                         + "\n".join(messages)
                         + "\nYou can also find the above list of errors at the "
                           "endpoint `/connector-plugins/{connectorType}/config/"
                           "validate`")
    return class_name


def _trace(error: BaseException) -> list[str]:
    import traceback
    return traceback.format_exception(type(error), error, error.__traceback__)


__all__ = ["Conflict", "Herder", "PluginNotFound", "StandaloneHerder"]
