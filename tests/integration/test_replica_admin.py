"""kafka-python's KafkaAdminClient (and confluent-kafka's elect_leaders) get Kafka's answers
from strom's one broker for ElectLeaders, Alter/ListPartitionReassignments, DescribeQuorum,
AlterReplicaLogDirs and ListConfigResources, where they used to get a closed connection:
elections not needed, reassignments to the current replica only, one metadata-quorum voter,
one log directory, brokers and topics as config resources."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import ElectionType
from confluent_kafka import TopicPartition as CfTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition, TopicPartitionReplica
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient
from kio.schema.describe_quorum.v2 import request as dq
from kio.schema.elect_leaders.v0 import request as elect_v0
from kio.schema.elect_leaders.v2 import request as elect_v2
from kio.schema.errors import ErrorCode
from kio.schema.list_config_resources.v0.request import ListConfigResourcesRequest as ListV0
from kio.schema.list_config_resources.v1.request import ListConfigResourcesRequest as ListV1
from kio.static.primitive import i8, i32, i32Timedelta

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S
from tests.integration.raw_client import RawClient

TIMEOUT = i32Timedelta.parse(datetime.timedelta(seconds=10))


@pytest.fixture
def admin(broker: EmbeddedBroker) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers,
                              request_timeout_ms=10000)
    try:
        yield client
    finally:
        client.close()


def node_id(broker: EmbeddedBroker) -> int:
    return broker.server.broker.node_id


def partition_errors(response: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {(r.topic, p.partition_id): (p.error_code, p.error_message)
            for r in response.replica_election_results for p in r.partition_result}


def test_the_apis_are_advertised(admin: KafkaAdminClient) -> None:
    versions = {int(key): value for key, value in admin.api_versions().items()}
    assert {key: versions.get(key) for key in (34, 43, 45, 46, 55, 74)} == {
        34: (1, 2), 43: (0, 2), 45: (0, 1), 46: (0, 0), 55: (0, 2), 74: (0, 1)}


@pytest.mark.parametrize("election", [0, 1])
def test_elections_are_not_needed(admin: KafkaAdminClient, new_topic: Any,
                                  election: int) -> None:
    topic = new_topic(partitions=2)
    response = admin.elect_leaders(election, {topic: [0, 1]})
    assert partition_errors(response) == {(topic, 0): (ErrorCode.election_not_needed, None),
                                          (topic, 1): (ErrorCode.election_not_needed, None)}


def test_elections_of_unknown_partitions(admin: KafkaAdminClient, new_topic: Any) -> None:
    topic = new_topic()
    with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
        admin.elect_leaders(0, {topic: [3]})
    response = admin.elect_leaders(0, {topic: [0, 3], "no-such-topic": [0]}, raise_errors=False)
    assert partition_errors(response) == {
        (topic, 0): (ErrorCode.election_not_needed, None),
        (topic, 3): (ErrorCode.unknown_topic_or_partition, f"No such partition as {topic}-3"),
        ("no-such-topic", 0): (ErrorCode.unknown_topic_or_partition,
                               "No such topic as no-such-topic")}


def test_confluent_kafka_elect_leaders(broker: EmbeddedBroker, new_topic: Any) -> None:
    topic = new_topic(partitions=2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    wanted = [CfTopicPartition(topic, 0), CfTopicPartition(topic, 1), CfTopicPartition(topic, 4)]
    result = admin.elect_leaders(ElectionType.PREFERRED, wanted).result(timeout=DEADLINE_S)
    assert {(tp.partition, error.code() if error else None) for tp, error in result.items()} == {
        (0, ErrorCode.election_not_needed), (1, ErrorCode.election_not_needed),
        (4, ErrorCode.unknown_topic_or_partition)}
    everything = admin.elect_leaders(ElectionType.UNCLEAN, None).result(timeout=DEADLINE_S)
    assert everything == {}  # Kafka leaves out the partitions whose election is not needed


def test_elect_leaders_on_the_wire(broker: EmbeddedBroker, new_topic: Any) -> None:
    topic = new_topic()
    with RawClient(broker.port) as client:
        every = client.request(elect_v2.ElectLeadersRequest(
            election_type=i8(0), topic_partitions=None, timeout=TIMEOUT))
        assert every.error_code == ErrorCode.none
        assert {r.topic: r.partition_result for r in every.replica_election_results}[topic] == ()
        nothing = client.request(elect_v2.ElectLeadersRequest(
            election_type=i8(0), topic_partitions=(), timeout=TIMEOUT))
        assert nothing.replica_election_results == ()
        unknown_type = client.request(elect_v2.ElectLeadersRequest(
            election_type=i8(7), timeout=TIMEOUT, topic_partitions=(
                elect_v2.TopicPartitions(topic=topic, partitions=(i32(0),)),)))
        assert unknown_type.error_code == ErrorCode.invalid_request
        assert partition_errors(unknown_type) == {
            (topic, 0): (ErrorCode.invalid_request, "Unknown election type 7")}
        v0 = client.request(elect_v0.ElectLeadersRequest(timeout=TIMEOUT, topic_partitions=(
            elect_v0.TopicPartitions(topic=topic, partitions=(i32(0),)),)))
        assert partition_errors(v0) == {(topic, 0): (ErrorCode.election_not_needed, None)}


def test_reassignments(admin: KafkaAdminClient, broker: EmbeddedBroker, new_topic: Any) -> None:
    topic = new_topic(partitions=2)
    me = node_id(broker)
    assert admin.alter_partition_reassignments({
        TopicPartition(topic, 0): [me],  # the current replica set: nothing to do
        TopicPartition(topic, 1): None,  # cancel
    }) == {TopicPartition(topic, 0): None,
           TopicPartition(topic, 1): kafka_errors.NoReassignmentInProgressError}
    assert admin.alter_partition_reassignments({
        TopicPartition(topic, 0): [me + 1],
        TopicPartition(topic, 1): [me, me + 1],
        TopicPartition(topic, 2): [me],
        TopicPartition("no-such-topic", 0): [me],
    }) == {TopicPartition(topic, 0): kafka_errors.InvalidReplicationAssignmentError,
           TopicPartition(topic, 1): kafka_errors.InvalidReplicationAssignmentError,
           TopicPartition(topic, 2): kafka_errors.UnknownTopicOrPartitionError,
           TopicPartition("no-such-topic", 0): kafka_errors.UnknownTopicOrPartitionError}
    assert admin.list_partition_reassignments() == {}
    assert admin.list_partition_reassignments([TopicPartition(topic, 0)]) == {}


def test_metadata_quorum_is_this_broker(admin: KafkaAdminClient, broker: EmbeddedBroker) -> None:
    me = node_id(broker)
    quorum = admin.describe_metadata_quorum()
    [topic] = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [partition] = topic["partitions"]
    assert (partition["partition_index"], partition["leader_id"], partition["error"]) == (
        0, me, None)
    assert [v["replica_id"] for v in partition["current_voters"]] == [me]
    assert partition["observers"] == []
    assert quorum["nodes"] == [{"node_id": me, "listeners": [
        {"name": "PLAINTEXT", "host": "127.0.0.1", "port": broker.port}]}]


def test_describe_quorum_of_another_partition(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        answer = client.request(dq.DescribeQuorumRequest(topics=(
            dq.TopicData(topic_name="__cluster_metadata", partitions=(
                dq.PartitionData(partition_index=i32(1)),)),)))
    assert answer.error_code == ErrorCode.none
    assert [(t.topic_name, p.partition_index, p.error_code)
            for t in answer.topics for p in t.partitions] == [
        ("__cluster_metadata", 1, ErrorCode.unknown_topic_or_partition)]


def test_replica_log_dirs(admin: KafkaAdminClient, broker: EmbeddedBroker,
                          new_topic: Any) -> None:
    topic = new_topic(partitions=2)
    me = node_id(broker)
    log_dir = broker.server.broker.config.log_dir
    assert admin.alter_replica_log_dirs({
        TopicPartitionReplica(topic, 0, me): log_dir,
        TopicPartitionReplica(topic, 1, me): "/no/such/dir",
        TopicPartitionReplica(topic, 5, me): log_dir,
    }) == {TopicPartitionReplica(topic, 0, me): kafka_errors.NoError,
           TopicPartitionReplica(topic, 1, me): kafka_errors.LogDirNotFoundError,
           TopicPartitionReplica(topic, 5, me): kafka_errors.ReplicaNotAvailableError}


def test_config_resources(admin: KafkaAdminClient, broker: EmbeddedBroker,
                          new_topic: Any) -> None:
    topic = new_topic()
    listed = admin.list_config_resources()
    assert listed["broker"] == [str(node_id(broker))]
    assert {topic, "__consumer_offsets"} <= set(listed["topic"])
    assert set(listed) == {"broker", "topic"}
    assert set(admin.list_config_resources(["TOPIC"])) == {"topic"}
    assert admin.list_config_resources(["CLIENT_METRICS", "GROUP", "BROKER_LOGGER"]) == {}


def test_config_resources_on_the_wire(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        v0 = client.request(ListV0())  # client-metrics subscriptions only: none
        assert (v0.error_code, v0.config_resources) == (ErrorCode.none, ())
        unknown = client.request(ListV1(resource_types=(i8(2), i8(64))))
        assert (unknown.error_code, unknown.config_resources) == (ErrorCode.unsupported_version,
                                                                  ())
