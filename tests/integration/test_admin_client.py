"""confluent-kafka's AdminClient administers strom as it administers Kafka: topics, partitions,
configs, records, offsets and the cluster, with Kafka's error codes surfacing as KafkaErrors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import (
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from kio.schema.describe_cluster.v2.request import DescribeClusterRequest
from kio.schema.describe_log_dirs.v4 import request as dld
from kio.schema.describe_topic_partitions.v0 import request as dtp
from kio.schema.offset_for_leader_epoch.v4 import request as ofle

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.raw_client import RawClient

TIMEOUTS: dict[str, Any] = {"operation_timeout": 10, "request_timeout": 15}


@pytest.fixture
def admin(broker: EmbeddedBroker) -> Iterator[AdminClient]:
    yield AdminClient({"bootstrap.servers": broker.bootstrap_servers,
                       "socket.timeout.ms": 10000})


def error_code(future: Any) -> int:
    """The KafkaError code a failed admin future carries (fails the test if it succeeded)."""
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=DEADLINE_S)
    err = raised.value.args[0]
    assert isinstance(err, KafkaError)
    return int(err.code())


def create(admin: AdminClient, *topics: NewTopic, validate_only: bool = False) -> dict[str, Any]:
    return dict(admin.create_topics(list(topics), validate_only=validate_only, **TIMEOUTS))


def new_topic(admin: AdminClient, partitions: int = 1,
              config: dict[str, str] | None = None) -> str:
    name = unique_name("admin")
    create(admin, NewTopic(name, partitions, 1, config=config or {}))[name].result(DEADLINE_S)
    wait_for_partitions(admin, name, partitions)
    return name


def wait_for_partitions(admin: AdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        assert time.monotonic() < deadline, f"{name} never showed {partitions} partitions"
        time.sleep(0.05)


def topic_names(admin: AdminClient) -> set[str]:
    return set(admin.list_topics(timeout=10).topics)


def describe_topic_configs(admin: AdminClient, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    result: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result(
        DEADLINE_S)
    return result


# --- topics ------------------------------------------------------------------------------------


def test_create_topics_and_list_them(admin: AdminClient) -> None:
    a, b = unique_name("admin"), unique_name("admin")
    futures = create(admin, NewTopic(a, 3, 1),
                     NewTopic(b, -1, -1, config={"retention.ms": "60000"}))
    for future in futures.values():
        assert future.result(DEADLINE_S) is None
    wait_for_partitions(admin, a, 3)
    wait_for_partitions(admin, b, 1)
    assert {a, b} <= topic_names(admin)
    assert describe_topic_configs(admin, b)["retention.ms"].value == "60000"


def test_create_topics_validate_only_creates_nothing(admin: AdminClient) -> None:
    name = unique_name("admin")
    assert create(admin, NewTopic(name, 2, 1), validate_only=True)[name].result(DEADLINE_S) is None
    time.sleep(0.2)
    assert name not in topic_names(admin)
    # A validate-only request still runs every check.
    assert error_code(create(admin, NewTopic(name, 2, 3),
                             validate_only=True)[name]) == KafkaError.INVALID_REPLICATION_FACTOR


def test_create_topics_errors(admin: AdminClient) -> None:
    existing = new_topic(admin)
    cases = {
        "bad name!": NewTopic("bad name!", 1, 1),
        "x" * 250: NewTopic("x" * 250, 1, 1),
        existing: NewTopic(existing, 1, 1),
        "zero": NewTopic(unique_name("zero"), 0, 1),
        "rf": NewTopic(unique_name("rf"), 1, 3),
        "config": NewTopic(unique_name("cfg"), 1, 1, config={"retention.ms": "soon"}),
        "unknown config": NewTopic(unique_name("cfg"), 1, 1, config={"no.such": "1"}),
        "assignment": NewTopic(unique_name("asg"), 2, replica_assignment=[[1], [2]]),
    }
    expected = {
        "bad name!": KafkaError.TOPIC_EXCEPTION, "x" * 250: KafkaError.TOPIC_EXCEPTION,
        existing: KafkaError.TOPIC_ALREADY_EXISTS, "zero": KafkaError.INVALID_PARTITIONS,
        "rf": KafkaError.INVALID_REPLICATION_FACTOR,
        "config": KafkaError.INVALID_CONFIG, "unknown config": KafkaError.INVALID_CONFIG,
        "assignment": KafkaError.INVALID_REPLICA_ASSIGNMENT,
    }
    for label, topic in cases.items():
        futures = create(admin, topic)
        assert error_code(futures[topic.topic]) == expected[label], label


def test_negative_partition_counts_never_leave_the_client(admin: AdminClient) -> None:
    """librdkafka refuses counts below -1 itself (0 reaches the broker, see above); the
    broker's INVALID_PARTITIONS answer to them is covered by tests/unit/test_handlers_admin.py."""
    with pytest.raises(ValueError, match="num_partitions"):
        create(admin, NewTopic(unique_name("neg"), -5, 1))


