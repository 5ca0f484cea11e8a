"""Partition leases between engines sharing one database (storage/postgres/cluster_sync.py,
leases.py): the balanced share each broker leads, hand-over at a clean stop with nothing lost
and producer state intact, a dead broker's leases taken after its session expires, a broker
that cannot renew its session refusing appends before that, and a paused broker fenced by the
leader epoch when it wakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.api import BrokerRegistration, NotLeader
from strom.storage.postgres import PostgresEngine
from strom.storage.postgres.status import Status
from strom.testing.postgres import PostgresServer
from strom.testing.storage_conformance import appended, data_batch, read_records

FAST = {"broker.heartbeat.interval.ms": "200", "broker.session.timeout.ms": "1500"}
TOPIC = "leased"
PARTITIONS = 12


def engine_for(url: str, node: int) -> PostgresEngine:
    config = BrokerConfig.build(Path("unused"), "127.0.0.1", 9000 + node,
                                {**FAST, "node.id": str(node)}, storage=url)
    return PostgresEngine(url, config)


async def started(url: str, node: int) -> PostgresEngine:
    engine = engine_for(url, node)
    await engine.open()
    await engine.register_broker(BrokerRegistration(node, "127.0.0.1", 9000 + node))
    return engine


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 10.0
                     ) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


def leaders(engine: PostgresEngine) -> list[int | None]:
    return [engine.leadership(TOPIC, i).leader for i in range(PARTITIONS)]


async def spread_topic(one: PostgresEngine, two: PostgresEngine) -> None:
    """TOPIC created on `one`; returns once both brokers agree who leads each partition and
    each leads some."""
    await one.create_topic(TOPIC, PARTITIONS, {})
    await eventually(lambda: TOPIC in two.topics())
    await eventually(lambda: leaders(one) == leaders(two) and set(leaders(one)) == {1, 2})


def idem(values: list[bytes], producer: int, seq: int) -> Any:
    return data_batch(values, producer_id=producer, producer_epoch=0, base_sequence=seq)


def silence(engine: PostgresEngine) -> None:
    """The broker stops heartbeating, as a paused or cut-off process does (its session and
    leases lapse in the database; it does not know)."""
    cluster = engine._sync()
    assert cluster._task is not None
    cluster._task.cancel()
    cluster._task = None


def wake(engine: PostgresEngine) -> None:
    """The broker heartbeats again (the paused process continues)."""
    cluster = engine._sync()
    cluster._task = asyncio.get_running_loop().create_task(cluster._run())


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_brokers_lead_their_share_and_agree_on_who_leads_what(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        one, two = await started(url, 1), await started(url, 2)
        try:
            await spread_topic(one, two)
            for index, leader in enumerate(leaders(one)):
                led, other = (one, two) if leader == 1 else (two, one)
                appended(await led.partition(TOPIC, index).produce(
                    [data_batch([b"v%d" % index])]))
                with pytest.raises(NotLeader):
                    await other.partition(TOPIC, index).produce([data_batch([b"no"])])
        finally:
            await two.close()
            await one.close()
    run(body)


def test_a_clean_stop_hands_leases_over_with_data_and_producer_state(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        one, two = await started(url, 1), await started(url, 2)
        try:
            await spread_topic(one, two)
            index = leaders(one).index(2)
            epoch = two.leadership(TOPIC, index).epoch
            first = appended(await two.partition(TOPIC, index).produce([idem([b"a"], 9, 0)]))
            await two.close()
            # Handed over by the stop itself, not left to expire: the database says so already.
            ids = [one.partition(TOPIC, i).partition_id for i in range(PARTITIONS)]
            leases = await one._sync().leases.read(5)
            assert {leases[pid].owner for pid in ids} == {1}
            plog = one.partition(TOPIC, index)
            await eventually(lambda: plog.status is Status.LOADED)  # adopted and loaded
            assert one.leadership(TOPIC, index).epoch == epoch + 1
            again = await plog.produce([idem([b"a"], 9, 0)])  # the client's retry
            assert getattr(again, "base_offset", None) == first.base_offset  # a duplicate
            appended(await plog.produce([idem([b"b"], 9, 1)]))
            assert [v for _, _, v in await read_records(plog)] == [b"a", b"b"]
            assert list(await one.leader_epochs(TOPIC, index))[-2:] == [(epoch, 0),
                                                                       (epoch + 1, 1)]
        finally:
            await two.close()  # again: closing twice is harmless
            await one.close()
    run(body)


def test_a_silent_broker_stops_appending_then_loses_its_leases(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        one, two = await started(url, 1), await started(url, 2)
        try:
            await spread_topic(one, two)
            index = leaders(one).index(2)
            appended(await two.partition(TOPIC, index).produce([data_batch([b"before"])]))
            silence(two)
            # It refuses appends itself (one heartbeat before its session can expire) before
            # the other broker takes its partitions over.
            fenced_at = moved_at = None
            deadline = time.monotonic() + 5
            while moved_at is None and time.monotonic() < deadline:
                now = time.monotonic()
                if fenced_at is None and not two._sync().lease_valid():
                    fenced_at = now
                if set(leaders(one)) == {1}:
                    moved_at = now
                await asyncio.sleep(0.01)
            assert fenced_at is not None and moved_at is not None
            assert fenced_at < moved_at
            with pytest.raises(NotLeader, match="has not confirmed"):
                await two.partition(TOPIC, index).produce([data_batch([b"late"])])
            appended(await one.partition(TOPIC, index).produce([data_batch([b"after"])]))
            assert [v for _, _, v in await read_records(one.partition(TOPIC, index))] == [
                b"before", b"after"]
        finally:
            await one.close()
            await two.close()
    run(body)


def test_a_paused_broker_wakes_fenced_and_rejoins_with_new_epochs(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        one, two = await started(url, 1), await started(url, 2)
        try:
            await spread_topic(one, two)
            index = leaders(one).index(2)
            epoch = two.leadership(TOPIC, index).epoch
            plog = two.partition(TOPIC, index)
            silence(two)
            await eventually(lambda: set(leaders(one)) == {1}, timeout_s=5)
            # It wakes: its state still says it leads at the old epoch, but the database
            # fences the append (the leader epoch moved), whatever its clock says.
            two._sync().members.valid_until = float("inf")
            with pytest.raises(NotLeader):
                await plog.produce([data_batch([b"zombie"])])
            wake(two)  # its next heartbeat: a new session, then its share back
            await eventually(lambda: leaders(one) == leaders(two) and set(leaders(one)) == {1, 2})
            assert two.leadership(TOPIC, index).epoch >= epoch + 2
            records = await read_records(one.partition(TOPIC, index)) if leaders(one)[
                index] == 1 else await read_records(two.partition(TOPIC, index))
            assert b"zombie" not in [v for _, _, v in records]
        finally:
            await one.close()
            await two.close()
    run(body)


def test_topic_changes_on_one_broker_reach_the_others(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        one, two = await started(url, 1), await started(url, 2)
        try:
            await one.create_topic(TOPIC, 2, {})
            await eventually(lambda: TOPIC in two.topics())
            await two.set_topic_configs(TOPIC, {"retention.ms": "12345"})
            await eventually(lambda: one.log_config(TOPIC).retention_ms == 12345, 3)
            await two.create_partitions(TOPIC, 6)
            await eventually(lambda: one.topics()[TOPIC].partitions == 6, 3)
            await eventually(lambda: [one.leadership(TOPIC, i).leader for i in range(6)]
                             == [two.leadership(TOPIC, i).leader for i in range(6)]
                             and None not in [one.leadership(TOPIC, i).leader
                                              for i in range(6)], 3)
            old = one.partition(TOPIC, 0)
            await two.delete_topic(TOPIC)
            await eventually(lambda: TOPIC not in one.topics(), 3)
            assert old.closed
            await one.create_topic(TOPIC, 1, {})  # a new topic of the same name
            await eventually(lambda: TOPIC in two.topics()
                             and two.topics()[TOPIC].topic_id == one.topics()[TOPIC].topic_id)
        finally:
            await one.close()
            await two.close()
    run(body)
