"""Every engine passes strom.testing.check_storage_engine, the storage contract in executable
form; and the checker itself catches an engine that breaks a rule."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.local import LocalEngine
from strom.storage.local.partition_log import LocalPartitionLog
from strom.storage.memory import MemoryEngine
from strom.testing import check_storage_engine


def local_factory(path: Path) -> LocalEngine:
    return LocalEngine(path, BrokerConfig.build(path, "localhost", 0))


def test_the_local_engine_conforms(tmp_path: Path) -> None:
    asyncio.run(check_storage_engine(lambda: local_factory(tmp_path)))


def test_the_checker_catches_a_broken_rule(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine whose duplicate check is gone appends a producer's retry twice."""
    async def no_checks(self: LocalPartitionLog, batches, verification=None):  # type: ignore[no-untyped-def]
        return await self.append(batches)

    monkeypatch.setattr(LocalPartitionLog, "produce", no_checks)
    with pytest.raises(AssertionError):
        asyncio.run(check_storage_engine(lambda: local_factory(tmp_path)))


def test_the_memory_engine_conforms() -> None:
    config = BrokerConfig.build(Path("unused"), "localhost", 0)
    asyncio.run(check_storage_engine(lambda: MemoryEngine(config), durable=False))


def test_the_postgresql_engine_conforms(postgres_url: str) -> None:
    from strom.storage.postgres import PostgresEngine

    config = BrokerConfig.build(Path("unused"), "localhost", 0, storage=postgres_url)
    asyncio.run(check_storage_engine(lambda: PostgresEngine(postgres_url, config)))
