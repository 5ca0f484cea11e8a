"""ElectLeaders, Alter/ListPartitionReassignments, AlterReplicaLogDirs, DescribeQuorum and
ListConfigResources called directly (no sockets) at every version strom serves: each answer
encodes at its version and carries Kafka's codes and messages for one broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strom.broker.state import Broker
from tests.unit.test_handlers_admin import NODE, TIMEOUT, E, call, create, run, schema

ALTER_REPLICA_LOG_DIRS, ELECT_LEADERS, ALTER_REASSIGNMENTS = 34, 43, 45
LIST_REASSIGNMENTS, DESCRIBE_QUORUM, LIST_CONFIG_RESOURCES = 46, 55, 74


def elect_request(version: int, topics: dict[str, list[int]] | None, election: int = 0) -> Any:
    m = schema(ELECT_LEADERS, version)
    kwargs: dict[str, Any] = {"election_type": election} if version >= 1 else {}
    wanted = None if topics is None else tuple(
        m.TopicPartitions(topic=name, partitions=tuple(parts)) for name, parts in topics.items())
    return m.ElectLeadersRequest(topic_partitions=wanted, timeout=TIMEOUT, **kwargs)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_elect_leaders_every_version(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> Any:
        await create(broker, "t", 2)
        return await call(broker, ELECT_LEADERS, version,
                          elect_request(version, {"t": [1, 2], "gone": [0]}))

    answer = run(tmp_path, body)
    assert [(r.topic, p.partition_id, p.error_code, p.error_message)
            for r in answer.replica_election_results for p in r.partition_result] == [
        ("t", 1, E.election_not_needed, None),
        ("t", 2, E.unknown_topic_or_partition, "No such partition as t-2"),
        ("gone", 0, E.unknown_topic_or_partition, "No such topic as gone")]


def test_elect_leaders_of_every_partition_lists_every_topic(tmp_path: Path) -> None:
    async def body(broker: Broker) -> Any:
        await create(broker, "b", 3)
        await create(broker, "a", 1)
        return await call(broker, ELECT_LEADERS, 2, elect_request(2, None, election=1))

    answer = run(tmp_path, body)
    assert [(r.topic, r.partition_result) for r in answer.replica_election_results] == [
        ("a", ()), ("b", ())]


def reassign_request(version: int, targets: dict[tuple[str, int], list[int] | None],
                     allow_change: bool = True) -> Any:
    m = schema(ALTER_REASSIGNMENTS, version)
    topics: dict[str, list[Any]] = {}
    for (name, index), replicas in targets.items():
        topics.setdefault(name, []).append(m.ReassignablePartition(
            partition_index=index, replicas=None if replicas is None else tuple(replicas)))
    kwargs: dict[str, Any] = ({"allow_replication_factor_change": allow_change}
                              if version >= 1 else {})
    return m.AlterPartitionReassignmentsRequest(timeout=TIMEOUT, topics=tuple(
        m.ReassignableTopic(name=n, partitions=tuple(p)) for n, p in topics.items()), **kwargs)


@pytest.mark.parametrize("version", [0, 1])
def test_reassignments_every_version(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> Any:
        await create(broker, "t", 5)
        return await call(broker, ALTER_REASSIGNMENTS, version, reassign_request(version, {
            ("t", 0): [NODE], ("t", 1): None, ("t", 2): [], ("t", 3): [NODE, NODE],
            ("t", 4): [NODE + 1]}, allow_change=False))

    answer = run(tmp_path, body)
    assert answer.error_code == E.none
    if version >= 1:  # KIP-860: the request's flag comes back
        assert answer.allow_replication_factor_change is False
    assert [(p.partition_index, p.error_code, p.error_message)
            for t in answer.responses for p in t.partitions] == [
        (0, E.none, None),
        (1, E.no_reassignment_in_progress, "No partition reassignment is in progress."),
        (2, E.invalid_replica_assignment,
         "The manual partition assignment includes an empty replica list."),
        (3, E.invalid_replica_assignment,
         f"The manual partition assignment includes the broker {NODE} more than once."),
        (4, E.invalid_replica_assignment,
         f"The manual partition assignment includes broker {NODE + 1}, but no such broker "
         "is registered.")]


def test_list_reassignments_is_empty(tmp_path: Path) -> None:
    m = schema(LIST_REASSIGNMENTS, 0)

    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t", 1)
        every = await call(broker, LIST_REASSIGNMENTS, 0,
                           m.ListPartitionReassignmentsRequest(timeout=TIMEOUT, topics=None))
        named = await call(broker, LIST_REASSIGNMENTS, 0, m.ListPartitionReassignmentsRequest(
            timeout=TIMEOUT, topics=(m.ListPartitionReassignmentsTopics(
                name="t", partition_indexes=(0,)),)))
        return [every, named]

    for answer in run(tmp_path, body):
        assert (answer.error_code, answer.error_message, answer.topics) == (E.none, None, ())


@pytest.mark.parametrize("version", [1, 2])
def test_alter_replica_log_dirs_every_version(tmp_path: Path, version: int) -> None:
    m = schema(ALTER_REPLICA_LOG_DIRS, version)
    long_name = "x" * 249

    async def body(broker: Broker) -> Any:
        await create(broker, "t", 1)
        await create(broker, long_name, 1)
        here = broker.config.log_dir
        return await call(broker, ALTER_REPLICA_LOG_DIRS, version, m.AlterReplicaLogDirsRequest(
            dirs=(m.AlterReplicaLogDir(path="/elsewhere", topics=(
                      m.AlterReplicaLogDirTopic(name="t", partitions=(0, 1)),)),
                  m.AlterReplicaLogDir(path=here, topics=(
                      m.AlterReplicaLogDirTopic(name="t", partitions=(0,)),
                      m.AlterReplicaLogDirTopic(name=long_name, partitions=(0,)))))))

    answer = run(tmp_path, body)
    assert [(t.topic_name, p.partition_index, p.error_code)
            for t in answer.results for p in t.partitions] == [
        ("t", 0, E.none),  # named twice: the last directory counts, the one it is in
        ("t", 1, E.log_dir_not_found),
        (long_name, 0, E.invalid_topic_exception)]  # its "-future" directory name is too long


@pytest.mark.parametrize("version", [0, 1, 2])
def test_describe_quorum_every_version(tmp_path: Path, version: int) -> None:
    m = schema(DESCRIBE_QUORUM, version)

    async def body(broker: Broker) -> Any:
        return await call(broker, DESCRIBE_QUORUM, version, m.DescribeQuorumRequest(topics=(
            m.TopicData(topic_name="__cluster_metadata", partitions=(
                m.PartitionData(partition_index=0),)),)))

    answer = run(tmp_path, body)
    [topic] = answer.topics
    [partition] = topic.partitions
    assert (partition.error_code, partition.leader_id, partition.leader_epoch,
            partition.high_watermark) == (E.none, NODE, 0, -1)
    assert [(v.replica_id, v.log_end_offset) for v in partition.current_voters] == [(NODE, -1)]
    assert partition.observers == ()
    if version >= 2:
        assert [n.node_id for n in answer.nodes] == [NODE]


def test_describe_quorum_of_two_partitions_is_refused(tmp_path: Path) -> None:
    m = schema(DESCRIBE_QUORUM, 2)

    async def body(broker: Broker) -> Any:
        return await call(broker, DESCRIBE_QUORUM, 2, m.DescribeQuorumRequest(topics=(
            m.TopicData(topic_name="__cluster_metadata", partitions=(
                m.PartitionData(partition_index=0), m.PartitionData(partition_index=0))),)))

    answer = run(tmp_path, body)
    assert [p.error_code for t in answer.topics for p in t.partitions] == [
        E.unknown_topic_or_partition] * 2
    assert answer.nodes == ()


@pytest.mark.parametrize(("version", "types", "expected"), [
    (0, (), []),
    (1, (), [(str(NODE), 4), ("a", 2), ("b", 2)]),
    (1, (2,), [("a", 2), ("b", 2)]),
    (1, (8, 16, 32), []),
])
def test_list_config_resources(tmp_path: Path, version: int, types: tuple[int, ...],
                               expected: list[tuple[str, int]]) -> None:
    m = schema(LIST_CONFIG_RESOURCES, version)
    request = m.ListConfigResourcesRequest(resource_types=types) if version else (
        m.ListConfigResourcesRequest())

    async def body(broker: Broker) -> Any:
        await create(broker, "b", 1)
        await create(broker, "a", 1)
        return await call(broker, LIST_CONFIG_RESOURCES, version, request)

    answer = run(tmp_path, body)
    assert answer.error_code == E.none
    listed = [(r.resource_name, getattr(r, "resource_type", 16)) for r in answer.config_resources]
    assert [entry for entry in listed if not entry[0].startswith("__")] == expected