def test_create_topic_with_manual_assignment(admin: AdminClient) -> None:
    name = unique_name("admin")
    create(admin, NewTopic(name, 2, replica_assignment=[[1], [1]]))[name].result(DEADLINE_S)
    wait_for_partitions(admin, name, 2)


def test_describe_topics(admin: AdminClient) -> None:
    name = new_topic(admin, 3)
    missing = unique_name("missing")
    futures = admin.describe_topics(TopicCollection([name, missing]), request_timeout=15)
    description = futures[name].result(DEADLINE_S)
    assert description.name == name and not description.is_internal
    assert [p.id for p in description.partitions] == [0, 1, 2]
    assert all(p.leader.id == 1 and [r.id for r in p.replicas] == [1]
               for p in description.partitions)
    assert error_code(futures[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(admin: AdminClient) -> None:
    name = new_topic(admin, 1)
    futures = admin.create_partitions([NewPartitions(name, 3)], **TIMEOUTS)
    assert futures[name].result(DEADLINE_S) is None
    wait_for_partitions(admin, name, 3)

    dry = admin.create_partitions([NewPartitions(name, 5)], validate_only=True, **TIMEOUTS)
    assert dry[name].result(DEADLINE_S) is None
    for count in (3, 2):
        futures = admin.create_partitions([NewPartitions(name, count)], **TIMEOUTS)
        assert error_code(futures[name]) == KafkaError.INVALID_PARTITIONS
    missing = unique_name("missing")
    futures = admin.create_partitions([NewPartitions(missing, 2)], **TIMEOUTS)
    assert error_code(futures[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    time.sleep(0.2)
    assert len(admin.list_topics(topic=name, timeout=10).topics[name].partitions) == 3


def test_delete_topics(admin: AdminClient) -> None:
    name = new_topic(admin)
    missing = unique_name("missing")
    futures = admin.delete_topics([name, missing], **TIMEOUTS)
    assert futures[name].result(DEADLINE_S) is None
    assert error_code(futures[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert name not in topic_names(admin)
    # The name is free again.
    create(admin, NewTopic(name, 1, 1))[name].result(DEADLINE_S)


# --- configs -----------------------------------------------------------------------------------


def test_describe_configs(admin: AdminClient) -> None:
    name = new_topic(admin, config={"cleanup.policy": "compact"})
    entries = describe_topic_configs(admin, name)
    policy = entries["cleanup.policy"]
    assert policy.value == "compact" and policy.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not policy.is_read_only and not policy.is_sensitive
    retention = entries["retention.ms"]
    assert retention.value == str(7 * 24 * 3600 * 1000)
    assert retention.source == ConfigSource.DEFAULT_CONFIG.value

    missing = ConfigResource(ResourceType.TOPIC, unique_name("missing"))
    assert error_code(admin.describe_configs([missing])[missing]) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART

    node = ConfigResource(ResourceType.BROKER, "1")
    broker_entries = admin.describe_configs([node])[node].result(DEADLINE_S)
    assert broker_entries["num.partitions"].value == "1"
    assert broker_entries["num.partitions"].is_read_only


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_alter_configs_replaces_overrides(admin: AdminClient) -> None:
    name = new_topic(admin, config={"cleanup.policy": "compact", "retention.ms": "1000"})
    resource = ConfigResource(ResourceType.TOPIC, name, set_config={"segment.ms": "60000"})
    assert admin.alter_configs([resource])[resource].result(DEADLINE_S) is None
    entries = describe_topic_configs(admin, name)
    assert entries["segment.ms"].value == "60000"
    assert entries["cleanup.policy"].value == "delete"  # the old overrides are gone
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    bad = ConfigResource(ResourceType.TOPIC, name, set_config={"segment.ms": "0"})
    assert error_code(admin.alter_configs([bad])[bad]) == KafkaError.INVALID_CONFIG
    dry = ConfigResource(ResourceType.TOPIC, name, set_config={"segment.ms": "120000"})
    assert admin.alter_configs([dry], validate_only=True)[dry].result(DEADLINE_S) is None
    assert describe_topic_configs(admin, name)["segment.ms"].value == "60000"

    node = ConfigResource(ResourceType.BROKER, "1", set_config={"num.partitions": "3"})
    assert error_code(admin.alter_configs([node])[node]) == KafkaError.INVALID_REQUEST


def test_incremental_alter_configs(admin: AdminClient) -> None:
    name = new_topic(admin, config={"retention.ms": "1000"})

    def alter(*entries: ConfigEntry, validate_only: bool = False) -> Any:
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=list(entries))
        return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]

    assert alter(ConfigEntry("segment.ms", "60000",
                             incremental_operation=AlterConfigOpType.SET),
                 ConfigEntry("retention.ms", None,
                             incremental_operation=AlterConfigOpType.DELETE),
                 ConfigEntry("cleanup.policy", "compact",
                             incremental_operation=AlterConfigOpType.APPEND),
                 ).result(DEADLINE_S) is None
    entries = describe_topic_configs(admin, name)
    assert entries["segment.ms"].value == "60000"
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert set(entries["cleanup.policy"].value.split(",")) == {"delete", "compact"}

    assert alter(ConfigEntry("cleanup.policy", "delete",
                             incremental_operation=AlterConfigOpType.SUBTRACT)
                 ).result(DEADLINE_S) is None
    assert describe_topic_configs(admin, name)["cleanup.policy"].value == "compact"

    not_a_list = alter(ConfigEntry("retention.ms", "5",
                                   incremental_operation=AlterConfigOpType.APPEND))
    assert error_code(not_a_list) == KafkaError.INVALID_CONFIG
    assert alter(ConfigEntry("segment.ms", "1", incremental_operation=AlterConfigOpType.SET),
                 validate_only=True).result(DEADLINE_S) is None
    assert describe_topic_configs(admin, name)["segment.ms"].value == "60000"


def test_config_changes_reach_the_log(broker: EmbeddedBroker, admin: AdminClient) -> None:
    """A topic made compacted by IncrementalAlterConfigs refuses keyless records."""
    name = new_topic(admin)
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(DEADLINE_S)
    delivered = produce_all(producer(broker.bootstrap_servers, retries=0), name,
                            [{"value": b"no key"}])
    assert [err.code() for err, _ in delivered.failed] == [KafkaError.INVALID_RECORD]


# --- records and offsets -----------------------------------------------------------------------


def produce_values(broker: EmbeddedBroker, name: str, timestamps: list[int]) -> None:
    delivered = produce_all(producer(broker.bootstrap_servers), name,
                            [{"partition": 0, "value": str(i).encode(), "timestamp": ts}
                             for i, ts in enumerate(timestamps)])
    assert not delivered.failed


def list_offsets(admin: AdminClient, name: str, spec: OffsetSpec,
                 partition: int = 0) -> tuple[int, int]:
    tp = TopicPartition(name, partition)
    info = admin.list_offsets({tp: spec}, request_timeout=15)[tp].result(DEADLINE_S)
    return info.offset, info.timestamp


def test_list_offsets(broker: EmbeddedBroker, admin: AdminClient) -> None:
    name = new_topic(admin, 2)
    base = int(time.time() * 1000) - 60_000
    produce_values(broker, name, [base, base + 3000, base + 1000, base + 2000])
    assert list_offsets(admin, name, OffsetSpec.earliest()) == (0, -1)
    assert list_offsets(admin, name, OffsetSpec.latest()) == (4, -1)
    assert list_offsets(admin, name, OffsetSpec.max_timestamp()) == (1, base + 3000)
    assert list_offsets(admin, name, OffsetSpec.for_timestamp(base + 1500)) == (1, base + 3000)
    assert list_offsets(admin, name, OffsetSpec.for_timestamp(base + 3001)) == (-1, -1)
    assert list_offsets(admin, name, OffsetSpec.latest(), partition=1) == (0, -1)

    missing = TopicPartition(unique_name("missing"), 0)
    future = admin.list_offsets({missing: OffsetSpec.latest()}, request_timeout=15)[missing]
    # librdkafka looks the leader up in Metadata first, so it answers this one itself.
    assert error_code(future) in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._NOENT)


def test_delete_records(broker: EmbeddedBroker, admin: AdminClient) -> None:
    name = new_topic(admin, 2)
    produce_values(broker, name, [int(time.time() * 1000)] * 5)
    tp = TopicPartition(name, 0, 3)
    deleted = admin.delete_records([tp], **TIMEOUTS)[tp].result(DEADLINE_S)
    assert deleted.low_watermark == 3
    assert list_offsets(admin, name, OffsetSpec.earliest()) == (3, -1)
    assert [m.offset() for m in consume_partitions(broker.bootstrap_servers, name, start=3)] \
        == [3, 4]

    beyond = TopicPartition(name, 0, 99)
    assert error_code(admin.delete_records([beyond], **TIMEOUTS)[beyond]) == \
        KafkaError.OFFSET_OUT_OF_RANGE
    everything = TopicPartition(name, 0, -1)  # OFFSET_END: up to the high watermark
    assert admin.delete_records([everything], **TIMEOUTS)[everything].result(
        DEADLINE_S).low_watermark == 5

    compacted = new_topic(admin, config={"cleanup.policy": "compact"})
    tp = TopicPartition(compacted, 0, 0)
    assert error_code(admin.delete_records([tp], **TIMEOUTS)[tp]) == KafkaError.POLICY_VIOLATION


# --- cluster -----------------------------------------------------------------------------------


def test_describe_cluster(broker: EmbeddedBroker, admin: AdminClient) -> None:
    result = admin.describe_cluster(request_timeout=15).result(DEADLINE_S)
    assert result.cluster_id == broker.server.broker.cluster_id
    assert [(n.id, n.host, n.port) for n in result.nodes] == [(1, "127.0.0.1", broker.port)]
    assert result.controller.id == 1


# --- APIs librdkafka's AdminClient does not call (its describe_cluster and describe_topics use
# Metadata): sent over the wire with the raw test client, as Kafka's Java AdminClient sends them.


def test_describe_cluster_over_the_wire(broker: EmbeddedBroker) -> None:
    with RawClient(broker.port) as client:
        response = client.request(DescribeClusterRequest(
            include_cluster_authorized_operations=True, endpoint_type=1,
            include_fenced_brokers=True))
        refused = client.request(DescribeClusterRequest(
            include_cluster_authorized_operations=False, endpoint_type=2,
            include_fenced_brokers=False))
    assert response.error_code == KafkaError.NO_ERROR
    assert response.cluster_id == broker.server.broker.cluster_id
    assert [(b.broker_id, b.port, b.is_fenced) for b in response.brokers] == [
        (1, broker.port, False)]
    assert response.cluster_authorized_operations > 0
    assert refused.error_code == 114  # MISMATCHED_ENDPOINT_TYPE


def test_describe_topic_partitions_over_the_wire(broker: EmbeddedBroker,
                                                 admin: AdminClient) -> None:
    name = new_topic(admin, 5)
    missing = unique_name("missing")
    pages = []
    cursor = None
    with RawClient(broker.port) as client:
        while True:
            response = client.request(dtp.DescribeTopicPartitionsRequest(
                topics=(dtp.TopicRequest(name=name), dtp.TopicRequest(name=missing)),
                response_partition_limit=2, cursor=cursor))
            pages.append([(t.name, int(t.error_code), [p.partition_index for p in t.partitions])
                          for t in response.topics])
            if response.next_cursor is None:
                break
            cursor = dtp.Cursor(topic_name=response.next_cursor.topic_name,
                                partition_index=response.next_cursor.partition_index)
    assert pages == [[(name, 0, [0, 1])], [(name, 0, [2, 3])],
                     [(name, 0, [4]), (missing, KafkaError.UNKNOWN_TOPIC_OR_PART, [])]]


def test_describe_log_dirs_over_the_wire(broker: EmbeddedBroker, admin: AdminClient) -> None:
    name = new_topic(admin, 2)
    produce_values(broker, name, [int(time.time() * 1000)] * 3)
    with RawClient(broker.port) as client:
        response = client.request(dld.DescribeLogDirsRequest(
            topics=(dld.DescribableLogDirTopic(topic=name, partitions=(0, 1)),)))
    (result,) = response.results
    assert result.log_dir == str(broker.data_dir.resolve())
    assert result.total_bytes > 0
    sizes = {p.partition_index: p.partition_size for t in result.topics for p in t.partitions}
    assert sizes[0] > 0 and sizes[1] == 0


def test_offset_for_leader_epoch_over_the_wire(broker: EmbeddedBroker,
                                               admin: AdminClient) -> None:
    name = new_topic(admin)
    produce_values(broker, name, [int(time.time() * 1000)] * 4)
    with RawClient(broker.port) as client:
        response = client.request(ofle.OffsetForLeaderEpochRequest(replica_id=-1, topics=(
            ofle.OffsetForLeaderTopic(topic=name, partitions=(
                ofle.OffsetForLeaderPartition(partition=0, current_leader_epoch=0,
                                              leader_epoch=0),)),)))
    (partition,) = response.topics[0].partitions
    assert (partition.error_code, partition.leader_epoch, partition.end_offset) == (0, 0, 4)


def test_admin_calls_leave_the_broker_healthy(broker: EmbeddedBroker, admin: AdminClient,
                                              topic: str) -> None:
    """After all of the above on one broker, data still flows through a fresh topic."""
    produce_values(broker, topic, [int(time.time() * 1000)] * 3)
    assert len(consume_partitions(broker.bootstrap_servers, topic)) == 3

