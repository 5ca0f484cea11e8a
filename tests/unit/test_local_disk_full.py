"""A full disk (ENOSPC injected in the file layer) refuses a partition's appends with LogDirFull
while its committed records stay readable, and the partition takes writes again by itself once
space is back: the failed append's bytes gone, indexes saved, the producer state never having
seen the failed batch (its retry is appended, not a duplicate), nothing acknowledged lost.
Other errors (EIO) still take the partition offline until restart."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import AppendBatch, AppendResult, Duplicate, LogDirFailure, LogDirFull
from strom.storage.local import LocalEngine, LocalPartitionLog, log_segment, no_space
from strom.storage.local.engine import CLEAN_SHUTDOWN_FILE
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.offset_index import INDEX_SUFFIX
from tests.unit.batch_factory import (
    append_batch,
    batch,
    batch_base_offset,
    make_batch,
    read_all,
)

SIZE = len(make_batch(1, value_size=100))
PID = 7


def engine_for(tmp_path: Path) -> LocalEngine:
    return LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0))


def idempotent(seq: int) -> AppendBatch:
    return append_batch(make_batch(1, value_size=100, producer_id=PID, producer_epoch=0,
                                   base_sequence=seq))


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class DiskFull:
    """Segment writes that write part of their bytes, then fail with ENOSPC (while `full`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.calls = 0
        real = log_segment._write_all

        def write_all(fd: int, bufs: Sequence[bytearray]) -> None:
            self.calls += 1
            if self.full:
                os.write(fd, bytes(bufs[0][:len(bufs[0]) // 2]))
                raise enospc()
            real(fd, bufs)

        monkeypatch.setattr(log_segment, "_write_all", write_all)
        monkeypatch.setattr(no_space, "RETRY_INTERVAL_S", 0.0)


async def open_topic(tmp_path: Path, configs: dict[str, str]) -> tuple[LocalEngine,
                                                                      LocalPartitionLog]:
    engine = engine_for(tmp_path)
    await engine.open()
    await engine.create_topic("t", 1, configs)
    return engine, engine.partition("t", 0)


@pytest.mark.parametrize("flush_messages", ["1", "9223372036854775807"])
def test_full_disk_refuses_appends_keeps_reads_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        flush_messages: str) -> None:
    disk = DiskFull(monkeypatch)

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {"flush.messages": flush_messages})
        for seq in range(3):
            assert isinstance(await plog.produce([idempotent(seq)]), AppendResult)
        size_before = plog.size_bytes
        disk.full = True
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                with pytest.raises(LogDirFull):
                    await plog.produce([idempotent(3)])
        assert plog.disk_full and not plog.offline
        assert (tmp_path / "t-0" / f"{0:020d}.log").stat().st_size == size_before
        assert plog.log_end_offset == plog.high_watermark == 3
        entry = plog.producer_state.entry(PID)
        assert entry is not None and entry.last_seq == 2  # the failed batch was never applied
        assert [batch_base_offset(b) for b in await read_all(plog)] == [0, 1, 2]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "no space" in errors[0].getMessage()
        disk.full = False
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = await plog.produce([idempotent(3)])  # the retry: appended, no duplicate
        assert isinstance(result, AppendResult) and result.base_offset == 3
        assert not plog.disk_full
        assert any("available again" in r.getMessage() for r in caplog.records)
        assert isinstance(await plog.produce([idempotent(3)]), Duplicate)
        await engine.close()
        assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
        engine = engine_for(tmp_path)
        await engine.open()
        assert [batch_base_offset(b) for b in await read_all(engine.partition("t", 0))] == [
            0, 1, 2, 3]
        await engine.close()

    asyncio.run(main())


def test_refused_appends_wait_for_the_retry_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = DiskFull(monkeypatch)
    monkeypatch.setattr(no_space, "RETRY_INTERVAL_S", 3600.0)

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {})
        disk.full = True
        for _ in range(5):
            with pytest.raises(LogDirFull):
                await plog.append([batch(1)])
        assert disk.calls == 1  # refused without touching the disk until the retry is due
        await engine.close()
        assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()

    asyncio.run(main())


def test_bytes_left_by_a_failed_truncation_are_cut_before_the_next_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = DiskFull(monkeypatch)
    real_ftruncate = os.ftruncate
    failures = [enospc()]

    def ftruncate(fd: int, length: int) -> None:
        if failures:
            raise failures.pop()
        real_ftruncate(fd, length)

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {})
        await plog.append([batch(1, value_size=100)])
        disk.full = True
        monkeypatch.setattr(os, "ftruncate", ftruncate)
        with pytest.raises(LogDirFull):
            await plog.append([batch(1, value_size=100)])
        path = tmp_path / "t-0" / f"{0:020d}.log"
        assert path.stat().st_size > SIZE  # half a batch is left over
        disk.full = False
        await plog.append([batch(2, value_size=100)])
        assert [batch_base_offset(b) for b in await read_all(plog)] == [0, 1]
        assert plog.log_end_offset == 3 and not plog.disk_full
        await engine.close()
        engine = engine_for(tmp_path)
        await engine.open()
        assert len(await read_all(engine.partition("t", 0))) == 2
        await engine.close()

    asyncio.run(main())


