"""MemoryEngine (`--storage memory:`): topics and their logs in the broker's memory, for tests
and notebooks. Nothing survives a restart: a new engine is a new, empty cluster (with a new
cluster id). Memory grows with what is produced, bounded only by retention."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.config.topic import LogConfig
from strom.storage.api import (
    BrokerRegistration,
    PartitionLog,
    PartitionSize,
    StorageEngine,
    StorageError,
    TopicExists,
    TopicInfo,
    UnknownTopic,
)
from strom.storage.local.cleaner import compacts
from strom.storage.local.meta_properties import new_cluster_id
from strom.storage.local.names import check_partition_count, check_topic_name
from strom.storage.memory.compaction import compact
from strom.storage.memory.partition import MemoryPartitionLog
from strom.storage.waiters import DataWaiters


class MemoryEngine:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._cluster_id = new_cluster_id()
        self._brokers: dict[int, BrokerRegistration] = {}
        self._topics: dict[str, TopicInfo] = {}
        self._topics_view = MappingProxyType(self._topics)
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self._logs: dict[str, list[MemoryPartitionLog]] = {}
        self._configs: dict[str, LogConfig] = {}
        self._waiters = DataWaiters()
        self._next_producer_id = 0
        self._opened = False

    async def open(self) -> None:
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        for logs in self._logs.values():
            for plog in logs:
                plog.closed = True
        self._logs.clear()
        self._topics.clear()
        self._by_id.clear()
        self._configs.clear()

    def _check_opened(self) -> None:
        if not self._opened:
            raise StorageError("the storage engine is not open")

    # -- the cluster ------------------------------------------------------------------------

    def cluster_id(self) -> str:
        return self._cluster_id

    async def register_broker(self, registration: BrokerRegistration) -> None:
        self._brokers[registration.node_id] = registration

    async def brokers(self) -> Sequence[BrokerRegistration]:
        return [self._brokers[n] for n in sorted(self._brokers)]

    async def reserve_producer_ids(self, count: int) -> int:
        first = self._next_producer_id
        self._next_producer_id += count
        return first

    # -- topics -----------------------------------------------------------------------------

    def topics(self) -> Mapping[str, TopicInfo]:
        return self._topics_view

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def _info(self, name: str) -> TopicInfo:
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return info

    def _new_logs(self, name: str, config: LogConfig, first: int,
                  total: int) -> list[MemoryPartitionLog]:
        expiration = self.config.get_int("producer.id.expiration.ms")
        return [MemoryPartitionLog(name, p, config, expiration, self._waiters.notify)
                for p in range(first, total)]

    def _register(self, info: TopicInfo, config: LogConfig,
                  logs: list[MemoryPartitionLog]) -> TopicInfo:
        self._topics[info.name] = info
        self._by_id[info.topic_id] = info
        self._configs[info.name] = config
        self._logs[info.name] = logs
        for plog in logs:
            plog.config = config
        return info

    async def create_topic(self, name: str, partitions: int,
                           configs: Mapping[str, str]) -> TopicInfo:
        self._check_opened()
        check_topic_name(name)
        check_partition_count(name, partitions)
        if name in self._topics:
            raise TopicExists(f"topic {name!r} already exists")
        info = TopicInfo(name, uuid.uuid4(), partitions, dict(configs))
        config = self.config.log_config(info.configs)
        return self._register(info, config, self._new_logs(name, config, 0, partitions))

    async def delete_topic(self, name: str) -> None:
        self._check_opened()
        info = self._info(name)
        for plog in self._logs.pop(name):
            plog.closed = True
        del self._topics[name], self._by_id[info.topic_id], self._configs[name]

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        self._check_opened()
        info = self._info(name)
        if total <= info.partitions:
            raise ValueError(f"topic {name!r} has {plural(info.partitions, 'partition')}; "
                             f"the new count must be larger, not {total}")
        check_partition_count(name, total)
        config = self._configs[name]
        logs = self._logs[name] + self._new_logs(name, config, info.partitions, total)
        return self._register(replace(info, partitions=total), config, logs)

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        self._check_opened()
        info = replace(self._info(name), configs=dict(configs))
        return self._register(info, self.config.log_config(info.configs), self._logs[name])

    def partition(self, name: str, index: int) -> MemoryPartitionLog:
        logs = self._logs.get(name)
        if logs is None or not 0 <= index < len(logs):
            raise UnknownTopic(f"unknown topic partition {name}-{index}")
        return logs[index]

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        return {}

    def log_config(self, name: str) -> LogConfig:
        config = self._configs.get(name)
        if config is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return config

    def partition_sizes(self) -> Sequence[PartitionSize]:
        return [PartitionSize(name, p.partition, p.size_bytes)
                for name, logs in self._logs.items() for p in logs]

    # -- waiting, background work -----------------------------------------------------------

    async def wait_for_data(self, seen: Mapping[tuple[str, int], int], timeout_s: float
                            ) -> None:
        await self._waiters.wait(seen, timeout_s, self._high_watermark)

    def _high_watermark(self, key: tuple[str, int]) -> int | None:
        try:
            return self.partition(*key).log_end_offset
        except UnknownTopic:
            return None

    async def run_retention(self, now_ms: int) -> int:
        return sum(p.run_retention(now_ms) for logs in self._logs.values() for p in logs)

    async def run_cleaner(self, now_ms: int) -> int:
        limit = self.config.get_int("message.max.decompressed.bytes")
        cleaned = 0
        for name, logs in self._logs.items():
            if compacts(self._configs[name].cleanup_policy):
                cleaned += sum(compact(p, now_ms, limit) for p in logs)
        return cleaned

    async def flush_due(self, now_ms: int) -> None:
        return None  # nothing to flush: memory is all there is


if TYPE_CHECKING:  # MemoryEngine and MemoryPartitionLog implement the storage protocols
    def _conforms(engine: MemoryEngine, plog: MemoryPartitionLog) -> tuple[StorageEngine,
                                                                            PartitionLog]:
        return engine, plog
