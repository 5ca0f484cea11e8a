"""LocalEngine: topic metadata, persistence across close/reopen, partitions, configs."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import StorageError, TopicExists, UnknownTopic
from strom.storage.local import LocalEngine
from strom.storage.local.engine import CLEAN_SHUTDOWN_FILE
from tests.unit.batch_factory import batch


def engine_for(tmp_path: Path, settings: dict[str, str] | None = None) -> LocalEngine:
    return LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0, settings))


def test_topics_persist_across_reopen(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        a = await engine.create_topic("orders", 3, {"retention.ms": "1000"})
        b = await engine.create_topic("a-1.b_c", 1, {})
        assert a.partitions == 3 and dict(a.configs) == {"retention.ms": "1000"}
        assert engine.topic_by_id(a.topic_id) == a
        await engine.partition("orders", 2).append([batch(3)])
        await engine.close()
        assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()

        engine = engine_for(tmp_path)
        await engine.open()
        assert engine.clean_shutdown and not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
        assert dict(engine.topics()) == {"orders": a, "a-1.b_c": b}
        assert engine.topic_by_id(b.topic_id) == b
        assert engine.partition("orders", 2).log_end_offset == 3
        assert engine.log_config("orders").retention_ms == 1000
        assert sorted(os.listdir(tmp_path / "__topics")) == ["a-1.b_c.json", "orders.json"]
        doc = json.loads((tmp_path / "__topics" / "orders.json").read_text())
        assert doc["topic_id"] == str(a.topic_id) and doc["partitions"] == 3
        await engine.close()

    asyncio.run(main())


def test_topic_errors(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        with pytest.raises(StorageError):
            await engine.create_topic("early", 1, {})
        await engine.open()
        await engine.create_topic("t", 2, {})
        with pytest.raises(TopicExists):
            await engine.create_topic("t", 1, {})
        for call in (engine.delete_topic("nope"), engine.create_partitions("nope", 3),
                     engine.set_topic_configs("nope", {})):
            with pytest.raises(UnknownTopic):
                await call
        with pytest.raises(UnknownTopic):
            engine.partition("nope", 0)
        with pytest.raises(UnknownTopic):
            engine.partition("t", 2)
        with pytest.raises(UnknownTopic):
            engine.partition("t", -1)
        with pytest.raises(UnknownTopic):
            engine.log_config("nope")
        with pytest.raises(ValueError):
            await engine.create_topic("../evil", 1, {})
        with pytest.raises(ValueError):
            await engine.create_topic("zero", 0, {})
        with pytest.raises(ValueError):
            await engine.create_partitions("t", 2)
        await engine.close()

    asyncio.run(main())


def test_delete_topic_removes_everything(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        info = await engine.create_topic("t", 2, {})
        plog = engine.partition("t", 0)
        for _ in range(5):
            await plog.append([batch(1)])
        await plog.delete_records_before(3)
        await engine.delete_topic("t")
        assert "t" not in engine.topics() and engine.topic_by_id(info.topic_id) is None
        assert not (tmp_path / "t-0").exists() and not (tmp_path / "t-1").exists()
        assert not (tmp_path / "__topics" / "t.json").exists()
        assert not [n for n in os.listdir(tmp_path) if n.endswith("-delete")]
        with pytest.raises(UnknownTopic):
            await plog.append([batch(1)])  # a stale handle fails cleanly
        again = await engine.create_topic("t", 1, {})  # starts empty, no stale offsets
        assert again.topic_id != info.topic_id
        assert engine.partition("t", 0).log_start_offset == 0
        await engine.close()
        engine = engine_for(tmp_path)
        await engine.open()
        assert engine.partition("t", 0).log_start_offset == 0
        assert engine.partition("t", 0).log_end_offset == 0
        await engine.close()

    asyncio.run(main())


def test_interrupted_delete_is_finished_on_open(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "t-0.0123abcd-delete").mkdir(parents=True)
        (tmp_path / "t-0.0123abcd-delete" / "00000000000000000000.log").write_bytes(b"x")
        (tmp_path / "ghost-0").mkdir()
        engine = engine_for(tmp_path)
        await engine.open()
        assert not (tmp_path / "t-0.0123abcd-delete").exists()
        assert (tmp_path / "ghost-0").exists()  # unknown partitions are left alone...
        assert "ghost" not in engine.topics()
        await engine.create_topic("ghost", 1, {})  # ...until that partition is created
        assert os.listdir(tmp_path / "ghost-0") == ["00000000000000000000.log"]
        await engine.close()

    asyncio.run(main())


def test_create_partitions_and_configs_persist(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path, {"log.retention.ms": "5000"})
        await engine.open()
        await engine.create_topic("t", 1, {"segment.bytes": "1000"})
        info = await engine.create_partitions("t", 4)
        assert info.partitions == 4 and engine.topics()["t"].partitions == 4
        await engine.partition("t", 3).append([batch(2)])
        assert engine.log_config("t").retention_ms == 5000  # the broker default
        info = await engine.set_topic_configs("t", {"retention.ms": "42"})
        assert dict(info.configs) == {"retention.ms": "42"}  # replaced, not merged
        assert engine.log_config("t").segment_bytes == 1024**3
        assert engine.partition("t", 3).config.retention_ms == 42
        sizes = {(s.topic, s.partition): s.size_bytes for s in engine.partition_sizes()}
        assert sizes[("t", 0)] == 0 and sizes[("t", 3)] > 0 and len(sizes) == 4
        await engine.close()

        engine = engine_for(tmp_path)
        await engine.open()
        assert engine.topics()["t"].partitions == 4
        assert dict(engine.topics()["t"].configs) == {"retention.ms": "42"}
        assert engine.partition("t", 3).log_end_offset == 2
        await engine.close()

    asyncio.run(main())


def test_flush_due_and_recovery_point_checkpoint(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path, {"flush.ms": "0"})
        await engine.open()
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        await plog.append([batch(4)])
        assert plog.recovery_point == 0
        await engine.flush_due(int(time.time() * 1000))
        assert plog.recovery_point == 4
        engine._last_recovery_checkpoint -= 3600
        await engine.flush_due(int(time.time() * 1000))
        text = (tmp_path / "recovery-point-offset-checkpoint").read_text()
        assert text == "0\n1\nt 0 4\n"
        await engine.close()

    asyncio.run(main())


def test_many_partitions_open_fast(tmp_path: Path) -> None:
    async def main() -> float:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("many", 1000, {})
        for p in range(0, 1000, 7):
            await engine.partition("many", p).append([batch(2)])
        await engine.close()
        engine = engine_for(tmp_path)
        start = time.perf_counter()
        await engine.open()
        elapsed = time.perf_counter() - start
        assert engine.partition("many", 994).log_end_offset == 2
        await engine.close()
        return elapsed

    elapsed = asyncio.run(main())
    print(f"opened 1,000 partitions in {elapsed:.3f} s")
    assert elapsed < 0.5, f"opening 1,000 partitions took {elapsed:.3f} s"
