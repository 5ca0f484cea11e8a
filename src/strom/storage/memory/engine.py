"""MemoryEngine (`--storage memory:`): topics and their logs in the broker's memory, for tests
and notebooks. Nothing survives a restart: a new engine is a new, empty cluster (with a new
cluster id). Memory grows with what is produced, bounded only by retention."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.config.topic import LogConfig
from strom.storage.api import (
    BrokerRegistration,
    LogDirDescription,
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
from strom.storage.metadata_records import MemoryRecords
from strom.storage.single_broker import SingleBrokerLeadership
from strom.storage.topic_registry import TopicRegistry
from strom.storage.waiters import DataWaiters


class MemoryEngine(SingleBrokerLeadership):
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._cluster_id = new_cluster_id()
        self._brokers: dict[int, BrokerRegistration] = {}
        self._metadata = MemoryRecords()
        self._registry: TopicRegistry[MemoryPartitionLog] = TopicRegistry()
        self._waiters = DataWaiters()
        self._next_producer_id = 0
        self._opened = False

    async def open(self) -> None:
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        for plog in self._registry.all_logs():
            plog.closed = True
        self._registry.clear()

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

    async def read_metadata(self, kind: str) -> dict[str, str]:
        return await self._metadata.read(kind)

    async def write_metadata(self, kind: str, puts: Mapping[str, str],
                             deletes: Sequence[str]) -> None:
        self._check_opened()
        await self._metadata.write(kind, puts, deletes)

    async def reserve_producer_ids(self, count: int) -> int:
        first = self._next_producer_id
        self._next_producer_id += count
        return first

    # -- topics -----------------------------------------------------------------------------

    def topics(self) -> Mapping[str, TopicInfo]:
        return self._registry.topics()

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._registry.topic_by_id(topic_id)

    def _new_logs(self, name: str, config: LogConfig, first: int,
                  total: int) -> list[MemoryPartitionLog]:
        expiration = self.config.get_int("producer.id.expiration.ms")
        return [MemoryPartitionLog(name, p, config, expiration, self._waiters.notify)
                for p in range(first, total)]

    async def create_topic(self, name: str, partitions: int, configs: Mapping[str, str],
                           replication_factor: int = 1) -> TopicInfo:
        self._check_opened()
        check_topic_name(name)
        check_partition_count(name, partitions)
        if name in self._registry.topics():
            raise TopicExists(f"topic {name!r} already exists")
        info = TopicInfo(name, uuid.uuid4(), partitions, dict(configs))
        config = self.config.log_config(info.configs)
        return self._registry.register(info, config, self._new_logs(name, config, 0, partitions))

    async def delete_topic(self, name: str) -> None:
        self._check_opened()
        self._registry.info(name)
        for plog in self._registry.drop(name):
            plog.closed = True

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        self._check_opened()
        info = self._registry.info(name)
        if total <= info.partitions:
            raise ValueError(f"topic {name!r} has {plural(info.partitions, 'partition')}; "
                             f"the new count must be larger, not {total}")
        check_partition_count(name, total)
        config = self._registry.log_config(name)
        logs = self._registry.logs[name] + self._new_logs(name, config, info.partitions, total)
        return self._registry.register(replace(info, partitions=total), config, logs)

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        self._check_opened()
        info = replace(self._registry.info(name), configs=dict(configs))
        return self._registry.register(info, self.config.log_config(info.configs),
                                       self._registry.logs[name])

    def partition(self, name: str, index: int) -> MemoryPartitionLog:
        return self._registry.partition(name, index)

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        return {}

    def log_config(self, name: str) -> LogConfig:
        return self._registry.log_config(name)

    def partition_sizes(self) -> Sequence[PartitionSize]:
        return self._registry.partition_sizes()

    async def describe_log_dir(self) -> LogDirDescription:
        """`memory:`, every partition; no volume, so its space is unknown (-1)."""
        return LogDirDescription("memory:", partitions=self.partition_sizes())

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
        return sum(p.run_retention(now_ms) for p in self._registry.all_logs())

    async def run_cleaner(self, now_ms: int) -> int:
        limit = self.config.get_int("message.max.decompressed.bytes")
        cleaned = 0
        for name, logs in self._registry.logs.items():
            if compacts(self._registry.log_config(name).cleanup_policy):
                cleaned += sum(compact(p, now_ms, limit) for p in logs)
        return cleaned

    async def flush_due(self, now_ms: int) -> None:
        return None  # nothing to flush: memory is all there is


if TYPE_CHECKING:  # MemoryEngine and MemoryPartitionLog implement the storage protocols
    def _conforms(engine: MemoryEngine, plog: MemoryPartitionLog) -> tuple[StorageEngine,
                                                                            PartitionLog]:
        return engine, plog
