"""PostgresEngine (`--storage postgresql://...`): topics and their logs in PostgreSQL.

At open it creates or checks the schema (schema.py), takes every partition over by moving
its leader epoch up by one (a broker still running on an older epoch can then no longer
append: the next issue turns this into leases), and loads each partition's offsets and
producer state. Topic metadata is read once at open and kept in memory, written through on
every change (one broker owns the cluster's metadata for now). Durability is the database's:
an append is answered after its commit (fsync with synchronous_commit=on).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import asyncpg

from strom.config.broker import BrokerConfig
from strom.config.text import plural
from strom.config.topic import LogConfig
from strom.storage.api import (
    BrokerRegistration,
    Leadership,
    PartitionSize,
    StorageError,
    StorageUnavailable,
    TopicExists,
    TopicInfo,
    UnknownTopic,
)
from strom.storage.local.cleaner import compacts
from strom.storage.local.names import check_partition_count, check_topic_name
from strom.storage.postgres.compaction import CleanerProgress, compact
from strom.storage.postgres.connect import Health, create_pool, redact
from strom.storage.postgres.membership import Membership
from strom.storage.postgres.partition import PostgresPartitionLog, Shared
from strom.storage.postgres.partition_load import reload, write_snapshot
from strom.storage.postgres.partition_maintenance import run_retention
from strom.storage.postgres.schema_setup import ensure_schema
from strom.storage.topic_registry import TopicRegistry
from strom.storage.waiters import DataWaiters

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_BATCHES: Final = 1000
LOAD_CONCURRENCY: Final = 4


class PostgresEngine:
    def __init__(self, url: str, config: BrokerConfig) -> None:
        self.url = url
        self.config = config
        self._pool: Any = None
        self._health = Health(url)
        self._shared: Shared | None = None
        self._cluster_id = ""
        self._registry: TopicRegistry[PostgresPartitionLog] = TopicRegistry()
        self._cleaning: dict[int, CleanerProgress] = {}
        self._waiters = DataWaiters()
        self._members: Membership | None = None
        self._listeners: list[Callable[[], None]] = []

    def __str__(self) -> str:
        return redact(self.url)

    # -- open, close ------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await create_pool(self.url, f"strom node {self.config.node_id}")
        self._health.reconnect_with(self._pool.expire_connections)
        try:
            self._cluster_id = await ensure_schema(self._pool, self.url)
            self._shared = Shared(self._pool, self._health, self._waiters.notify,
                                  self.config.get_int("producer.id.expiration.ms"))
            await self._load_topics()
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    async def _load_topics(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            topics = await conn.fetch("SELECT topic_id, name, partitions, configs "
                                      "FROM strom_topic")
            claimed = await conn.fetch(
                "UPDATE strom_partition SET leader_epoch = leader_epoch + 1 "
                "RETURNING partition_id, topic_id, index, leader_epoch")
        by_topic: dict[uuid.UUID, dict[int, Any]] = {}
        for row in claimed:
            by_topic.setdefault(row["topic_id"], {})[row["index"]] = row
        for t in topics:
            info = TopicInfo(t["name"], t["topic_id"], t["partitions"],
                             json.loads(t["configs"]))
            config = self.config.log_config(info.configs)
            rows = by_topic.get(info.topic_id, {})
            logs = [self._new_log(info.name, rows[i]["partition_id"], i, config,
                                  rows[i]["leader_epoch"]) for i in range(info.partitions)]
            self._registry.register(info, config, logs)
        all_logs = self._registry.all_logs()
        limit = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def load(plog: PostgresPartitionLog) -> None:
            async with limit:
                await reload(plog)

        await asyncio.gather(*(load(p) for p in all_logs))
        if all_logs:
            log.info("loaded %s of %s from PostgreSQL", plural(len(all_logs), "partition"),
                     plural(len(self._registry.topics()), "topic"))

    async def close(self) -> None:
        if self._members is not None:
            await self._members.leave()
            self._members = None
        logs = self._all_logs()
        await asyncio.gather(*(p.drain() for p in logs), return_exceptions=True)
        if self._pool is not None:
            for plog in logs:
                try:
                    if plog.since_snapshot:
                        await write_snapshot(plog)
                except StorageError as exc:
                    log.warning("%s: producer snapshot not written at close: %s", plog.name,
                                exc)
                    break
            for plog in logs:
                plog.closed = True
            await self._pool.close()
            self._pool = None
        self._registry.clear()

    def _check_opened(self) -> Any:
        if self._pool is None:
            raise StorageError("the storage engine is not open")
        return self._pool

    # -- the cluster ------------------------------------------------------------------------

    def cluster_id(self) -> str:
        return self._cluster_id

    async def register_broker(self, registration: BrokerRegistration) -> None:
        """Registers this broker's session (membership.py); raises StartupError if a live
        broker elsewhere holds its node id."""
        self._check_opened()
        await self._membership().register(registration)

    async def brokers(self) -> Sequence[BrokerRegistration]:
        """The live brokers as of the last heartbeat (read from the database then, so
        Metadata costs no query and keeps answering while the database does not)."""
        membership = self._membership()
        if not membership.live:
            return await membership.refresh()
        return membership.live

    def _membership(self) -> Membership:
        if self._members is None:
            self._members = Membership(
                self._check_opened(), self._health,
                self.config.get_int("broker.heartbeat.interval.ms"),
                self.config.get_int("broker.session.timeout.ms"))
        return self._members

    async def reserve_producer_ids(self, count: int) -> int:
        pool = self._check_opened()
        with self._health.statement("reserve producer ids"):
            end = await pool.fetchval("UPDATE strom_cluster SET next_producer_id = "
                                      "next_producer_id + $1 RETURNING next_producer_id", count)
        return int(end) - count

    # -- topics -----------------------------------------------------------------------------

    def topics(self) -> Mapping[str, TopicInfo]:
        return self._registry.topics()

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._registry.topic_by_id(topic_id)

    def _new_log(self, name: str, partition_id: int, index: int, config: LogConfig,
                 epoch: int) -> PostgresPartitionLog:
        assert self._shared is not None
        return PostgresPartitionLog(self._shared, name, index, partition_id, config, epoch)

    async def _add_partitions(self, conn: Any, info: TopicInfo, first: int, total: int,
                              config: LogConfig) -> list[PostgresPartitionLog]:
        rows = await conn.fetch(
            "INSERT INTO strom_partition (topic_id, index) SELECT $1, i "
            "FROM generate_series($2::int, $3::int - 1) AS i "
            "RETURNING partition_id, index, leader_epoch", info.topic_id, first, total)
        rows = sorted(rows, key=lambda r: r["index"])
        return [self._new_log(info.name, r["partition_id"], r["index"], config,
                              r["leader_epoch"]) for r in rows]

    async def create_topic(self, name: str, partitions: int, configs: Mapping[str, str],
                           replication_factor: int = 1) -> TopicInfo:
        pool = self._check_opened()
        check_topic_name(name)
        check_partition_count(name, partitions)
        if name in self._registry.topics():
            raise TopicExists(f"topic {name!r} already exists")
        info = TopicInfo(name, uuid.uuid4(), partitions, dict(configs))
        config = self.config.log_config(info.configs)
        with self._health.statement(f"create topic {name!r}"):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "INSERT INTO strom_topic (topic_id, name, partitions, configs) "
                        "VALUES ($1, $2, $3, $4::jsonb)", info.topic_id, name, partitions,
                        json.dumps(info.configs))
                    logs = await self._add_partitions(conn, info, 0, partitions, config)
            except asyncpg.UniqueViolationError:
                raise TopicExists(f"topic {name!r} already exists") from None
        for plog in logs:
            plog.mark_new()
        return self._registry.register(info, config, logs)

    async def delete_topic(self, name: str) -> None:
        pool = self._check_opened()
        info = self._registry.info(name)
        ids = [p.partition_id for p in self._registry.logs[name]]
        with self._health.statement(f"delete topic {name!r}"):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM strom_batch WHERE partition_id = ANY($1)", ids)
                await conn.execute("DELETE FROM strom_producer_snapshot "
                                   "WHERE partition_id = ANY($1)", ids)
                await conn.execute("DELETE FROM strom_topic WHERE topic_id = $1",
                                   info.topic_id)
        for plog in self._registry.drop(name):
            plog.closed = True
            self._cleaning.pop(plog.partition_id, None)

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        pool = self._check_opened()
        info = self._registry.info(name)
        if total <= info.partitions:
            raise ValueError(f"topic {name!r} has {plural(info.partitions, 'partition')}; "
                             f"the new count must be larger, not {total}")
        check_partition_count(name, total)
        config = self._registry.log_config(name)
        with self._health.statement(f"add partitions to {name!r}"):
            async with pool.acquire() as conn, conn.transaction():
                added = await self._add_partitions(conn, info, info.partitions, total, config)
                await conn.execute("UPDATE strom_topic SET partitions = $2 WHERE topic_id = $1",
                                   info.topic_id, total)
        for plog in added:
            plog.mark_new()
        return self._registry.register(replace(info, partitions=total), config,
                                       self._registry.logs[name] + added)

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        pool = self._check_opened()
        info = replace(self._registry.info(name), configs=dict(configs))
        with self._health.statement(f"configure topic {name!r}"):
            await pool.execute("UPDATE strom_topic SET configs = $2::jsonb WHERE topic_id = $1",
                               info.topic_id, json.dumps(info.configs))
        return self._registry.register(info, self.config.log_config(info.configs),
                                       self._registry.logs[name])

    def partition(self, name: str, index: int) -> PostgresPartitionLog:
        return self._registry.partition(name, index)

    def leadership(self, name: str, index: int) -> Leadership:
        plog = self._registry.partition(name, index)
        node = self.config.node_id
        return Leadership(node, plog.leader_epoch, (node,))

    def on_leadership_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def reassign(self, name: str, index: int, replicas: Sequence[int] | None) -> None:
        self._registry.partition(name, index)
        node = self.config.node_id
        if replicas is not None and set(replicas) != {node}:
            raise ValueError(f"the only broker is node {node}; replicas "
                             f"{list(replicas)} name others")

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        return {}  # a topic's rows go with it, in one transaction

    def log_config(self, name: str) -> LogConfig:
        return self._registry.log_config(name)

    def partition_sizes(self) -> Sequence[PartitionSize]:
        return self._registry.partition_sizes()

    # -- waiting, background work -----------------------------------------------------------

    async def wait_for_data(self, seen: Mapping[tuple[str, int], int], timeout_s: float
                            ) -> None:
        await self._waiters.wait(seen, timeout_s, self._high_watermark)

    def _high_watermark(self, key: tuple[str, int]) -> int | None:
        try:
            return self.partition(*key).committed
        except UnknownTopic:
            return None

    def _all_logs(self) -> list[PostgresPartitionLog]:
        return self._registry.all_logs()

    async def run_retention(self, now_ms: int) -> int:
        deleted = 0
        for plog in self._all_logs():
            try:
                deleted += await run_retention(plog, now_ms)
            except StorageUnavailable as exc:
                log.warning("retention pass stopped: %s", exc)
                break
        return deleted

    async def run_cleaner(self, now_ms: int) -> int:
        limit = self.config.get_int("message.max.decompressed.bytes")
        budget = self.config.get_int("log.cleaner.dedupe.buffer.size")
        cleaned = 0
        for name, logs in list(self._registry.logs.items()):
            if not compacts(self._registry.log_config(name).cleanup_policy):
                continue
            for plog in logs:
                progress = self._cleaning.setdefault(plog.partition_id, CleanerProgress())
                try:
                    cleaned += await compact(plog, progress, now_ms, budget, limit)
                except StorageUnavailable as exc:
                    log.warning("cleaner pass stopped: %s", exc)
                    return cleaned
        return cleaned

    async def flush_due(self, now_ms: int) -> None:
        """Nothing to flush (commits are durable); writes the producer state snapshots due."""
        for plog in self._all_logs():
            if plog.since_snapshot >= SNAPSHOT_EVERY_BATCHES:
                try:
                    await write_snapshot(plog)
                except StorageUnavailable:
                    return
