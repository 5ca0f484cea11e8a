"""PostgresEngine (`--storage postgresql://...`): topics and their logs in PostgreSQL.

At open it creates or checks the schema (schema.py) and reads the topics; when the broker
registers it joins the cluster (cluster_sync.py): it takes the leases of its share of the
partitions (placement.py, leases.py) and loads each one's offsets and producer state as it
takes it. Several brokers share one database: each serves the partitions whose lease it
holds, and answers NOT_LEADER_OR_FOLLOWER for the others. Topic metadata is kept in memory,
written through on every change here and re-read when another broker changed it. Durability
is the database's: an append is answered after its commit (fsync with synchronous_commit=on).
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
    Assignment,
    BrokerRegistration,
    Leadership,
    LogDirDescription,
    NotLeader,
    PartitionSize,
    StorageError,
    StorageUnavailable,
    TopicExists,
    TopicInfo,
    UnknownTopic,
)
from strom.storage.local.cleaner import compacts
from strom.storage.local.names import check_partition_count, check_topic_name
from strom.storage.meter import MeterSlot
from strom.storage.postgres import lease_view
from strom.storage.postgres.cluster_sync import ClusterSync
from strom.storage.postgres.compaction import CleanerProgress, compact
from strom.storage.postgres.connect import CONTROL_POOL_SIZE, Health, create_pool, redact
from strom.storage.postgres.leases import Lease
from strom.storage.postgres.metadata_rows import read_records, write_records
from strom.storage.postgres.partition import PostgresPartitionLog, Shared
from strom.storage.postgres.partition_load import write_snapshot
from strom.storage.postgres.partition_maintenance import run_retention
from strom.storage.postgres.placement import desired_owner
from strom.storage.postgres.schema_setup import ensure_schema
from strom.storage.postgres.status import Status
from strom.storage.postgres.topic_rows import BUMP_VERSION, TopicRows
from strom.storage.topic_registry import TopicRegistry
from strom.storage.waiters import DataWaiters

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_BATCHES: Final = 1000


class PostgresEngine:
    def __init__(self, url: str, config: BrokerConfig) -> None:
        self.url = url
        self.config = config
        self._pool: Any = None
        self._control_pool: Any = None  # membership, leases, topics: never behind appends
        self._health = Health(url)
        self._shared: Shared | None = None
        self._cluster_id = ""
        self._registry: TopicRegistry[PostgresPartitionLog] = TopicRegistry()
        self._cleaning: dict[int, CleanerProgress] = {}
        self._waiters = DataWaiters()
        self._cluster: ClusterSync | None = None
        self._listeners: list[Callable[[], None]] = []
        self.meters = MeterSlot()  # metrics, if on (shared with the partitions)

    def __str__(self) -> str:
        return redact(self.url)

    # -- open, close ------------------------------------------------------------------------

    async def open(self) -> None:
        name = f"strom node {self.config.node_id}"
        timeout_s = self.config.get_int("storage.statement.timeout.ms") / 1000
        self._pool = await create_pool(self.url, name, statement_timeout_s=timeout_s)
        try:
            self._control_pool = await create_pool(self.url, f"{name} (control)",
                                                   CONTROL_POOL_SIZE, timeout_s)

            async def reconnect() -> None:
                await self._pool.expire_connections()
                await self._control_pool.expire_connections()

            self._health.reconnect_with(reconnect)
            self._cluster_id = await ensure_schema(self._pool, self.url)
            self._cluster = ClusterSync(self._pool, self._control_pool, self._health,
                                        self.config, self._registry, self._log_of)
            self._cluster.listeners = self._listeners
            self._shared = Shared(self._pool, self._health, self._waiters.notify,
                                  self.config.get_int("producer.id.expiration.ms"),
                                  self._cluster.lease_left_s, self.meters)
            await self._cluster.sync_topics(force=True)
        except BaseException:
            await self._close_pools()
            raise
        topics = self._registry.topics()
        if topics:
            log.info("%s of %s in PostgreSQL", plural(len(self._all_logs()), "partition"),
                     plural(len(topics), "topic"))

    def _log_of(self, rows: TopicRows, index: int) -> PostgresPartitionLog:
        row = rows.partitions[index]
        config = self.config.log_config(rows.info.configs)
        return self._new_log(rows.info.name, row.partition_id, index, config, row.leader_epoch)

    async def _close_pools(self) -> None:
        for pool in (self._control_pool, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._control_pool = None

    async def close(self) -> None:
        if self._cluster is not None and self._pool is not None:
            await self._write_snapshots()
            await self._cluster.leave()
        logs = self._all_logs()
        await asyncio.gather(*(p.drain() for p in logs), return_exceptions=True)
        if self._pool is not None:
            for plog in logs:
                plog.closed = True
            await self._close_pools()
        self._registry.clear()

    async def _write_snapshots(self) -> None:
        """Producer snapshots of the partitions led here, before they are handed over (their
        next leader replays less)."""
        for plog in self._led_logs():
            try:
                if plog.since_snapshot:
                    await write_snapshot(plog)
            except StorageError as exc:
                log.warning("%s: producer snapshot not written at stop: %s", plog.name, exc)
                break

    def _check_opened(self) -> Any:
        if self._pool is None:
            raise StorageError("the storage engine is not open")
        return self._pool

    def _sync(self) -> ClusterSync:
        self._check_opened()
        assert self._cluster is not None
        return self._cluster

    # -- the cluster ------------------------------------------------------------------------

    def cluster_id(self) -> str:
        return self._cluster_id

    async def register_broker(self, registration: BrokerRegistration) -> None:
        """Registers this broker's session (membership.py) and takes its share of the
        leases (cluster_sync.py); raises StartupError if a live broker elsewhere holds its
        node id."""
        await self._sync().join(registration)

    async def brokers(self) -> Sequence[BrokerRegistration]:
        """The live brokers as of the last heartbeat (read from the database then, so
        Metadata costs no query and keeps answering while the database does not)."""
        members = self._sync().members
        if not members.live:
            return await members.refresh()
        return members.live

    async def read_metadata(self, kind: str) -> dict[str, str]:
        self._check_opened()
        with self._health.statement(f"read the {kind} records"):
            return await read_records(self._control_pool, kind)

    async def write_metadata(self, kind: str, puts: Mapping[str, str],
                             deletes: Sequence[str]) -> None:
        self._check_opened()
        with self._health.statement(f"write the {kind} records"):
            await write_records(self._control_pool, kind, puts, deletes)

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
        """Inserts partitions [first, total) with their leases given to their balanced
        owners (the live brokers' current sessions) at epoch 0, which adopt them."""
        cluster = self._sync()
        rows = await conn.fetch(
            "INSERT INTO strom_partition (topic_id, index) SELECT $1, i "
            "FROM generate_series($2::int, $3::int - 1) AS i "
            "RETURNING partition_id, index, leader_epoch", info.topic_id, first, total)
        rows = sorted(rows, key=lambda r: r["index"])
        live, sessions = cluster.live_ids(), cluster.members.sessions
        owners = [desired_owner(r["partition_id"], live) for r in rows]
        ids = [r["partition_id"] for r in rows]
        await conn.execute(
            "UPDATE strom_partition p SET owner = o.owner, owner_session = o.session "
            "FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS o(id, owner, session) "
            "WHERE p.partition_id = o.id",
            ids, owners, [None if o is None else sessions.get(o) for o in owners])
        await conn.execute(
            "INSERT INTO strom_epoch_start (partition_id, leader_epoch, start_offset) "
            "SELECT id, 0, 0 FROM unnest($1::bigint[]) AS id", ids)
        await conn.execute(BUMP_VERSION)
        logs = []
        for r, owner in zip(rows, owners, strict=True):
            plog = self._new_log(info.name, r["partition_id"], r["index"], config,
                                 r["leader_epoch"])
            session = None if owner is None else sessions.get(owner)
            cluster.leases.set(r["partition_id"], Lease(owner, session, 0, None))
            logs.append(plog)
        return logs

    def _adopt_new(self, logs: Sequence[PostgresPartitionLog]) -> None:
        """New partitions whose lease is this broker's: nothing to load."""
        cluster = self._sync()
        for plog in logs:
            lease = cluster.leases.by_partition.get(plog.partition_id)
            if lease is not None and lease.held_by(self.config.node_id, cluster.session):
                plog.take(0)
                plog.mark_new()

    async def _changed_topics(self) -> None:
        cluster = self._sync()
        await cluster.leases.notify()
        cluster.wake()
        for listener in self._listeners:
            listener()

    async def create_topic(self, name: str, partitions: int, configs: Mapping[str, str],
                           replication_factor: int = 1) -> TopicInfo:
        pool = self._check_opened()
        cluster = self._sync()
        check_topic_name(name)
        check_partition_count(name, partitions)
        if name in self._registry.topics():
            raise TopicExists(f"topic {name!r} already exists")
        info = TopicInfo(name, uuid.uuid4(), partitions, dict(configs), replication_factor)
        config = self.config.log_config(info.configs)
        async with cluster.topic_lock:
            with self._health.statement(f"create topic {name!r}"):
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute(
                            "INSERT INTO strom_topic (topic_id, name, partitions, configs, "
                            "replication_factor) VALUES ($1, $2, $3, $4::jsonb, $5)",
                            info.topic_id, name, partitions, json.dumps(info.configs),
                            replication_factor)
                        logs = await self._add_partitions(conn, info, 0, partitions, config)
                except asyncpg.UniqueViolationError:
                    exists = True
                else:
                    exists = False
            if not exists:
                self._registry.register(info, config, logs)
                self._adopt_new(logs)
        if exists:
            await cluster.sync_topics(force=True)  # another broker created it: learn it now
            raise TopicExists(f"topic {name!r} already exists")
        await self._changed_topics()
        return info

    async def delete_topic(self, name: str) -> None:
        pool = self._check_opened()
        cluster = self._sync()
        async with cluster.topic_lock:
            info = self._registry.info(name)
            ids = [p.partition_id for p in self._registry.logs[name]]
            with self._health.statement(f"delete topic {name!r}"):
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("DELETE FROM strom_batch WHERE partition_id = ANY($1)",
                                       ids)
                    for table in ("strom_producer_snapshot", "strom_epoch_start"):
                        await conn.execute(f"DELETE FROM {table} WHERE partition_id = ANY($1)",
                                           ids)
                    await conn.execute("DELETE FROM strom_topic WHERE topic_id = $1",
                                       info.topic_id)
                    await conn.execute(BUMP_VERSION)
            for plog in self._registry.drop(name):
                plog.release("its topic was deleted")
                plog.closed = True
                self._cleaning.pop(plog.partition_id, None)
        await self._changed_topics()

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        pool = self._check_opened()
        cluster = self._sync()
        async with cluster.topic_lock:
            info = self._registry.info(name)
            if total <= info.partitions:
                raise ValueError(f"topic {name!r} has {plural(info.partitions, 'partition')}; "
                                 f"the new count must be larger, not {total}")
            check_partition_count(name, total)
            config = self._registry.log_config(name)
            with self._health.statement(f"add partitions to {name!r}"):
                async with pool.acquire() as conn, conn.transaction():
                    added = await self._add_partitions(conn, info, info.partitions, total,
                                                       config)
                    await conn.execute("UPDATE strom_topic SET partitions = $2 "
                                       "WHERE topic_id = $1", info.topic_id, total)
            info = self._registry.register(replace(info, partitions=total), config,
                                           self._registry.logs[name] + added)
            self._adopt_new(added)
        await self._changed_topics()
        return info

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        pool = self._check_opened()
        cluster = self._sync()
        async with cluster.topic_lock:
            info = replace(self._registry.info(name), configs=dict(configs))
            with self._health.statement(f"configure topic {name!r}"):
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute("UPDATE strom_topic SET configs = $2::jsonb "
                                       "WHERE topic_id = $1", info.topic_id,
                                       json.dumps(info.configs))
                    await conn.execute(BUMP_VERSION)
            info = self._registry.register(info, self.config.log_config(info.configs),
                                           self._registry.logs[name])
        await self._changed_topics()
        return info

    def partition(self, name: str, index: int) -> PostgresPartitionLog:
        return self._registry.partition(name, index)

    def leadership(self, name: str, index: int) -> Leadership:
        return self._sync().leadership_of(name, index)

    def on_leadership_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    async def reassign(self, name: str, index: int, replicas: Sequence[int] | None) -> None:
        cluster = self._sync()
        plog = self._registry.partition(name, index)
        if replicas is not None:
            live = set(cluster.live_ids())
            missing = [n for n in replicas if n not in live]
            if missing or not replicas:
                raise ValueError(f"replicas {list(replicas)}: brokers {missing} are not live"
                                 if missing else "replicas: at least one broker")
        await cluster.leases.reassign(plog.partition_id, replicas)
        await cluster.leases.notify()
        cluster.wake()

    def assignment(self, name: str, index: int) -> Assignment:
        return lease_view.assignment(self._sync(), self._registry.partition(name, index))

    async def rebalance(self) -> None:
        await lease_view.rebalance(self._sync())

    async def retire(self) -> None:
        if self._cluster is not None and self._pool is not None:
            await self._write_snapshots()
            await self._cluster.retire()

    async def leader_epochs(self, name: str, index: int) -> Sequence[tuple[int, int]]:
        plog = self._registry.partition(name, index)
        return await self._sync().leases.epochs(plog.partition_id)

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        return {}  # a topic's rows go with it, in one transaction

    def log_config(self, name: str) -> LogConfig:
        return self._registry.log_config(name)

    def partition_sizes(self) -> Sequence[PartitionSize]:
        """The partitions this broker leads (the others' sizes are their leaders')."""
        return lease_view.led_partition_sizes(self._sync())

    async def describe_log_dir(self) -> LogDirDescription:
        """The database (its URL without the password) as the one log directory; its
        volume's size and free space are unknown (-1): PostgreSQL does not tell them."""
        return LogDirDescription(redact(self.url), partitions=self.partition_sizes())

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

    def _led_logs(self) -> list[PostgresPartitionLog]:
        """The partitions this broker leads and has loaded: the only ones it maintains."""
        return [p for p in self._registry.all_logs() if p.status is Status.LOADED]

    async def run_retention(self, now_ms: int) -> int:
        deleted = 0
        for plog in self._led_logs():
            try:
                deleted += await run_retention(plog, now_ms)
            except NotLeader:
                continue  # moved meanwhile: its new leader keeps it
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
                if plog.status is not Status.LOADED:
                    continue  # led elsewhere (or loading): its leader compacts it
                progress = self._cleaning.setdefault(plog.partition_id, CleanerProgress())
                try:
                    cleaned += await compact(plog, progress, now_ms, budget, limit)
                except NotLeader:
                    continue
                except StorageUnavailable as exc:
                    log.warning("cleaner pass stopped: %s", exc)
                    return cleaned
        return cleaned

    async def flush_due(self, now_ms: int) -> None:
        """Nothing to flush (commits are durable); writes the producer state snapshots due."""
        for plog in self._led_logs():
            if plog.since_snapshot >= SNAPSHOT_EVERY_BATCHES:
                try:
                    await write_snapshot(plog)
                except StorageUnavailable:
                    return
