"""A Broker over the in-memory engine with a clock the test moves, for the coordinator runtime
tests (tests/unit/test_coordinator_runtime.py, test_coordinator_answers.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from strom.broker.state import Broker
from strom.config.broker import BrokerConfig
from strom.coordinator.hashing import partition_for
from strom.storage.memory import MemoryEngine

SETTINGS = {"offsets.topic.num.partitions": "3", "transaction.state.log.num.partitions": "3"}
DATA = "data"


class Clock:
    """A clock the test moves; the runtimes read it for every step and timer."""

    def __init__(self) -> None:
        self.now_ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now_ms


def run(tmp_path: Path, body: Callable[[Broker, Clock], Awaitable[None]]) -> None:
    async def main() -> None:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, SETTINGS)
        engine = MemoryEngine(config)
        await engine.open()
        clock = Clock()
        broker = Broker(config, engine)
        broker.groups.runtime.clock = clock
        broker.transactions.runtime.clock = clock
        await broker.groups.start()
        await broker.transactions.start()
        await engine.create_topic(DATA, 1, {})
        try:
            await body(broker, clock)
        finally:
            await broker.transactions.stop()
            await broker.groups.stop()
            await engine.close()

    asyncio.run(main())


def key_on(partition: int, count: int = 3, prefix: str = "g") -> str:
    """A group or transactional id that maps to `partition` of `count`."""
    return next(f"{prefix}{i}" for i in range(1000) if partition_for(f"{prefix}{i}", count)
                == partition)


async def eventually(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


def gate(plog: Any, method: str) -> asyncio.Event:
    """Makes `plog.method` wait until the returned event is set."""
    original = getattr(plog, method)
    opened = asyncio.Event()

    async def gated(*args: Any, **kwargs: Any) -> Any:
        await opened.wait()
        return await original(*args, **kwargs)

    setattr(plog, method, gated)
    return opened