def test_rolled_segment_indexes_wait_for_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(no_space, "RETRY_INTERVAL_S", 0.0)
    real_save = LogSegment.save_indexes
    full = [True]

    def save_indexes(seg: LogSegment) -> None:
        if full[0]:
            raise enospc()
        real_save(seg)

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {"segment.bytes": str(2 * SIZE)})
        monkeypatch.setattr(LogSegment, "save_indexes", save_indexes)
        for _ in range(3):  # the 3rd rolls; its flush cannot save the indexes
            await plog.append([batch(1, value_size=100)])
        await plog._flusher.wait_rolled()
        assert plog.disk_full and not plog.offline and plog.recovery_point == 0
        with pytest.raises(LogDirFull):
            await plog.append([batch(1, value_size=100)])
        with pytest.raises(LogDirFull):
            await plog.flush()
        assert not plog.is_flush_due(2**62)
        assert len(await read_all(plog)) == 3
        full[0] = False
        await plog.append([batch(1, value_size=100)])
        assert not plog.disk_full and plog.recovery_point == 2
        assert (tmp_path / "t-0" / f"{0:020d}{INDEX_SUFFIX}").exists()
        assert len(await read_all(plog)) == 4
        await engine.close()

    asyncio.run(main())


def test_segment_creation_failing_for_space_keeps_the_active_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(no_space, "RETRY_INTERVAL_S", 0.0)
    real_create = LogSegment.create
    full = [True]

    def create(directory: Path, base: int, index_bytes: int, now: int) -> LogSegment:
        if full[0]:
            raise enospc()
        return real_create(directory, base, index_bytes, now)

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {"segment.bytes": str(2 * SIZE)})
        for _ in range(2):
            await plog.append([batch(1, value_size=100)])
        monkeypatch.setattr(LogSegment, "create", staticmethod(create))
        with pytest.raises(LogDirFull):
            await plog.append([batch(1, value_size=100)])
        assert plog.segment_count == 1 and plog.log_end_offset == 2 and plog.disk_full
        full[0] = False
        await plog.append([batch(1, value_size=100)])
        assert plog.segment_count == 2 and plog.log_end_offset == 3
        assert len(await read_all(plog)) == 3
        await engine.close()

    asyncio.run(main())


def test_other_write_errors_still_take_the_partition_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_all(fd: int, bufs: Sequence[bytearray]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def main() -> None:
        engine, plog = await open_topic(tmp_path, {})
        await plog.append([batch(1)])
        monkeypatch.setattr(log_segment, "_write_all", write_all)
        with pytest.raises(LogDirFailure) as raised:
            await plog.append([batch(1)])
        assert not isinstance(raised.value, LogDirFull)
        assert plog.offline and not plog.disk_full
        with pytest.raises(LogDirFailure):
            await plog.read(0, 10**6, True)
        await engine.close()

    asyncio.run(main())
