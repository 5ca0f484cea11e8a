"""GroupRuntime answers in write order, as Kafka's coordinator runtime does: a step without
records (a Stable group's SyncGroup, a heartbeat) and the parked calls it completes wait for the
`__consumer_offsets` writes of its shard started before it; a write that fails (its caller gets
NOT_COORDINATOR and the shard reloads) still lets later answers go."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from strom.broker.coordinator_runtime import CoordinatorError
from strom.broker.group_runtime import GroupRuntime
from strom.config.broker import BrokerConfig
from strom.coordinator.group.model import (
    Completion,
    GroupConfig,
    GroupLogRecord,
    PendingKey,
    Step,
    SyncResult,
)
from strom.protocol.messages import ErrorCode
from strom.storage.memory.engine import MemoryEngine


class GatedLog:
    """A partition log whose appends wait for `gate` (and then fail if `error` is set)."""

    def __init__(self, log: Any, gate: asyncio.Event, error: Exception | None) -> None:
        self._log = log
        self._gate = gate
        self._error = error

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        await self._gate.wait()
        if self._error is not None:
            raise self._error
        return await self._log.append(*args, **kwargs)


class GatedEngine:
    def __init__(self, engine: MemoryEngine, error: Exception | None = None) -> None:
        self._engine = engine
        self.gate = asyncio.Event()
        self._error = error

    def partition(self, name: str, index: int) -> Any:
        return GatedLog(self._engine.partition(name, index), self.gate, self._error)


RECORD = GroupLogRecord(0, b"key", b"value")
SYNC: PendingKey = ("sync", "g", "follower")
ANSWER = SyncResult(0, "consumer", "range", b"assignment")


async def with_runtime(tmp_path: Path, body: Any, error: Exception | None = None) -> None:
    engine = MemoryEngine(BrokerConfig.build(tmp_path, "127.0.0.1", 0, {}))
    await engine.open()
    runtime = GroupRuntime(engine, GroupConfig(offsets_topic_partitions=1),
                           engine.config.node_id)
    await runtime.start()
    gated = GatedEngine(engine, error)
    runtime.runtime.engine = gated  # type: ignore[assignment]
    try:
        await body(Runner(runtime), gated)
    finally:
        gated.gate.set()
        await runtime.stop()
        await engine.close()


class Runner:
    """Runs steps on the runtime's one shard, as a handler's `write` does."""

    def __init__(self, runtime: GroupRuntime) -> None:
        self.runtime = runtime

    async def run(self, step: Step[Any]) -> Any:
        return await self.runtime._run(self.runtime.runtime.shard(0), step)


async def spin() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_an_answer_without_records_waits_for_the_write_in_flight(tmp_path: Path) -> None:
    async def body(runtime: Runner, gated: GatedEngine) -> None:
        parked = asyncio.ensure_future(runtime.run(Step(None, SYNC)))
        await spin()
        write = asyncio.ensure_future(runtime.run(Step("leader's sync", records=(RECORD,))))
        await spin()
        # A follower's SyncGroup in the now Stable group, answered from memory, and a step
        # completing the parked call: neither leaves before the leader's write is done.
        read = asyncio.ensure_future(runtime.run(Step("follower's sync")))
        completing = asyncio.ensure_future(runtime.run(Step("join", completions=(
            Completion("sync", "g", "follower", ANSWER),))))
        await spin()
        assert not any(t.done() for t in (parked, write, read, completing))
        gated.gate.set()
        assert await asyncio.wait_for(write, 5) == "leader's sync"
        assert await asyncio.wait_for(read, 5) == "follower's sync"
        assert await asyncio.wait_for(completing, 5) == "join"
        assert await asyncio.wait_for(parked, 5) == ANSWER

    asyncio.run(with_runtime(tmp_path, body))


def test_a_step_after_the_writes_completed_is_answered_at_once(tmp_path: Path) -> None:
    async def body(runtime: Runner, gated: GatedEngine) -> None:
        gated.gate.set()
        assert await runtime.run(Step("written", records=(RECORD,))) == "written"
        gated.gate.clear()  # a later write would wait, but none is in flight
        assert await asyncio.wait_for(runtime.run(Step("read")), 1) == "read"

    asyncio.run(with_runtime(tmp_path, body))


def test_a_failed_write_fails_its_caller_and_releases_later_answers(tmp_path: Path) -> None:
    async def body(runtime: Runner, gated: GatedEngine) -> None:
        write = asyncio.ensure_future(runtime.run(Step("written", records=(RECORD,))))
        await spin()
        read = asyncio.ensure_future(runtime.run(Step("read")))
        await spin()
        assert not read.done()
        gated.gate.set()
        with pytest.raises(CoordinatorError, match="disk") as failed:
            await asyncio.wait_for(write, 5)
        assert failed.value.error == ErrorCode.not_coordinator
        assert await asyncio.wait_for(read, 5) == "read"

    asyncio.run(with_runtime(tmp_path, body, OSError("disk failed")))
