"""The admin APIs of a cluster called directly (no sockets), with the engine's leadership and
assignment scripted per partition: ElectLeaders answers as Kafka's ReplicationControlManager
(and moves the leases only when one is out of place), ListPartitionReassignments lists the
pins not reached yet with Kafka's adding/removing fields, a cancellation unpins, an acks=all
produce is refused below min.insync.replicas in-sync replicas, DescribeLogDirs answers for
every engine, and the internal topics get min(setting, live brokers) replicas."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kio.static.primitive import i16, i32Timedelta

from strom.broker.handlers.configs import ConfigSource, broker_config_views
from strom.broker.internal_topic_create import create_internal_topic
from strom.broker.state import Broker
from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.storage.api import (
    Assignment,
    BrokerRegistration,
    Leadership,
    LogDirDescription,
    StorageError,
    TopicInfo,
)
from strom.storage.memory import MemoryEngine
from tests.unit.batch_factory import batch
from tests.unit.test_handlers_admin import TIMEOUT, E, call, create, run, schema
from tests.unit.test_handlers_replicas import (
    ALTER_REASSIGNMENTS,
    ELECT_LEADERS,
    LIST_REASSIGNMENTS,
    elect_request,
    reassign_request,
)

PRODUCE, DESCRIBE_LOG_DIRS = 0, 35
PREFERRED_UNAVAILABLE = "The preferred leader was not available."


class Cluster:
    """Scripts the engine's view of a cluster: per (topic, partition), who leads it and where
    it belongs; records rebalance() and reassign() calls."""

    def __init__(self, broker: Broker) -> None:
        self.engine = broker.engine
        self.leaders: dict[tuple[str, int], Leadership] = {}
        self.placed: dict[tuple[str, int], Assignment] = {}
        self.rebalances = 0
        self.reassigned: list[tuple[str, int, Sequence[int] | None]] = []
        engine: Any = broker.engine
        self._leadership, self._assignment = engine.leadership, engine.assignment
        engine.leadership, engine.assignment = self.leadership, self.assignment
        engine.rebalance, engine.reassign = self.rebalance, self.reassign

    def set(self, topic: str, index: int, leader: int | None, replicas: tuple[int, ...],
            placed: Assignment) -> None:
        self.leaders[(topic, index)] = Leadership(leader, 4, replicas)
        self.placed[(topic, index)] = placed

    def leadership(self, name: str, index: int) -> Leadership:
        found = self.leaders.get((name, index))
        return self._leadership(name, index) if found is None else found

    def assignment(self, name: str, index: int) -> Assignment:
        found = self.placed.get((name, index))
        return self._assignment(name, index) if found is None else found

    async def rebalance(self) -> None:
        self.rebalances += 1

    async def reassign(self, name: str, index: int, replicas: Sequence[int] | None) -> None:
        self.reassigned.append((name, index, replicas))


def rows(answer: Any) -> list[tuple[str, int, int, str | None]]:
    return [(r.topic, p.partition_id, p.error_code, p.error_message)
            for r in answer.replica_election_results for p in r.partition_result]


def test_preferred_elections(tmp_path: Path) -> None:
    async def body(broker: Broker) -> tuple[Any, Any, int]:
        await create(broker, "t", 5)
        await create(broker, "a", 1)
        cluster = Cluster(broker)
        cluster.set("t", 0, 1, (1, 2), Assignment(1, 1))  # where it belongs
        cluster.set("t", 1, 1, (1, 2), Assignment(2, 2))  # belongs to 2: moves
        cluster.set("t", 2, None, (), Assignment(2, 2))  # no leader: 2 takes it
        cluster.set("t", 3, 1, (1,), Assignment(3, 1, (3, 1)))  # pinned to 3, which is down
        cluster.set("t", 4, None, (), Assignment(None, None))  # no broker live
        named = await call(broker, ELECT_LEADERS, 2, elect_request(2, {"t": list(range(5))}))
        every = await call(broker, ELECT_LEADERS, 2, elect_request(2, None))
        return named, every, cluster.rebalances

    named, every, rebalances = run(tmp_path, body)
    assert rows(named) == [
        ("t", 0, E.election_not_needed, None), ("t", 1, E.none, None), ("t", 2, E.none, None),
        ("t", 3, E.preferred_leader_not_available, PREFERRED_UNAVAILABLE),
        ("t", 4, E.preferred_leader_not_available, PREFERRED_UNAVAILABLE)]
    # null partitions: every topic listed, only the partitions that needed an election
    assert [(r.topic, len(r.partition_result)) for r in every.replica_election_results] == [
        ("a", 0), ("t", 4)]
    assert [row[1:3] for row in rows(every)] == [
        (1, E.none), (2, E.none), (3, E.preferred_leader_not_available),
        (4, E.preferred_leader_not_available)]
    assert rebalances == 2  # once per request that moves leases, not once per partition


def test_unclean_elections(tmp_path: Path) -> None:
    async def body(broker: Broker) -> tuple[Any, int]:
        await create(broker, "t", 3)
        cluster = Cluster(broker)
        cluster.set("t", 0, 2, (2,), Assignment(1, 1))  # led, though not where it belongs
        cluster.set("t", 1, None, (), Assignment(2, 2))
        cluster.set("t", 2, None, (), Assignment(None, None))
        answer = await call(broker, ELECT_LEADERS, 1,
                            elect_request(1, {"t": [0, 1, 2]}, election=1))
        return answer, cluster.rebalances

    answer, rebalances = run(tmp_path, body)
    assert rows(answer) == [
        ("t", 0, E.election_not_needed, None), ("t", 1, E.none, None),
        ("t", 2, E.eligible_leaders_not_available,
         "Eligible topic partition leaders are not available.")]
    assert rebalances == 1


def test_no_election_moves_nothing(tmp_path: Path) -> None:
    async def body(broker: Broker) -> int:
        await create(broker, "t", 2)
        cluster = Cluster(broker)  # a single broker's answers: everything where it belongs
        await call(broker, ELECT_LEADERS, 2, elect_request(2, {"t": [0, 1, 7]}))
        await call(broker, ELECT_LEADERS, 2, elect_request(2, None, election=1))
        return cluster.rebalances

    assert run(tmp_path, body) == 0


def list_request(topics: dict[str, list[int]] | None) -> Any:
    m = schema(LIST_REASSIGNMENTS, 0)
    wanted = None if topics is None else tuple(
        m.ListPartitionReassignmentsTopics(name=name, partition_indexes=tuple(parts))
        for name, parts in topics.items())
    return m.ListPartitionReassignmentsRequest(timeout=TIMEOUT, topics=wanted)


def listed(answer: Any) -> dict[tuple[str, int], tuple[tuple[int, ...], ...]]:
    return {(t.name, p.partition_index): (p.replicas, p.adding_replicas, p.removing_replicas)
            for t in answer.topics for p in t.partitions}


def test_reassignments_in_progress(tmp_path: Path) -> None:
    async def body(broker: Broker) -> tuple[Any, Any]:
        await create(broker, "a", 4)
        await create(broker, "b", 1)
        cluster = Cluster(broker)
        cluster.set("a", 0, 1, (1, 2), Assignment(2, 2, (2, 3)))  # moving to 2
        cluster.set("a", 1, 2, (2, 3), Assignment(2, 2, (2, 3)))  # done
        cluster.set("a", 2, 1, (1,), Assignment(2, 1, (2,)))  # pinned to 2, which is down
        cluster.set("a", 3, 1, (1,), Assignment(1, 1))  # not pinned
        cluster.set("b", 0, 2, (2,), Assignment(2, 2, (2,)))
        every = await call(broker, LIST_REASSIGNMENTS, 0, list_request(None))
        named = await call(broker, LIST_REASSIGNMENTS, 0, list_request(
            {"a": [0, 1, 9], "b": [0], "gone": [0]}))
        return every, named

    every, named = run(tmp_path, body)
    assert every.error_code == E.none and every.error_message is None
    assert listed(every) == {("a", 0): ((2, 3, 1), (3,), (1,)),
                             ("a", 2): ((2, 1), (2,), (1,))}
    assert [t.name for t in named.topics] == ["a"]  # topics with nothing in progress left out
    assert listed(named) == {("a", 0): ((2, 3, 1), (3,), (1,))}


def test_cancelling_a_pin_gives_the_partition_back(tmp_path: Path) -> None:
    async def body(broker: Broker) -> tuple[Any, list[Any]]:
        await create(broker, "t", 2)
        cluster = Cluster(broker)
        cluster.set("t", 0, 2, (2,), Assignment(2, 2, (2,)))  # pinned, and there already
        answer = await call(broker, ALTER_REASSIGNMENTS, 1, reassign_request(
            1, {("t", 0): None, ("t", 1): None}))
        return answer, cluster.reassigned

    answer, reassigned = run(tmp_path, body)
    assert [(p.partition_index, p.error_code, p.error_message)
            for t in answer.responses for p in t.partitions] == [
        (0, E.none, None),
        (1, E.no_reassignment_in_progress, "No partition reassignment is in progress.")]
    assert reassigned == [("t", 0, None)]


# --- min.insync.replicas ---------------------------------------------------------------------


def produce_request(topic: str, acks: int) -> Any:
    m = schema(PRODUCE, 9)
    return m.ProduceRequest(
        transactional_id=None, acks=i16(acks),
        timeout=i32Timedelta.parse(timedelta(seconds=5)),
        topic_data=(m.TopicProduceData(name=topic, partition_data=(
            m.PartitionProduceData(index=0, records=bytes(batch(2).data)),)),))


def produced(answer: Any) -> tuple[int, str | None]:
    [topic] = answer.responses
    [partition] = topic.partition_responses
    return partition.error_code, partition.error_message


def test_acks_all_needs_min_insync_replicas(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[tuple[int, str | None]]:
        await create(broker, "strict", 1, {"min.insync.replicas": "2"})
        await create(broker, "easy", 1)
        answers = [await call(broker, PRODUCE, 9, produce_request(topic, acks))
                   for topic, acks in (("strict", -1), ("strict", 1), ("easy", -1))]
        Cluster(broker).set("strict", 0, 1, (1, 2), Assignment(1, 1))  # two in sync
        answers.append(await call(broker, PRODUCE, 9, produce_request("strict", -1)))
        return [produced(a) for a in answers]

    too_few, acks_one, default, two = run(tmp_path, body)
    assert too_few == (E.not_enough_replicas,
                       "The size of the current ISR Set(1) is insufficient to satisfy the "
                       "min.isr requirement of 2 for partition strict-0")
    assert acks_one == default == two == (E.none, None)


def test_min_insync_replicas_is_checked_as_kafka_does(tmp_path: Path) -> None:
    for value in ("0", "-1", "x"):
        with pytest.raises(ConfigError, match=re.escape("min.insync.replicas")):
            BrokerConfig.build(tmp_path, "localhost", 0, {"min.insync.replicas": value})
    config = BrokerConfig.build(tmp_path, "localhost", 0, {"min.insync.replicas": "2"})
    assert config.log_config({}).min_insync_replicas == 2
    assert config.log_config({"min.insync.replicas": "3"}).min_insync_replicas == 3


# --- internal topics' replication factor -----------------------------------------------------


@pytest.mark.parametrize("name", ["offsets.topic.replication.factor",
                                  "transaction.state.log.replication.factor"])
def test_internal_replication_factor_settings(tmp_path: Path, name: str) -> None:
    for value in ("0", "-2", "32768"):
        with pytest.raises(ConfigError, match=re.escape(name)):
            BrokerConfig.build(tmp_path, "localhost", 0, {name: value})

    async def body(broker: Broker) -> Any:
        return {v.name: v for v in broker_config_views(broker)}[name]

    view = run(tmp_path, body, {name: "2"})
    assert ([(s.value, s.source) for s in view.synonyms], view.kind) == (
        [("2", ConfigSource.STATIC_BROKER_CONFIG), ("3", ConfigSource.DEFAULT_CONFIG)], "SHORT")


class CreatingEngine:
    """Just enough of an engine for create_internal_topic: live brokers and create_topic."""

    def __init__(self, live: Sequence[int]) -> None:
        self.live = live
        self.created: list[tuple[str, int, int]] = []

    async def brokers(self) -> Sequence[BrokerRegistration]:
        return [BrokerRegistration(n, "h", 9092) for n in self.live]

    async def create_topic(self, name: str, partitions: int, configs: Any,
                           replication_factor: int = 1) -> TopicInfo:
        self.created.append((name, partitions, replication_factor))
        raise StorageError("not really")


@pytest.mark.parametrize(("live", "setting", "expected"), [
    ((), 3, 1),  # this broker, not registered yet, is live
    ((1, 2), 3, 2), ((1, 2, 3, 4), 3, 3), ((2, 3), 1, 1), ((2, 3), 5, 3)])
def test_internal_topics_get_at_most_the_live_brokers(live: tuple[int, ...], setting: int,
                                                      expected: int) -> None:
    engine = CreatingEngine(live)
    with pytest.raises(StorageError):
        asyncio.run(create_internal_topic(engine, OFFSETS_TOPIC, 5, {}, 1,  # type: ignore[arg-type]
                                          setting))
    assert engine.created == [(OFFSETS_TOPIC, 5, expected)]


def test_a_broker_alone_creates_the_offsets_topic_with_one_replica(tmp_path: Path) -> None:
    async def body(broker: Broker) -> int:
        await broker.groups.start()
        try:
            return broker.engine.topics()[OFFSETS_TOPIC].replication_factor
        finally:
            await broker.groups.stop()

    assert run(tmp_path, body, {"offsets.topic.num.partitions": "2"}) == 1


# --- DescribeLogDirs -------------------------------------------------------------------------


def describe_log_dirs(broker: Broker) -> Any:
    m = schema(DESCRIBE_LOG_DIRS, 4)
    return call(broker, DESCRIBE_LOG_DIRS, 4, m.DescribeLogDirsRequest(topics=None))


def test_describe_log_dirs_of_the_memory_engine(tmp_path: Path) -> None:
    async def main() -> Any:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, {}, "memory:")
        engine = MemoryEngine(config)
        await engine.open()
        try:
            broker = Broker(config, engine)
            await create(broker, "t", 2)
            return await describe_log_dirs(broker)
        finally:
            await engine.close()

    (result,) = asyncio.run(main()).results
    assert (result.error_code, result.log_dir, result.total_bytes, result.usable_bytes) == (
        E.none, "memory:", -1, -1)
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in result.topics] == [
        ("t", [0, 1])]


def test_describe_log_dirs_when_the_engine_fails(tmp_path: Path) -> None:
    async def body(broker: Broker) -> Any:
        async def failing() -> LogDirDescription:
            raise OSError("the disk went away")

        broker.engine.describe_log_dir = failing  # type: ignore[method-assign]
        return await describe_log_dirs(broker)

    (result,) = run(tmp_path, body).results
    assert (result.error_code, result.log_dir, result.total_bytes, result.topics) == (
        E.kafka_storage_error, str(tmp_path.resolve()), -1, ())


# --- broker.rack -----------------------------------------------------------------------------


def test_broker_rack_is_registered_and_described(tmp_path: Path) -> None:
    assert BrokerConfig.build(tmp_path, "localhost", 0, {}).rack is None

    async def body(broker: Broker) -> tuple[BrokerRegistration, list[Any]]:
        return broker.registration(), broker_config_views(broker)

    registration, views = run(tmp_path, body, {"broker.rack": " eu-west-1a "})
    assert registration.rack == "eu-west-1a"
    [rack] = [v for v in views if v.name == "broker.rack"]
    assert (rack.value, rack.kind) == ("eu-west-1a", "STRING")


# --- what a client cannot learn otherwise: strom's version and storage engine ----------------


@pytest.mark.parametrize(("storage", "engine"), [
    ("", "file"), ("file:./data", "file"), ("memory:", "memory"),
    ("postgresql://strom:secret@db:5432/strom", "postgresql"),
    ("postgres://strom:secret@db/strom", "postgresql")])
def test_storage_engine_names_the_engine_never_its_url(tmp_path: Path, storage: str,
                                                      engine: str) -> None:
    config = BrokerConfig.build(tmp_path, "localhost", 0, storage=storage)
    assert config.storage_engine == engine


def test_broker_configs_name_the_version_and_storage_engine(tmp_path: Path) -> None:
    from strom import __version__

    async def body(broker: Broker) -> Any:
        return {v.name: v for v in broker_config_views(broker)}

    views = run(tmp_path, body, {})
    engine, version = views["strom.storage.engine"], views["strom.version"]
    assert (engine.value, engine.read_only, engine.sensitive) == ("file", True, False)
    assert (version.value, version.read_only, version.kind) == (__version__, True, "STRING")
