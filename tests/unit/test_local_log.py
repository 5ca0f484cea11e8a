"""LocalPartitionLog: append, read, rolls, indexes, timestamps, deletion, retention, flush."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import FileRegion, OffsetOutOfRange
from strom.storage.local import LocalEngine, LocalPartitionLog, read_region
from strom.storage.local.log_segment import segment_name
from tests.unit.batch_factory import (
    COMPRESSION_GZIP,
    LOG_APPEND_TIME,
    append_batch,
    batch,
    batch_base_offset,
    batch_last_offset,
    make_batch,
    read_all,
    region_bytes,
    split_batches,
)

DAY_MS = 24 * 3600 * 1000
SIZE_200 = len(make_batch(1, value_size=200))


def run_with_log(tmp_path: Path, configs: dict[str, str],
                 body: Callable[[LocalEngine, LocalPartitionLog], Awaitable[Any]],
                 settings: dict[str, str] | None = None) -> Any:
    async def main() -> Any:
        engine = LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0, settings))
        await engine.open()
        await engine.create_topic("t", 1, configs)
        try:
            return await body(engine, engine.partition("t", 0))
        finally:
            await engine.close()

    return asyncio.run(main())


def segment_files(plog: LocalPartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(plog.directory) if n.endswith(".log"))


def test_append_assigns_consecutive_offsets_and_round_trips(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        sent: list[bytes] = []
        for i in range(60):
            data = make_batch(1 + i % 4, base_timestamp=1000 + i, value_size=i * 7)
            result = await plog.append([append_batch(data)])
            assert result.base_offset == (0 if not sent else batch_last_offset(sent[-1]) + 1)
            assert result.last_offset == result.base_offset + i % 4
            sent.append(bytes(data))
        assert plog.log_end_offset == batch_last_offset(sent[-1]) + 1
        assert plog.segment_count > 5
        stored = await read_all(plog)
        assert stored == sent  # data is stored exactly, with its base offset rewritten
        assert [batch_base_offset(b) for b in stored] == [
            0, *(batch_last_offset(b) + 1 for b in stored[:-1])]
        assert plog.size_bytes == sum(len(b) for b in sent)

    run_with_log(tmp_path, {"segment.bytes": "1000"}, body)


def test_multi_batch_append_is_contiguous_and_in_one_segment(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([batch(1, value_size=300)])
        result = await plog.append([batch(2, value_size=300), batch(3, value_size=300)])
        assert (result.base_offset, result.last_offset) == (1, 5)
        assert segment_files(plog) == [segment_name(0) + ".log", segment_name(1) + ".log"]
        stored = await read_all(plog)
        assert [batch_base_offset(b) for b in stored] == [0, 1, 3]

    run_with_log(tmp_path, {"segment.bytes": "700"}, body)


def test_leader_epoch_is_reset_and_base_offset_rewritten(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        data = make_batch(2, base_offset=999)
        data[12:16] = (7).to_bytes(4, "big")
        await plog.append([batch(1)])
        await plog.append([append_batch(data)])
        stored = (await read_all(plog))[1]
        assert batch_base_offset(stored) == 1
        assert stored[12:16] == b"\0\0\0\0"

    run_with_log(tmp_path, {}, body)


def test_read_offset_inside_a_batch_returns_the_whole_batch(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([batch(5)])
        await plog.append([batch(5)])
        for offset, base in [(0, 0), (3, 0), (4, 0), (5, 5), (9, 5)]:
            got = split_batches(region_bytes(await plog.read(offset, 10**6, True)))
            assert batch_base_offset(got[0]) == base

    run_with_log(tmp_path, {}, body)


def test_read_respects_max_bytes_and_min_one_batch(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(5):
            await plog.append([batch(1, value_size=100)])
        size = len((await read_all(plog))[0])
        result = await plog.read(0, int(size * 2.5), True)
        assert result.size == 2 * size == len(region_bytes(result))
        assert len(split_batches(region_bytes(result))) == 2
        result = await plog.read(1, size - 1, True)  # KIP-74: the first batch anyway
        assert result.size == size
        assert batch_base_offset(region_bytes(result)) == 1
        result = await plog.read(1, size - 1, False)
        assert result.size == 0 and not result.chunks
        result = await plog.read(0, 0, True)
        assert result.size == size
        assert result.high_watermark == 5 and result.log_start_offset == 0

    run_with_log(tmp_path, {}, body)


def test_read_across_segments_returns_one_chunk_per_segment(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(12):
            await plog.append([batch(1, value_size=200)])
        size = len((await read_all(plog))[0])
        assert plog.segment_count == 4  # 3 batches per segment
        result = await plog.read(1, 6 * size + size // 2, True)
        assert len(result.chunks) == 3  # offsets 1-2, 3-5, 6
        assert result.size == 6 * size
        offsets = [batch_base_offset(b) for b in split_batches(region_bytes(result))]
        assert offsets == [1, 2, 3, 4, 5, 6]
        for chunk in result.chunks:
            assert isinstance(chunk, FileRegion)
            split_batches(read_region(chunk))  # every chunk holds whole batches

    run_with_log(tmp_path, {"segment.bytes": str(3 * SIZE_200)}, body)


def test_read_bounds(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        empty = await plog.read(0, 1000, True)
        assert empty.size == 0 and empty.high_watermark == 0
        await plog.append([batch(3)])
        at_end = await plog.read(3, 1000, True)
        assert at_end.size == 0 and not at_end.chunks and at_end.high_watermark == 3
        with pytest.raises(OffsetOutOfRange):
            await plog.read(4, 1000, True)
        with pytest.raises(OffsetOutOfRange):
            await plog.read(-1, 1000, True)
        await plog.delete_records_before(2)
        with pytest.raises(OffsetOutOfRange):
            await plog.read(1, 1000, True)
        got = await plog.read(2, 1000, True)  # the batch holding the log start offset
        assert batch_base_offset(region_bytes(got)) == 0
        assert got.log_start_offset == 2

    run_with_log(tmp_path, {}, body)


def test_sparse_index_entries_and_lookups(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        sizes = []
        for i in range(40):
            data = make_batch(2, base_timestamp=i * 10, value_size=50 + i)
            sizes.append(len(data))
            await plog.append([append_batch(data)])
        seg = plog._segments[-1]
        # Kafka's rule: an entry before a batch once > index.interval.bytes were written.
        expected, since, pos = [], 0, 0
        for i, size in enumerate(sizes):
            if since > 300:
                expected.append((2 * i, pos))
                since = 0
            since += size
            pos += size
        assert list(zip(seg.offset_index.offsets, seg.offset_index.positions,
                        strict=True)) == expected
        assert list(seg.time_index.timestamps) == sorted(set(seg.time_index.timestamps))
        for offset in range(80):
            position, _ = seg.find_batch(offset) or (-1, -1)
            assert position == sum(sizes[: offset // 2])

    run_with_log(tmp_path, {"index.interval.bytes": "300"}, body)


def test_rolls_on_segment_bytes_segment_ms_and_full_index(tmp_path: Path) -> None:
    async def by_time(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([batch(1, base_timestamp=1000)])
        await plog.append([batch(1, base_timestamp=1500)])  # waited 500 ms: not > 500
        assert plog.segment_count == 1
        await plog.append([batch(1, base_timestamp=1501)])
        assert plog.segment_count == 2

    run_with_log(tmp_path / "a", {"segment.ms": "500"}, by_time)

    async def by_index(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for i in range(9):
            await plog.append([batch(1, base_timestamp=i)])
        # index.interval.bytes=0: batches 2, 3... get an entry; the time index (12-byte
        # entries) holds two, so every segment has 3 batches.
        assert plog.segment_count == 3
        assert [plog._segments[i].base_offset for i in range(3)] == [0, 3, 6]

    run_with_log(tmp_path / "b", {"index.interval.bytes": "0", "segment.index.bytes": "24"},
                 by_index)


def test_offset_for_timestamp(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        assert await plog.offset_for_timestamp(0) is None
        await plog.append([append_batch(make_batch(3, timestamps=[100, 300, 200]))])  # 0-2
        await plog.append([append_batch(make_batch(2, timestamps=[400, 500]))])  # 3-4
        await plog.append([append_batch(make_batch(2, timestamps=[600, 700],
                                                    compression=COMPRESSION_GZIP))])  # 5-6
        await plog.append([append_batch(make_batch(2, timestamps=[900, 900],
                                                    attributes=LOG_APPEND_TIME))])  # 7-8
        await plog.append([append_batch(make_batch(1, timestamps=[1000]))])  # 9
        assert await plog.offset_for_timestamp(50) == (0, 100)
        assert await plog.offset_for_timestamp(150) == (1, 300)  # the first record >= 150
        assert await plog.offset_for_timestamp(300) == (1, 300)
        assert await plog.offset_for_timestamp(450) == (4, 500)
        assert await plog.offset_for_timestamp(600) == (5, 600)  # compressed, first qualifies
        assert await plog.offset_for_timestamp(650) == (5, 700)  # batch granularity
        assert await plog.offset_for_timestamp(800) == (7, 900)  # LogAppendTime
        assert await plog.offset_for_timestamp(1000) == (9, 1000)
        assert await plog.offset_for_timestamp(1001) is None
        await plog.delete_records_before(2)
        assert await plog.offset_for_timestamp(50) == (2, 200)
        assert await plog.max_timestamp() == (9, 1000)

    run_with_log(tmp_path, {"segment.bytes": "300", "index.interval.bytes": "0"}, body)


def test_offset_for_timestamp_and_max_timestamp_across_reopen(tmp_path: Path) -> None:
    timestamps = [5000, 1000, 9000, 2000, 3000, 9000, 4000, 8000]

    async def fill(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for ts in timestamps:
            await plog.append([batch(2, base_timestamp=ts, value_size=100)])
        assert plog.segment_count > 3

    run_with_log(tmp_path, {"segment.bytes": "500"}, fill)

    async def check() -> None:
        engine = LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0))
        await engine.open()
        plog = engine.partition("t", 0)
        assert not plog._segments[0].loaded  # inactive segments load lazily
        assert await plog.max_timestamp() == (5, 9001)  # the first batch reaching 9001
        assert not plog._segments[0].loaded  # from the time index's last entry only
        assert await plog.offset_for_timestamp(4000) == (0, 5000)
        assert await plog.offset_for_timestamp(5001) == (1, 5001)
        assert await plog.offset_for_timestamp(5002) == (4, 9000)
        assert await plog.offset_for_timestamp(6000) == (4, 9000)
        assert await plog.offset_for_timestamp(9001) == (5, 9001)
        assert await plog.offset_for_timestamp(8001) == (4, 9000)
        await engine.close()

    asyncio.run(check())


def test_delete_records_before(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(10):
            await plog.append([batch(2, value_size=100)])
        assert plog.segment_count == 5
        assert await plog.delete_records_before(5) == 5
        assert plog.log_start_offset == 5
        assert segment_files(plog)[0] == segment_name(4) + ".log"  # 0-3 gone, 4-7 kept
        assert await plog.delete_records_before(3) == 5  # never backwards
        with pytest.raises(OffsetOutOfRange):
            await plog.delete_records_before(21)
        assert await plog.delete_records_before(-1) == 20  # -1: the high watermark
        assert plog.segment_count == 1  # the active segment stays
        assert (await plog.read(20, 1000, True)).size == 0
        result = await plog.append([batch(1)])
        assert result.base_offset == 20 and result.log_start_offset == 20

    run_with_log(tmp_path, {"segment.bytes": "600"}, body)

    async def reopen() -> None:
        engine = LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0))
        await engine.open()
        plog = engine.partition("t", 0)
        assert (plog.log_start_offset, plog.log_end_offset) == (20, 21)
        await engine.close()

    asyncio.run(reopen())


def test_retention_by_time(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        now = 100 * DAY_MS
        for ts in [now - 10 * DAY_MS, now - 9 * DAY_MS, now - 2 * DAY_MS, now - 9 * DAY_MS,
                   now - 8 * DAY_MS]:
            await plog.append([batch(1, base_timestamp=ts, value_size=300)])
        assert plog.segment_count == 5
        # Segments 0, 1 are older than 7 days; 2 is not, so 3 stays too (Kafka stops at the
        # first segment to keep); 4 is the active segment.
        assert await engine.run_retention(now) == 2
        assert plog.log_start_offset == 2 and plog.segment_count == 3
        assert await engine.run_retention(now) == 0
        assert await engine.run_retention(now + 6 * DAY_MS) == 2  # never the active one
        assert plog.segment_count == 1 and plog.log_start_offset == 4
        assert await engine.run_retention(now + 1000 * DAY_MS) == 0
        assert len(await read_all(plog)) == 1

    run_with_log(tmp_path, {"segment.bytes": "400"}, body)


def test_retention_by_size(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(6):
            await plog.append([batch(1, base_timestamp=2**50, value_size=300)])
        size = plog.size_bytes // 6
        assert plog.segment_count == 6
        # Kafka's rule: delete the oldest segment only if what remains is >= retention.bytes.
        await engine.set_topic_configs("t", {"retention.bytes": str(4 * size + 10),
                                             "segment.bytes": "400"})
        assert await engine.run_retention(0) == 1
        await engine.set_topic_configs("t", {"retention.bytes": str(4 * size),
                                             "segment.bytes": "400"})
        assert await engine.run_retention(0) == 1
        assert plog.size_bytes == 4 * size and plog.log_start_offset == 2
        await engine.set_topic_configs("t", {"retention.bytes": "0", "segment.bytes": "400"})
        assert await engine.run_retention(0) == 3
        assert plog.segment_count == 1 and plog.log_end_offset == 6

    run_with_log(tmp_path, {"segment.bytes": "400"}, body)


def test_retention_only_for_delete_policy(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(4):
            await plog.append([batch(1, base_timestamp=1, value_size=300)])
        assert await engine.run_retention(100 * DAY_MS) == 0
        await engine.set_topic_configs("t", {"cleanup.policy": "compact,delete",
                                             "segment.bytes": "400"})
        assert await engine.run_retention(100 * DAY_MS) == 3

    run_with_log(tmp_path, {"cleanup.policy": "compact", "segment.bytes": "400",
                            "retention.bytes": "1"}, body)


def test_retention_keeps_regions_of_deleted_segments_readable(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(3):
            await plog.append([batch(1, base_timestamp=1, value_size=300)])
        result = await plog.read(0, 10**6, True)
        before = region_bytes(result)
        assert await engine.run_retention(100 * DAY_MS) == 2
        assert not (plog.directory / (segment_name(0) + ".log")).exists()
        assert region_bytes(result) == before  # the fd lives on for a grace period

    run_with_log(tmp_path, {"segment.bytes": "400"}, body)


def test_flush_messages_one_fsyncs_every_append(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        monkeypatch.setattr(os, "fsync", counting_fsync)
        for i in range(5):
            result = await plog.append([batch(2)])
            assert plog.recovery_point == result.last_offset + 1
            assert len(synced) == i + 1
        await asyncio.gather(*(plog.append([batch(1)]) for _ in range(10)))
        assert plog.recovery_point == plog.log_end_offset == 20
        assert len(synced) < 15  # concurrent appends share fsyncs

    run_with_log(tmp_path, {"flush.messages": "1"}, body)


def test_default_flush_policy_does_not_fsync_appends(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []

    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        monkeypatch.setattr(os, "fsync", synced.append)
        for _ in range(5):
            await plog.append([batch(1)])
        assert not synced and plog.recovery_point == 0
        await engine.flush_due(2**62)  # flush.ms is "never" by default
        assert not synced

    run_with_log(tmp_path, {}, body)


def test_flush_messages_and_flush_ms(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([batch(2)])
        assert plog.recovery_point == 0
        await plog.append([batch(1)])
        assert plog.recovery_point == 3  # 3 messages since the last flush
        await plog.append([batch(1)])
        await engine.flush_due(0)  # not due: flush.ms has not passed
        assert plog.recovery_point == 3
        await engine.flush_due(plog._flusher.last_flush_ms + 60_000)
        assert plog.recovery_point == 4

    run_with_log(tmp_path, {"flush.messages": "3", "flush.ms": "60000"}, body)
