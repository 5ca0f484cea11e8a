"""aiokafka static members (KIP-345) joining one group one after the other: once the second
member's JoinGroup and SyncGroup have completed and it has done an OffsetFetch, the first member
(the leader) already holds its new assignment, as with Apache Kafka, even while the group's
`__consumer_offsets` writes are slow (a SyncGroup is never answered ahead of a write in flight)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from strom.broker.group_runtime import GroupRuntime
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, unique_name
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

PARTITIONS = 4
SLOW_WRITE_S = 0.3


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


class SlowAppends:
    """A partition log whose appends take `delay_s` longer (a disk under load)."""

    def __init__(self, log: Any, delay_s: float) -> None:
        self._log = log
        self._delay_s = delay_s

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._delay_s)
        return await self._log.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class SlowOffsetsEngine:
    """The broker's engine, but every `__consumer_offsets` append is slow."""

    def __init__(self, engine: Any, delay_s: float) -> None:
        self._engine = engine
        self._delay_s = delay_s

    def partition(self, name: str, index: int) -> Any:
        return SlowAppends(self._engine.partition(name, index), self._delay_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@pytest.fixture
def slow_group_writes(broker: EmbeddedBroker) -> Iterator[None]:
    server = broker.server
    assert server is not None and server.broker is not None
    runtime: GroupRuntime = server.broker.groups
    engine = runtime.engine
    runtime.engine = SlowOffsetsEngine(engine, SLOW_WRITE_S)  # type: ignore[assignment]
    try:
        yield
    finally:
        runtime.engine = engine


def static_member(bootstrap: str, topic: str, group: str, instance: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                            group_instance_id=instance, enable_auto_commit=False,
                            auto_offset_reset="earliest", session_timeout_ms=6000,
                            heartbeat_interval_ms=100, request_timeout_ms=10000)


async def second_member_joins(bootstrap: str, topic: str, group: str,
                              ) -> tuple[set[int], set[int], set[int]]:
    """(the leader's partitions before, the second member's, the leader's right after the
    second member's first OffsetFetch)."""
    first = static_member(bootstrap, topic, group, "static-a")
    second = static_member(bootstrap, topic, group, "static-b")
    await first.start()  # returns once the first member has its assignment
    try:
        before = {tp.partition for tp in first.assignment()}
        await asyncio.wait_for(second.start(), DEADLINE_S)  # its JoinGroup and SyncGroup
        try:
            mine = set(second.assignment())
            assert mine, "the second member started without an assignment"
            await second.committed(next(iter(mine)))  # one OffsetFetch
            return before, {tp.partition for tp in mine}, {tp.partition for tp in
                                                           first.assignment()}
        finally:
            await second.stop()
    finally:
        await first.stop()


def test_the_leader_has_its_new_assignment_when_the_second_static_member_is_synced(
        broker: EmbeddedBroker, new_topic: Callable[..., str], slow_group_writes: None) -> None:
    topic = new_topic(partitions=PARTITIONS, prefix="static-aio")
    before, second, leader = asyncio.run(second_member_joins(
        broker.bootstrap_servers, topic, unique_name("static-aio")))
    assert before == set(range(PARTITIONS))
    assert len(second) == PARTITIONS // 2
    assert leader == set(range(PARTITIONS)) - second
