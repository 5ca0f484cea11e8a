"""LocalEngine: the embedded default StorageEngine, segmented log files in one data directory.

    <data_dir>/
      __topics/<topic>.json                 topic metadata (TopicStore)
      <topic>-<partition>/                  one directory per partition
        00000000000000000000.log            segments, named by base offset (LogSegment)
        00000000000000000000.index          sparse offset index (OffsetIndex)
        00000000000000000000.timeindex      sparse time index (TimeIndex)
        00000000000000000000.snapshot       producer state at that offset (producer_snapshots)
      log-start-offset-checkpoint           log start offsets advanced by DeleteRecords
      recovery-point-offset-checkpoint      offsets below which everything was fsynced
      cleaner-offset-checkpoint             compacted partitions' first dirty offsets (LogCleaner)
      producer-id-block                     the next producer id not yet reserved
      .clean-shutdown                       written by close(), removed by open()

See docs/storage.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

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
from strom.storage.local.checkpoint import (
    LOG_START_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    TopicPartition,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from strom.storage.local.cleaner import CleanTarget, LogCleaner, compacts
from strom.storage.local.files import FdGraveyard, fsync_dir, unlink_quietly, write_atomic
from strom.storage.local.flush import now_ms
from strom.storage.local.meta_properties import load_or_create_cluster_id
from strom.storage.local.names import (
    DELETE_DIR_SUFFIX,
    PARTITION_DIR,
    check_partition_count,
    check_topic_name,
    delete_dir_name,
)
from strom.storage.local.partition_log import LocalPartitionLog, PartitionHooks
from strom.storage.local.producer_snapshots import rebuild
from strom.storage.local.recovery import LoadedLog, LogLoader
from strom.storage.local.topic_store import TopicStore
from strom.storage.metadata_records import FileRecords
from strom.storage.meter import MeterSlot
from strom.storage.producer_state import ProducerStateManager
from strom.storage.single_broker import SingleBrokerLeadership
from strom.storage.waiters import DataWaiters

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN_FILE: Final = ".clean-shutdown"
PRODUCER_ID_BLOCK_FILE: Final = "producer-id-block"
RECOVERY_CHECKPOINT_INTERVAL_S: Final = 60.0  # Kafka's log.flush.offset.checkpoint.interval.ms


class LocalEngine(SingleBrokerLeadership):
    """Implements StorageEngine; `await open()` before use and `await close()` at the end."""

    def __init__(self, data_dir: Path, config: BrokerConfig) -> None:
        self.data_dir = data_dir
        self.config = config
        self._producer_id_expiration_ms = config.get_int("producer.id.expiration.ms")
        self._producer_id_lock = asyncio.Lock()
        self._store = TopicStore(data_dir)
        self._topics: dict[str, TopicInfo] = {}
        self._topics_view = MappingProxyType(self._topics)
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self._logs: dict[str, list[LocalPartitionLog]] = {}
        self._log_configs: dict[str, LogConfig] = {}
        self._graveyard = FdGraveyard()
        self._meta_lock = asyncio.Lock()
        self._checkpoint_lock = asyncio.Lock()
        self._recovery_points_written: dict[TopicPartition, int] = {}
        self._last_recovery_checkpoint = time.monotonic()
        self._waiters = DataWaiters()
        self.meters = MeterSlot()
        self._hooks = PartitionHooks(self._retire_fd, self._checkpoint_log_start_offsets,
                                     self._waiters.notify, self.meters)
        self.cleaner = LogCleaner(data_dir, config.get_int("message.max.decompressed.bytes"),
                                  config.get_int("log.cleaner.dedupe.buffer.size"))
        self._opened = False
        self._cluster_id = ""
        self._brokers: dict[int, BrokerRegistration] = {}
        self._metadata = FileRecords(data_dir)
        self.clean_shutdown = False  # whether the last open found a clean shutdown
        self._orphans: dict[str, list[int]] = {}

    # -- open / close --------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        await asyncio.to_thread(self._open_blocking)
        self._opened = True

    def _open_blocking(self) -> None:
        fresh = _is_new_directory(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        clean = fresh or marker.exists()
        self.clean_shutdown = clean
        self._cluster_id = load_or_create_cluster_id(self.data_dir)
        self._metadata.load()
        topics = self._store.load()
        log_starts = read_offset_checkpoint(self.data_dir / LOG_START_CHECKPOINT)
        recovery_points = read_offset_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT)
        self._sweep(topics)
        self.cleaner.load()
        now = now_ms()
        for info in topics.values():
            config = self.config.log_config(info.configs)
            logs = []
            for p in range(info.partitions):
                directory = self._partition_dir(info.name, p)
                loaded = LogLoader(directory, config, clean, log_starts.get((info.name, p)),
                                   recovery_points.get((info.name, p)), now).load()
                logs.append(self._partition_log(info.name, p, directory, config, loaded, now))
            self._register(info, config, logs)
        if clean:
            unlink_quietly(marker)
            fsync_dir(self.data_dir)
        else:
            self._write_recovery_points()
        log.info("opened %s, %s in %s (%s)", plural(len(self._topics), "topic"),
                 plural(sum(len(v) for v in self._logs.values()), "partition"), self.data_dir,
                 "a new data directory" if fresh
                 else "clean shutdown" if clean else "unclean shutdown")

    def _partition_log(self, topic: str, partition: int, directory: Path, config: LogConfig,
                       loaded: LoadedLog, now: int) -> LocalPartitionLog:
        """The partition's log with its producer state rebuilt (blocking)."""
        state = ProducerStateManager(self._producer_id_expiration_ms)
        snapshot = rebuild(directory, loaded.segments, state, loaded.log_end_offset, now)
        return LocalPartitionLog(topic, partition, directory, config, loaded, self._hooks,
                                 state, snapshot)

    def _sweep(self, topics: Mapping[str, TopicInfo]) -> None:
        """Finishes interrupted topic deletions; reports directories of unknown partitions."""
        self._orphans = {}
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.endswith(DELETE_DIR_SUFFIX):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                m = PARTITION_DIR.match(entry.name)
                if m is None:
                    continue
                info = topics.get(m.group(1))
                if info is None or int(m.group(2)) >= info.partitions:
                    self._orphans.setdefault(m.group(1), []).append(int(m.group(2)))
                    log.warning("ignoring %s: no such topic partition (it is removed if that "
                                "partition is created)", entry.path)

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await self.cleaner.stop()
        logs = [p for parts in self._logs.values() for p in parts]
        await asyncio.gather(*(p.close(deleting=False) for p in logs))
        async with self._checkpoint_lock:
            await asyncio.to_thread(self._write_checkpoints_and_marker)
        self._graveyard.close_all()
        self._topics.clear()
        self._by_id.clear()
        self._logs.clear()
        self._log_configs.clear()

    def _write_checkpoints_and_marker(self) -> None:
        write_offset_checkpoint(self.data_dir / LOG_START_CHECKPOINT, self._log_start_entries())
        self._write_recovery_points()
        offline = [p.directory.name for p in self._all_logs() if p.offline or p.disk_full]
        if offline:  # no clean shutdown: recovery validates them from their recovery points
            log.error("not marking a clean shutdown: %s offline or short of space",
                      ", ".join(offline))
            return
        write_atomic(self.data_dir / CLEAN_SHUTDOWN_FILE, b"")

    # -- the cluster ------------------------------------------------------------------------

    def cluster_id(self) -> str:
        self._check_opened()
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

    # -- checkpoints and retired fds -----------------------------------------------------

    def _log_start_entries(self) -> dict[TopicPartition, int]:
        return {(t, p.partition): p.log_start_offset
                for t, parts in self._logs.items() for p in parts if p.log_start_offset > 0}

    def _recovery_point_entries(self) -> dict[TopicPartition, int]:
        return {(t, p.partition): p.recovery_point
                for t, parts in self._logs.items() for p in parts}

    def _write_recovery_points(self) -> None:
        entries = self._recovery_point_entries()
        write_offset_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT, entries)
        self._recovery_points_written = entries
        self._last_recovery_checkpoint = time.monotonic()

    async def _checkpoint_log_start_offsets(self) -> None:
        async with self._checkpoint_lock:
            entries = self._log_start_entries()
            await asyncio.to_thread(write_offset_checkpoint,
                                    self.data_dir / LOG_START_CHECKPOINT, entries)

    async def _checkpoint_recovery_points(self) -> None:
        async with self._checkpoint_lock:
            await asyncio.to_thread(self._write_recovery_points)

    def _retire_fd(self, fd: int) -> None:
        """Closes a deleted segment's fd after log.segment.delete.delay.ms."""
        self._graveyard.retire(fd, self.config.get_int("log.segment.delete.delay.ms") / 1000)

    # -- topics --------------------------------------------------------------------------

    def _partition_dir(self, name: str, partition: int) -> Path:
        return self.data_dir / f"{name}-{partition}"

    def _register(self, info: TopicInfo, config: LogConfig,
                  logs: list[LocalPartitionLog]) -> None:
        self._topics[info.name] = info
        self._by_id[info.topic_id] = info
        self._log_configs[info.name] = config
        self._logs[info.name] = logs

    def _check_opened(self) -> None:
        if not self._opened:
            raise StorageError("the storage engine is not open")

    def _info(self, name: str) -> TopicInfo:
        info = self._topics.get(name)
        if info is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return info

    def topics(self) -> Mapping[str, TopicInfo]:
        """A live, read-only view."""
        return self._topics_view

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def _new_logs(self, info: TopicInfo, config: LogConfig, first: int,
                  total: int) -> list[LocalPartitionLog]:
        """Creates partition directories first..total-1, replacing stale ones (blocking)."""
        now = now_ms()
        logs = []
        for p in range(first, total):
            directory = self._partition_dir(info.name, p)
            if directory.exists():
                log.warning("removing stale directory %s", directory)
                shutil.rmtree(directory)
            orphans = self._orphans.get(info.name, [])
            if p in orphans:
                orphans.remove(p)
            loaded = LogLoader(directory, config, False, None, None, now).load()
            logs.append(self._partition_log(info.name, p, directory, config, loaded, now))
        fsync_dir(self.data_dir)
        return logs

    async def create_topic(self, name: str, partitions: int, configs: Mapping[str, str],
                           replication_factor: int = 1) -> TopicInfo:
        self._check_opened()
        check_topic_name(name)
        check_partition_count(name, partitions)
        async with self._meta_lock:
            if name in self._topics:
                raise TopicExists(f"topic {name!r} already exists")
            info = TopicInfo(name, uuid.uuid4(), partitions, dict(configs))
            config = self.config.log_config(info.configs)
            await asyncio.to_thread(self._store.save, info)
            logs = await asyncio.to_thread(self._new_logs, info, config, 0, partitions)
            self._register(info, config, logs)
            return info

    async def delete_topic(self, name: str) -> None:
        self._check_opened()
        async with self._meta_lock:
            info = self._info(name)
            logs = self._logs.pop(name)
            del self._topics[name], self._by_id[info.topic_id], self._log_configs[name]
            self.cleaner.forget(name)
            for p in logs:
                await p.close(deleting=True)
            await self._checkpoint_log_start_offsets()
            await self._checkpoint_recovery_points()
            # The directories go first: a crash in between leaves the topic with empty
            # partitions, never a partition directory without its topic (or back with it).
            doomed = await asyncio.to_thread(self._rename_dirs_for_deletion, info)
            await asyncio.to_thread(self._store.remove, name)
            await asyncio.to_thread(_remove_trees, doomed)

    def _rename_dirs_for_deletion(self, info: TopicInfo) -> list[Path]:
        """Renames partition directories to `<topic>-<p>.<uuid>-delete` (removed by open if
        not by delete_topic), durably; returns the new names."""
        doomed = []
        for p in range(info.partitions):
            directory = self._partition_dir(info.name, p)
            target = directory.with_name(delete_dir_name(info.name, p))
            try:
                directory.rename(target)
            except FileNotFoundError:
                continue
            doomed.append(target)
        fsync_dir(self.data_dir)
        return doomed

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        self._check_opened()
        async with self._meta_lock:
            info = self._info(name)
            if total <= info.partitions:
                raise ValueError(f"topic {name!r} has {plural(info.partitions, 'partition')}; "
                                 f"the new count must be larger, not {total}")
            check_partition_count(name, total)
            new_info = replace(info, partitions=total)
            config = self._log_configs[name]
            await asyncio.to_thread(self._store.save, new_info)
            logs = await asyncio.to_thread(self._new_logs, new_info, config, info.partitions,
                                           total)
            self._register(new_info, config, self._logs[name] + logs)
            return new_info

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        self._check_opened()
        async with self._meta_lock:
            info = self._info(name)
            new_info = replace(info, configs=dict(configs))
            config = self.config.log_config(new_info.configs)
            await asyncio.to_thread(self._store.save, new_info)
            for p in self._logs[name]:
                p.config = config
            self._register(new_info, config, self._logs[name])
            return new_info

    def refresh_log_configs(self) -> None:
        """Recomputes every topic's LogConfig after the broker's defaults changed."""
        for name, info in self._topics.items():
            config = self.config.log_config(info.configs)
            self._log_configs[name] = config
            for p in self._logs[name]:
                p.config = config

    # -- partitions ----------------------------------------------------------------------

    def partition(self, name: str, index: int) -> LocalPartitionLog:
        logs = self._logs.get(name)
        if logs is None or not 0 <= index < len(logs):
            raise UnknownTopic(f"unknown topic partition {name}-{index}")
        return logs[index]

    async def wait_for_data(self, seen: Mapping[tuple[str, int], int], timeout_s: float
                            ) -> None:
        await self._waiters.wait(seen, timeout_s, self._high_watermark)

    def _high_watermark(self, key: tuple[str, int]) -> int | None:
        logs = self._logs.get(key[0])
        if logs is None or not 0 <= key[1] < len(logs):
            return None
        return logs[key[1]].high_watermark

    def orphaned_partitions(self) -> Mapping[str, Sequence[int]]:
        return {topic: sorted(parts) for topic, parts in self._orphans.items()}

    def log_config(self, name: str) -> LogConfig:
        config = self._log_configs.get(name)
        if config is None:
            raise UnknownTopic(f"unknown topic {name!r}")
        return config

    def partition_sizes(self) -> Sequence[PartitionSize]:
        return [PartitionSize(t, p.partition, p.size_bytes)
                for t, parts in self._logs.items() for p in parts]

    async def describe_log_dir(self) -> LogDirDescription:
        """The data directory, its volume's size and free space, and every partition."""
        usage = shutil.disk_usage(self.data_dir)
        return LogDirDescription(str(self.data_dir.resolve()), usage.total, usage.free,
                                 self.partition_sizes())

    def _all_logs(self) -> list[LocalPartitionLog]:
        return [p for parts in self._logs.values() for p in parts]

    async def run_retention(self, now_ms: int) -> int:
        self._graveyard.reap()
        deleted = 0
        for p in self._all_logs():  # one failing partition must not stop the others
            try:
                p.expire_producers(now_ms)  # Kafka checks producer.id.expiration.ms
                deleted += await p.run_retention(now_ms)
            except Exception:
                log.exception("%s: retention failed", p.directory.name)
        return deleted

    @staticmethod
    async def _flush_one(p: LocalPartitionLog) -> None:
        try:
            await p.flush()
        except Exception:
            log.exception("%s: a scheduled flush failed", p.directory.name)

    async def reserve_producer_ids(self, count: int) -> int:
        """Reserves `count` producer ids in `producer-id-block` (the next unreserved id,
        written atomically and fsynced before any reserved id is handed out)."""
        self._check_opened()
        if count < 1:
            raise ValueError(f"cannot reserve {count} producer ids")
        async with self._producer_id_lock:
            return await asyncio.to_thread(self._reserve_producer_ids, count)

    def _reserve_producer_ids(self, count: int) -> int:
        path = self.data_dir / PRODUCER_ID_BLOCK_FILE
        first = 0
        if path.exists():
            text = path.read_text().strip()
            try:
                first = int(text.removeprefix("next="))
            except ValueError:
                raise StorageError(f"{path} is damaged: {text[:100]!r}") from None
        if first < 0 or first + count > 2**63 - 1:
            raise StorageError(f"producer ids are exhausted ({path}: next={first})")
        write_atomic(path, f"next={first + count}\n".encode())
        return first

    async def run_cleaner(self, now_ms: int) -> int:
        """One LogCleaner pass over the partitions of topics whose cleanup.policy includes
        compact (the server calls it every log.cleaner.backoff.ms); returns how many
        partitions were cleaned. See cleaner.py."""
        if not self._opened:
            return 0
        self._graveyard.reap()
        targets: list[CleanTarget] = []
        for name, parts in self._logs.items():
            if compacts(self._log_configs[name].cleanup_policy):
                lag = self._log_configs[name].max_compaction_lag_ms
                targets.extend(CleanTarget(p, lag) for p in parts)
        return await self.cleaner.run(targets, now_ms)

    async def flush_due(self, now_ms: int) -> None:
        self._graveyard.reap()
        await asyncio.gather(*(self._flush_one(p) for p in self._all_logs()
                               if p.is_flush_due(now_ms)))
        if time.monotonic() - self._last_recovery_checkpoint >= RECOVERY_CHECKPOINT_INTERVAL_S:
            if self._recovery_point_entries() != self._recovery_points_written:
                await self._checkpoint_recovery_points()
            self._last_recovery_checkpoint = time.monotonic()


def _is_new_directory(path: Path) -> bool:
    """Whether `path` does not exist yet or is empty: nothing to recover, so no "unclean
    shutdown" either."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True


def _remove_trees(paths: Sequence[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


if TYPE_CHECKING:  # LocalEngine and LocalPartitionLog implement the storage protocols
    def _conforms(engine: LocalEngine, plog: LocalPartitionLog) -> tuple[StorageEngine,
                                                                          PartitionLog]:
        return engine, plog
