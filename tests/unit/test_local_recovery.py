"""Recovery on open: torn and corrupt tails, damaged or missing indexes, checkpoints, SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import CorruptLog
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.log_segment import segment_name
from tests.unit.batch_factory import (
    batch,
    batch_base_offset,
    crash_engine,
    make_batch,
    read_all,
)

SIZE = len(make_batch(1, value_size=100))  # each test batch has 1 record of 100 bytes


def engine_for(tmp_path: Path, settings: dict[str, str] | None = None) -> LocalEngine:
    return LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0, settings))


async def fill(tmp_path: Path, count: int, configs: dict[str, str] | None = None,
               crash: bool = True) -> list[bytes]:
    """Creates topic t with `count` 1-record batches, then crashes (or closes cleanly)."""
    engine = engine_for(tmp_path)
    await engine.open()
    await engine.create_topic("t", 1, configs or {})
    plog = engine.partition("t", 0)
    for i in range(count):
        await plog.append([batch(1, base_timestamp=1000 + i, value_size=100)])
    stored = await read_all(plog)
    await (crash_engine(engine) if crash else engine.close())
    return stored


async def reopen(tmp_path: Path) -> tuple[LocalEngine, LocalPartitionLog]:
    engine = engine_for(tmp_path)
    await engine.open()
    return engine, engine.partition("t", 0)


def log_file(tmp_path: Path, base: int = 0) -> Path:
    return tmp_path / "t-0" / (segment_name(base) + ".log")


@pytest.mark.parametrize("cut", [1, 30, 61, SIZE - 1])
def test_torn_tail_is_truncated(tmp_path: Path, cut: int,
                                caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 10)
        path = log_file(tmp_path)
        os.truncate(path, path.stat().st_size - cut)
        with caplog.at_level(logging.WARNING):
            engine, plog = await reopen(tmp_path)
        assert not engine.clean_shutdown
        assert plog.log_end_offset == 9
        assert await read_all(plog) == stored[:9]
        assert path.stat().st_size == 9 * SIZE
        assert "truncating" in caplog.text
        result = await plog.append([batch(1)])  # offsets continue after the survivors
        assert result.base_offset == 9
        await engine.close()

    asyncio.run(main())


@pytest.mark.parametrize("where", ["value", "crc", "length", "base_offset", "magic"])
def test_corrupt_tail_batch_is_truncated(tmp_path: Path, where: str) -> None:
    position = {"value": SIZE - 5, "crc": 18, "length": 10, "base_offset": 7, "magic": 16}

    async def main() -> None:
        stored = await fill(tmp_path, 5)
        path = log_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[4 * SIZE + position[where]] ^= 0x40
        path.write_bytes(bytes(data))
        engine, plog = await reopen(tmp_path)
        assert plog.log_end_offset == 4
        assert await read_all(plog) == stored[:4]
        await engine.close()

    asyncio.run(main())


def test_corruption_in_the_middle_drops_everything_after_it(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 8)
        path = log_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[2 * SIZE + 70] ^= 1
        path.write_bytes(bytes(data) + b"\0" * 100)
        engine, plog = await reopen(tmp_path)
        assert plog.log_end_offset == 2
        assert await read_all(plog) == stored[:2]
        await engine.close()

    asyncio.run(main())


def test_trailing_zeros_are_truncated(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 3)
        with open(log_file(tmp_path), "ab") as f:
            f.write(b"\0" * 4096)
        engine, plog = await reopen(tmp_path)
        assert plog.log_end_offset == 3 and await read_all(plog) == stored
        await engine.close()

    asyncio.run(main())


def test_unflushed_inactive_segment_is_validated_and_later_ones_dropped(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 12, {"segment.bytes": str(3 * SIZE)})
        assert sorted(os.listdir(tmp_path / "t-0"))[0] == segment_name(0) + ".index"
        path = log_file(tmp_path, 3)  # the second of four segments
        data = bytearray(path.read_bytes())
        data[SIZE + 80] ^= 0xFF
        path.write_bytes(bytes(data))
        engine, plog = await reopen(tmp_path)  # no recovery point: every segment is checked
        assert plog.log_end_offset == 4 and plog.segment_count == 2
        assert await read_all(plog) == stored[:4]
        assert not log_file(tmp_path, 6).exists() and not log_file(tmp_path, 9).exists()
        result = await plog.append([batch(1)])
        assert result.base_offset == 4
        await engine.close()

    asyncio.run(main())


def test_segments_below_the_recovery_point_are_trusted(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 12, {"segment.bytes": str(3 * SIZE)}, crash=False)
        engine, plog = await reopen(tmp_path)
        await crash_engine(engine)  # the checkpoint says everything is flushed
        engine, plog = await reopen(tmp_path)
        assert [seg.loaded for seg in plog._segments] == [False, False, False, True]
        assert await read_all(plog) == stored
        await engine.close()

    asyncio.run(main())


@pytest.mark.parametrize("damage", ["delete", "garbage", "past_end", "empty_time"])
def test_damaged_index_of_an_inactive_segment_is_rebuilt(tmp_path: Path, damage: str) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 12, {"segment.bytes": str(3 * SIZE),
                                           "index.interval.bytes": "0"}, crash=False)
        index = tmp_path / "t-0" / (segment_name(3) + ".index")
        timeindex = index.with_suffix(".timeindex")
        good = index.read_bytes()
        assert len(good) == 16  # two entries: batches 2 and 3 of the segment
        if damage == "delete":
            index.unlink()
            timeindex.unlink()
        elif damage == "garbage":
            index.write_bytes(os.urandom(13))
        elif damage == "past_end":
            index.write_bytes(good + (3).to_bytes(4, "big") + (10_000).to_bytes(4, "big"))
        else:
            timeindex.write_bytes(b"")
        engine, plog = await reopen(tmp_path)
        assert await read_all(plog) == stored
        if damage != "empty_time":
            assert index.read_bytes() == good  # rebuilt and saved
        assert await plog.offset_for_timestamp(1004) == (4, 1004)
        await engine.close()

    asyncio.run(main())


def test_missing_active_index_after_clean_shutdown_validates_the_segment(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 6, {"index.interval.bytes": "0"}, crash=False)
        (tmp_path / "t-0" / (segment_name(0) + ".index")).unlink()
        path = log_file(tmp_path)
        with open(path, "ab") as f:
            f.write(b"torn")
        engine, plog = await reopen(tmp_path)
        assert engine.clean_shutdown
        assert await read_all(plog) == stored
        assert path.stat().st_size == 6 * SIZE
        await engine.close()

    asyncio.run(main())


def test_clean_shutdown_still_validates_the_active_tail(tmp_path: Path) -> None:
    async def main() -> None:
        stored = await fill(tmp_path, 6, {"index.interval.bytes": str(2 * SIZE)}, crash=False)
        path = log_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[5 * SIZE + 90] ^= 1  # the last batch, after the last index entry
        path.write_bytes(bytes(data))
        engine, plog = await reopen(tmp_path)
        assert engine.clean_shutdown
        assert await read_all(plog) == stored[:5]
        await engine.close()

    asyncio.run(main())


def test_log_start_offset_past_the_recovered_end_restarts_the_log(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        for _ in range(5):
            await plog.append([batch(1, value_size=100)])
        await plog.delete_records_before(5)
        await crash_engine(engine)
        os.truncate(log_file(tmp_path), 2 * SIZE)
        engine, plog = await reopen(tmp_path)
        assert (plog.log_start_offset, plog.log_end_offset) == (5, 5)
        assert (await plog.append([batch(1)])).base_offset == 5
        assert os.listdir(tmp_path / "t-0") == [segment_name(5) + ".log"]
        await engine.close()

    asyncio.run(main())


def test_stray_files_are_removed(tmp_path: Path) -> None:
    async def main() -> None:
        await fill(tmp_path, 2, crash=False)
        directory = tmp_path / "t-0"
        for name in [segment_name(77) + ".index", segment_name(77) + ".timeindex",
                     segment_name(0) + ".index.tmp", "notes.txt"]:
            (directory / name).write_bytes(b"x")
        engine, _ = await reopen(tmp_path)
        # The producer state snapshot written at the clean close stays.
        assert sorted(os.listdir(directory)) == sorted(
            [segment_name(0) + s for s in (".log", ".index", ".timeindex")]
            + [segment_name(2) + ".snapshot", "notes.txt"])
        await engine.close()

    asyncio.run(main())


def test_corrupt_trusted_segment_is_never_served(tmp_path: Path) -> None:
    async def main() -> None:
        await fill(tmp_path, 9, {"segment.bytes": str(3 * SIZE)}, crash=False)
        path = log_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[SIZE + 70] ^= 1
        path.write_bytes(bytes(data))
        (tmp_path / "t-0" / (segment_name(0) + ".index")).unlink()
        engine, plog = await reopen(tmp_path)
        with pytest.raises(CorruptLog):
            await plog.read(0, 10**6, True)
        got = await plog.read(3, 10**6, True)  # later segments are fine
        assert got.size == 6 * SIZE
        await engine.close()

    asyncio.run(main())


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from strom.config.broker import BrokerConfig
    from strom.storage.local import LocalEngine
    from tests.unit.batch_factory import batch

    async def main():
        data_dir = Path(sys.argv[1])
        engine = LocalEngine(data_dir, BrokerConfig.build(data_dir, "localhost", 0,
                                                          {"flush.messages": "1"}))
        await engine.open()
        await engine.create_topic("t", 1, {"segment.bytes": "5000"})
        plog = engine.partition("t", 0)
        i = 0
        while True:
            result = await plog.append([batch(1, base_timestamp=i, value_size=100)])
            print(result.last_offset, flush=True)
            i += 1

    asyncio.run(main())
""")


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "data")],
                             stdout=subprocess.PIPE, cwd=root, env={**os.environ,
                                                                    "PYTHONPATH": str(root)})
    assert child.stdout is not None
    acked = -1
    try:
        while acked < 150:
            line = child.stdout.readline()
            assert line, "the writer died"
            acked = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()

    async def main() -> None:
        engine = engine_for(tmp_path / "data")
        await engine.open()
        plog = engine.partition("t", 0)
        assert plog.log_end_offset > acked
        batches = await read_all(plog)
        assert [batch_base_offset(b) for b in batches] == list(range(plog.log_end_offset))
        await engine.close()

    asyncio.run(main())
