"""Well-formed raw-protocol calls the state checks and the oracle make (kio entities)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Final

from kio.schema.create_partitions.v0.request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kio.schema.create_topics.v5.request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.describe_configs.v4.request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v3.request import LeaveGroupRequest, MemberIdentity
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_fetch.v8.request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopics,
)
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment

from bench.fuzz.clients import CheckFailed
from bench.fuzz.wire import Client

TOPIC_RESOURCE: Final = 2
BROKER_RESOURCE: Final = 4
RETRIABLE: Final = frozenset({ErrorCode.coordinator_not_available,
                              ErrorCode.coordinator_load_in_progress,
                              ErrorCode.concurrent_transactions, ErrorCode.not_coordinator})
RETRY_FOR_S: Final = 15.0


def metadata(client: Client, names: list[str] | None) -> dict[str, Any]:
    """Topic name -> metadata entry (never auto-creating)."""
    topics = None if names is None else tuple(
        MetadataRequestTopic(topic_id=None, name=n) for n in names)
    answer = client.call(MetadataRequest(topics=topics, allow_auto_topic_creation=False,
                                         include_topic_authorized_operations=False))
    if not answer.brokers:
        raise CheckFailed("Metadata answered with no brokers")
    return {t.name: t for t in answer.topics if t.name is not None}


def create_topics_request(names: list[str], partitions: int,
                          configs: dict[str, str] | None = None) -> CreateTopicsRequest:
    entries = tuple(CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items())
    return CreateTopicsRequest(
        topics=tuple(CreatableTopic(name=n, num_partitions=partitions, replication_factor=1,
                                    assignments=(), configs=entries) for n in names),
        timeout=timedelta(seconds=30), validate_only=False)


def create_topics(client: Client, names: list[str], partitions: int,
                  configs: dict[str, str] | None = None) -> dict[str, int]:
    answer = client.call(create_topics_request(names, partitions, configs))
    return {t.name: int(t.error_code) for t in answer.topics}


def delete_topics_request(names: list[str]) -> DeleteTopicsRequest:
    return DeleteTopicsRequest(topics=tuple(DeleteTopicState(name=n, topic_id=None)
                                            for n in names), timeout=timedelta(seconds=30))


def delete_topics(client: Client, names: list[str]) -> dict[str, int]:
    """Topic -> error code, for the topics the answer lists."""
    answer = client.call(delete_topics_request(names), timeout_s=40)
    return {r.name: int(r.error_code) for r in answer.responses if r.name is not None}


def create_partitions_request(topic: str, count: int) -> CreatePartitionsRequest:
    return CreatePartitionsRequest(
        topics=(CreatePartitionsTopic(name=topic, count=count, assignments=None),),
        timeout=timedelta(seconds=5), validate_only=False)


def configs(client: Client, resource_type: int, name: str, keys: list[str]) -> dict[str, str]:
    """DescribeConfigs of one resource: key -> value for the keys it answered."""
    answer = client.call(DescribeConfigsRequest(resources=(DescribeConfigsResource(
        resource_type=resource_type, resource_name=name, configuration_keys=tuple(keys)),)))
    return {c.name: str(c.value) for r in answer.results for c in r.configs}


def broker_configs(client: Client, keys: list[str]) -> dict[str, str]:
    answer = client.call(MetadataRequest(topics=(), allow_auto_topic_creation=False,
                                         include_topic_authorized_operations=False))
    return configs(client, BROKER_RESOURCE, str(answer.brokers[0].node_id), keys)


def _retrying(client: Client, request: Any, what: str) -> Any:
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        answer = client.call(request)
        error = getattr(answer, "error_code", None)
        if error is None and hasattr(answer, "coordinators"):
            error = answer.coordinators[0].error_code
        if error not in RETRIABLE or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def find_coordinator(client: Client, key: str, key_type: int) -> None:
    answer = _retrying(client, FindCoordinatorRequest(key_type=key_type,
                                                      coordinator_keys=(key,)), key)
    error = answer.coordinators[0].error_code
    if error != ErrorCode.none:
        raise CheckFailed(f"FindCoordinator({key!r}, type {key_type}): {error.name}")


def init_producer_id(client: Client, transactional_id: str) -> int:
    find_coordinator(client, transactional_id, 1)
    answer = _retrying(client, InitProducerIdRequest(
        transactional_id=transactional_id, transaction_timeout=timedelta(seconds=60),
        producer_id=-1, producer_epoch=-1), transactional_id)
    if answer.error_code != ErrorCode.none or answer.producer_id < 0:
        raise CheckFailed(f"InitProducerId({transactional_id!r}): {answer.error_code.name}")
    return int(answer.producer_id)


def join_group(client: Client, group: str) -> tuple[str, int]:
    """Joins a new group alone (member id, generation)."""
    find_coordinator(client, group, 0)
    member_id = ""
    for _attempt in range(2):
        answer = client.call(JoinGroupRequest(
            group_id=group, session_timeout=timedelta(seconds=10),
            rebalance_timeout=timedelta(seconds=10), member_id=member_id,
            group_instance_id=None, protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),)), timeout_s=30)
        if answer.error_code == ErrorCode.member_id_required:
            member_id = answer.member_id
            continue
        if answer.error_code != ErrorCode.none:
            raise CheckFailed(f"JoinGroup({group!r}): {answer.error_code.name}")
        return str(answer.member_id), int(answer.generation_id)
    raise CheckFailed(f"JoinGroup({group!r}) kept asking for a member id")


def group_commit_and_fetch(client: Client, group: str, topic: str, offset: int) -> None:
    """Join, sync, commit `offset` for topic-0, fetch it back, leave."""
    member, generation = join_group(client, group)
    sync = client.call(SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member, group_instance_id=None,
        assignments=(SyncGroupRequestAssignment(member_id=member, assignment=b""),)))
    if sync.error_code != ErrorCode.none:
        raise CheckFailed(f"SyncGroup({group!r}): {sync.error_code.name}")
    commit = client.call(OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member,
        group_instance_id=None, topics=(OffsetCommitRequestTopic(name=topic, partitions=(
            OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                         committed_leader_epoch=-1,
                                         committed_metadata=None),)),)))
    results = [(t.name, p.error_code) for t in commit.topics for p in t.partitions]
    if results != [(topic, ErrorCode.none)]:
        raise CheckFailed(f"OffsetCommit({group!r}) answered {results}")
    fetch = client.call(OffsetFetchRequest(groups=(OffsetFetchRequestGroup(
        group_id=group, topics=(OffsetFetchRequestTopics(name=topic,
                                                         partition_indexes=(0,)),)),),
        require_stable=False))
    got = [(p.committed_offset, p.error_code) for g in fetch.groups for t in g.topics
           for p in t.partitions]
    if got != [(offset, ErrorCode.none)]:
        raise CheckFailed(f"OffsetFetch({group!r}) answered {got}, committed {offset}")
    client.call(LeaveGroupRequest(group_id=group, members=(
        MemberIdentity(member_id=member, group_instance_id=None),)))
