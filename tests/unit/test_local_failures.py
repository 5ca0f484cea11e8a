"""LocalEngine under failures: fsync/persist errors take a partition offline, the high
watermark waits for the fsync with flush.messages=1, and one bad partition does not stop
retention or flushing of the others."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import LogDirFailure, OffsetOutOfRange, UnknownTopic
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.checkpoint import RECOVERY_POINT_CHECKPOINT, read_offset_checkpoint
from strom.storage.local.engine import CLEAN_SHUTDOWN_FILE
from strom.storage.local.files import FdGraveyard
from strom.storage.local.log_segment import LogSegment
from tests.unit.batch_factory import batch, make_batch, read_all, region_bytes, split_batches

SIZE = len(make_batch(1, value_size=100))


def engine_for(tmp_path: Path) -> LocalEngine:
    return LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0))


def eio(*_: Any) -> None:
    raise OSError(errno.EIO, "Input/output error")


def test_failed_roll_flush_takes_the_partition_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real_save = LogSegment.save_indexes
    calls: list[LogSegment] = []

    def save_failing_once(seg: LogSegment) -> None:
        calls.append(seg)
        if len(calls) == 1:
            eio()
        real_save(seg)

    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {"segment.bytes": str(3 * SIZE)})
        plog = engine.partition("t", 0)
        monkeypatch.setattr(LogSegment, "save_indexes", save_failing_once)
        for _ in range(4):  # the 4th append rolls; the roll flush fails in the background
            await plog.append([batch(1, value_size=100)])
        with caplog.at_level(logging.ERROR), pytest.raises(LogDirFailure):
            await plog._flusher.wait_rolled()
        assert plog.offline and plog.recovery_point == 0
        assert any(r.levelno == logging.ERROR for r in caplog.records)
        with pytest.raises(LogDirFailure):
            await plog.append([batch(1, value_size=100)])
        with pytest.raises(LogDirFailure):
            await plog.read(0, 10**6, True)
        with pytest.raises(LogDirFailure):
            await plog.flush()
        assert len(calls) == 1  # never retried
        assert await engine.run_retention(2**62) == 0
        await engine.flush_due(2**62)
        await engine.close()
        assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
        points = read_offset_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)
        assert points[("t", 0)] == 0  # not past the segment that was never fsynced
        monkeypatch.setattr(LogSegment, "save_indexes", real_save)
        engine = engine_for(tmp_path)
        await engine.open()  # recovery validates from offset 0
        plog = engine.partition("t", 0)
        assert not plog.offline and plog.log_end_offset == 4
        assert len(await read_all(plog)) == 4
        await plog.append([batch(1)])
        await engine.close()

    asyncio.run(main())


def test_failed_fsync_is_not_retried_and_fails_later_appends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync_failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            eio()
        real_fsync(fd)

    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {"flush.messages": "1"})
        plog = engine.partition("t", 0)
        await plog.append([batch(1)])
        monkeypatch.setattr(os, "fsync", fsync_failing_once)
        with pytest.raises(LogDirFailure):
            await plog.append([batch(1)])
        with pytest.raises(LogDirFailure):  # a retry would "succeed" after EIO: none is made
            await plog.append([batch(1)])
        with pytest.raises(LogDirFailure):
            await plog.wait_durable(2)
        assert calls == [calls[0]] and plog.recovery_point == plog.high_watermark == 1
        monkeypatch.setattr(os, "fsync", real_fsync)
        await engine.close()
        assert read_offset_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)[("t", 0)] == 1
        engine = engine_for(tmp_path)
        await engine.open()
        assert not engine.partition("t", 0).offline
        await engine.close()

    asyncio.run(main())


def test_flush_messages_one_hides_the_batch_until_it_is_fsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    entered = threading.Event()
    release = threading.Event()

    def slow_fsync(fd: int) -> None:
        entered.set()
        release.wait(10)
        real_fsync(fd)

    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {"flush.messages": "1"})
        plog = engine.partition("t", 0)
        first = make_batch(1)
        await plog.append([batch(1)])
        monkeypatch.setattr(os, "fsync", slow_fsync)
        append = asyncio.create_task(plog.append([batch(2)]))
        await asyncio.to_thread(entered.wait, 10)
        assert plog.log_end_offset == 3 and plog.high_watermark == 1
        durable = asyncio.create_task(plog.wait_durable(3))
        result = await plog.read(0, 10**6, True)
        assert len(split_batches(region_bytes(result))) == 1 and result.high_watermark == 1
        assert region_bytes(result)[12:] == bytes(first)[12:]
        empty = await plog.read(1, 10**6, True)  # between HW and LEO: nothing, no error
        assert empty.size == 0 and empty.high_watermark == 1
        with pytest.raises(OffsetOutOfRange):
            await plog.read(4, 10**6, True)
        await asyncio.sleep(0.01)
        assert not append.done() and not durable.done()
        release.set()
        await append
        await durable
        assert plog.high_watermark == plog.log_end_offset == 3
        assert len(await read_all(plog)) == 2
        await plog.wait_durable(3)  # already durable: returns at once
        await engine.close()

    asyncio.run(main())


def test_default_flush_policy_high_watermark_is_the_log_end(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        await plog.append([batch(2)])
        assert plog.high_watermark == plog.log_end_offset == 2 and plog.recovery_point == 0
        await plog.wait_durable(2)  # the policy does not fsync appends
        assert plog.recovery_point == 0
        await engine.close()

    asyncio.run(main())


def test_retention_and_flushing_go_on_past_a_failing_partition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = {"segment.bytes": str(2 * SIZE), "retention.ms": "1000", "flush.ms": "1000"}

    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        for name in ("a", "b"):
            await engine.create_topic(name, 1, configs)
            for _ in range(6):
                await engine.partition(name, 0).append([batch(1, value_size=100)])
        await engine.close()
        seg = tmp_path / "a-0" / "00000000000000000000"
        for suffix in (".index", ".timeindex"):  # so retention must load (validate) it
            os.unlink(f"{seg}{suffix}")
        with open(f"{seg}.log", "r+b") as f:  # a bad CRC in the first batch
            f.seek(SIZE - 1)
            byte = f.read(1)
            f.seek(SIZE - 1)
            f.write(bytes([byte[0] ^ 0xFF]))
        engine = engine_for(tmp_path)
        await engine.open()
        a, b = engine.partition("a", 0), engine.partition("b", 0)
        assert await engine.run_retention(2**62) == 2  # b's two inactive segments
        assert a.segment_count == 3 and b.segment_count == 1
        assert await engine.run_retention(2**62) == 0  # and again: it is not stuck

        def broken_flush() -> Any:
            raise OSError(errno.EIO, "flush failed")

        await b.append([batch(1)])
        monkeypatch.setattr(a, "flush", broken_flush)
        monkeypatch.setattr(a, "is_flush_due", lambda now: True)
        monkeypatch.setattr("strom.storage.local.engine.RECOVERY_CHECKPOINT_INTERVAL_S", 0.0)
        await engine.flush_due(2**62)
        assert b.recovery_point == b.log_end_offset == 7
        points = read_offset_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT)
        assert points[("b", 0)] == 7
        await engine.close()

    asyncio.run(main())


def test_graveyard_reap_closes_each_fd_once_even_if_a_close_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    graveyard = FdGraveyard()
    for fd in (101, 102, 103):
        graveyard.retire(fd, 0)
    graveyard.retire(104, 3600)
    closed: list[int] = []

    def close(fd: int) -> None:
        closed.append(fd)
        if fd == 102:
            raise OSError(errno.EIO, "close failed")

    monkeypatch.setattr(os, "close", close)
    graveyard.reap()
    assert closed == [101, 102, 103] and len(graveyard) == 1
    graveyard.reap()
    assert closed == [101, 102, 103]
    graveyard.close_all()
    assert closed == [101, 102, 103, 104] and len(graveyard) == 0


async def reopened_with_segments(tmp_path: Path, count: int) -> tuple[LocalEngine,
                                                                     LocalPartitionLog]:
    """Topic t with `count` batches, 2 a segment, reopened so inactive segments are unloaded."""
    engine = engine_for(tmp_path)
    await engine.open()
    await engine.create_topic("t", 1, {"segment.bytes": str(2 * SIZE)})
    for _ in range(count):
        await engine.partition("t", 0).append([batch(1, value_size=100)])
    await engine.close()
    engine = engine_for(tmp_path)
    await engine.open()
    plog = engine.partition("t", 0)
    assert not plog.segments[0].loaded
    return engine, plog


def gate_loading(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()
    real = LogSegment.ensure_loaded

    def slow(seg: LogSegment, max_relative_offset: int, index_interval: int) -> None:
        entered.set()
        release.wait(10)
        real(seg, max_relative_offset, index_interval)

    monkeypatch.setattr(LogSegment, "ensure_loaded", slow)
    return entered, release


def test_read_racing_retention_gets_offset_out_of_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        engine, plog = await reopened_with_segments(tmp_path, 6)
        entered, release = gate_loading(monkeypatch)
        read = asyncio.create_task(plog.read(0, 10**6, True))
        await asyncio.to_thread(entered.wait, 10)
        first = plog.segments[0]
        assert await plog.delete_records_before(2) == 2
        assert not first.log_path.exists()
        release.set()
        with pytest.raises(OffsetOutOfRange):
            await read
        assert first.fd == -1
        assert len(await read_all(plog)) == 4
        await engine.close()

    asyncio.run(main())


def test_read_racing_close_leaves_no_fd_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        engine, plog = await reopened_with_segments(tmp_path, 6)
        entered, release = gate_loading(monkeypatch)
        read = asyncio.create_task(plog.read(0, 10**6, True))
        await asyncio.to_thread(entered.wait, 10)
        segments = plog.segments
        await plog.close(deleting=False)
        release.set()
        with pytest.raises(UnknownTopic):
            await read
        assert all(seg.fd == -1 for seg in segments)
        await engine.close()

    asyncio.run(main())


def test_delete_topic_renames_partition_dirs_before_removing_the_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 2, {})
        await engine.partition("t", 0).append([batch(3)])

        def crash(name: str) -> None:
            raise OSError(errno.EIO, "crash before the metadata file is removed")

        monkeypatch.setattr(engine._store, "remove", crash)
        with pytest.raises(OSError):
            await engine.delete_topic("t")
        assert not (tmp_path / "t-0").exists() and not (tmp_path / "t-1").exists()
        assert len([n for n in os.listdir(tmp_path) if n.endswith("-delete")]) == 2
        engine._graveyard.close_all()  # a crash here
        engine._opened = False
        engine = engine_for(tmp_path)
        await engine.open()  # the topic is still there, its partitions empty
        assert engine.partition("t", 0).log_end_offset == 0
        assert not [n for n in os.listdir(tmp_path) if n.endswith("-delete")]
        await engine.delete_topic("t")
        assert "t" not in engine.topics() and not (tmp_path / "t-0").exists()
        await engine.close()

    asyncio.run(main())
