"""The topics an engine serves, in memory: names, ids, configs and partition logs, with the
lookups the StorageEngine protocol answers synchronously (every engine keeps its topic
metadata in memory and writes it through to its own storage)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from strom.config.topic import LogConfig
from strom.storage.api import PartitionSize, TopicInfo, UnknownTopic


class RegisteredLog(Protocol):
    partition: int
    config: LogConfig

    @property
    def size_bytes(self) -> int: ...


LogT = TypeVar("LogT", bound=RegisteredLog)


class TopicRegistry(Generic[LogT]):
    def __init__(self) -> None:
        self._infos: dict[str, TopicInfo] = {}
        self._view = MappingProxyType(self._infos)
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self._configs: dict[str, LogConfig] = {}
        self.logs: dict[str, list[LogT]] = {}

    def topics(self) -> Mapping[str, TopicInfo]:
        """A live, read-only view."""
        return self._view

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def info(self, name: str) -> TopicInfo:
        info = self._infos.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return info

    def register(self, info: TopicInfo, config: LogConfig, logs: list[LogT]) -> TopicInfo:
        """Adds or replaces the topic; its logs take `config`."""
        self._infos[info.name] = info
        self._by_id[info.topic_id] = info
        self._configs[info.name] = config
        self.logs[info.name] = logs
        for plog in logs:
            plog.config = config
        return info

    def drop(self, name: str) -> list[LogT]:
        """Forgets the topic; returns its logs."""
        info = self._infos.pop(name)
        del self._by_id[info.topic_id], self._configs[name]
        return self.logs.pop(name)

    def clear(self) -> None:
        self._infos.clear()
        self._by_id.clear()
        self._configs.clear()
        self.logs.clear()

    def partition(self, name: str, index: int) -> LogT:
        logs = self.logs.get(name)
        if logs is None or not 0 <= index < len(logs):
            raise UnknownTopic(f"unknown topic partition {name}-{index}")
        return logs[index]

    def log_config(self, name: str) -> LogConfig:
        config = self._configs.get(name)
        if config is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return config

    def partition_sizes(self) -> Sequence[PartitionSize]:
        return [PartitionSize(name, p.partition, p.size_bytes)
                for name, logs in self.logs.items() for p in logs]

    def all_logs(self) -> list[LogT]:
        return [p for logs in self.logs.values() for p in logs]
