"""DescribeCluster (60), DescribeLogDirs (35) and DescribeTopicPartitions (75).

With no authorizer every operation is allowed, so authorized-operations fields, when asked
for, carry every operation Kafka supports on the resource (as a broker without an authorizer
answers). With one, as Kafka's broker: DescribeCluster is answered to anyone, its
cluster_authorized_operations (when asked for) the authorizer's, or 0 without DESCRIBE on the
cluster (AuthHelper.computeDescribeClusterResponse; only a KRaft controller refuses the
request); DescribeLogDirs needs DESCRIBE on the cluster (else no directories and, from v3,
CLUSTER_AUTHORIZATION_FAILED); DescribeTopicPartitions lists only the topics the principal may
DESCRIBE, answers a named one it may not with TOPIC_AUTHORIZATION_FAILED (after the others, as
DescribeTopicPartitionsRequestHandler), and fills topic_authorized_operations from the
authorizer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any, Final

from strom.broker.authorize import cluster_allowed, operations_or, topic_allowed
from strom.broker.leadership import controller_id, partition_fields
from strom.broker.operations import CLUSTER_OPERATIONS, OPERATIONS_OMITTED, TOPIC_OPERATIONS
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.coordinator.internal_topics import is_internal
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType
from strom.storage.api import LogDirDescription, PartitionSize, StorageError, TopicInfo

log = logging.getLogger(__name__)

ENDPOINT_TYPE_BROKERS: Final = 1
_ENDPOINT_NAMES: Final = {1: "BROKER", 2: "CONTROLLER"}
ZERO_UUID: Final = uuid.UUID(int=0)
# max.request.partition.size.limit's default: DescribeTopicPartitions pages at most this many.
MAX_PARTITIONS_PER_RESPONSE: Final = 2000


# --- DescribeCluster -------------------------------------------------------------------------


@api(60, "DescribeCluster", (0, 2), "every live broker; the lowest node id is named "
     "controller; endpoint type BROKER only (v1+)")
async def handle_describe_cluster(broker: Broker, ctx: RequestContext, request: Any,
                                  b: ResponseBuilder) -> Any:
    endpoint_type = int(getattr(request, "endpoint_type", ENDPOINT_TYPE_BROKERS))
    if endpoint_type != ENDPOINT_TYPE_BROKERS:
        wanted = _ENDPOINT_NAMES.get(endpoint_type, "UNKNOWN")
        return b.make("DescribeClusterResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.mismatched_endpoint_type,
                      error_message=f"The request was sent to an endpoint of type BROKER, "
                                    f"but we wanted an endpoint of type {wanted}",
                      endpoint_type=ENDPOINT_TYPE_BROKERS, cluster_id="", controller_id=-1,
                      brokers=(), cluster_authorized_operations=OPERATIONS_OMITTED)
    operations = OPERATIONS_OMITTED
    if request.include_cluster_authorized_operations:
        operations = (operations_or(ctx, ResourceType.CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS)
                      if cluster_allowed(ctx, Operation.DESCRIBE) else 0)
    live = await broker.engine.brokers()
    listener = ctx.session.listener
    brokers = tuple(b.make("DescribeClusterBroker", broker_id=r.node_id,
                           host=r.endpoint(listener)[0], port=r.endpoint(listener)[1],
                           rack=r.rack, is_fenced=False)
                    for r in live)
    return b.make("DescribeClusterResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, error_message=None,
                  endpoint_type=ENDPOINT_TYPE_BROKERS, cluster_id=broker.cluster_id,
                  controller_id=controller_id(broker, live), brokers=brokers,
                  cluster_authorized_operations=operations)


# --- DescribeLogDirs -------------------------------------------------------------------------


def wanted_partitions(request: Any) -> set[tuple[str, int]] | None:
    if request.topics is None:
        return None
    return {(str(t.topic), int(p)) for t in request.topics for p in t.partitions}


def log_dir_topics(b: ResponseBuilder, sizes: Iterable[PartitionSize],
                   wanted: set[tuple[str, int]] | None) -> tuple[Any, ...]:
    by_topic: dict[str, list[Any]] = {}
    for size in sorted(sizes, key=lambda s: (s.topic, s.partition)):
        if wanted is not None and (size.topic, size.partition) not in wanted:
            continue
        by_topic.setdefault(size.topic, []).append(
            b.make("DescribeLogDirsPartition", partition_index=size.partition,
                   partition_size=size.size_bytes, offset_lag=0, is_future_key=False))
    return tuple(b.make("DescribeLogDirsTopic", name=name, partitions=tuple(parts))
                 for name, parts in by_topic.items())


@api(35, "DescribeLogDirs", (1, 5), "one log directory per engine: the data directory (volume "
     "sizes, v4+), `memory:`, or the database URL without its password, listing only the "
     "partitions this broker leads (sizes -1: unknown)")
async def handle_describe_log_dirs(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        return b.make("DescribeLogDirsResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.cluster_authorization_failed, results=())
    try:
        described = await broker.engine.describe_log_dir()
    except (OSError, StorageError) as exc:
        log.warning("DescribeLogDirs: cannot describe %s: %s", broker.config.log_dir, exc)
        described = LogDirDescription(broker.config.log_dir)
        error = ErrorCode.kafka_storage_error
    else:
        error = ErrorCode.none
    result = b.make("DescribeLogDirsResult", error_code=error, log_dir=described.path,
                    topics=log_dir_topics(b, described.partitions, wanted_partitions(request)),
                    total_bytes=described.total_bytes, usable_bytes=described.usable_bytes,
                    is_cordoned=False)
    return b.make("DescribeLogDirsResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, results=(result,))


# --- DescribeTopicPartitions -----------------------------------------------------------------


def topic_partitions(broker: Broker, ctx: RequestContext, b: ResponseBuilder, info: TopicInfo,
                     start: int, limit: int) -> tuple[Any, int]:
    """The partitions from `start`, at most `limit`; and the next index, or -1 if all done."""
    upper = min(info.partitions, start + limit)
    partitions = tuple(
        b.make("DescribeTopicPartitionsResponsePartition",
               **partition_fields(broker, info.name, index), eligible_leader_replicas=(),
               last_known_elr=())
        for index in range(start, upper))
    topic = b.make("DescribeTopicPartitionsResponseTopic", error_code=ErrorCode.none,
                   name=info.name, topic_id=info.topic_id, is_internal=is_internal(info.name),
                   partitions=partitions,
                   topic_authorized_operations=topic_operations(ctx, info.name))
    return topic, (upper if upper < info.partitions else -1)


def topic_operations(ctx: RequestContext, name: str) -> int:
    return operations_or(ctx, ResourceType.TOPIC, name, TOPIC_OPERATIONS)


def missing_topic(b: ResponseBuilder, name: str, error: ErrorCode,
                  operations: int = OPERATIONS_OMITTED) -> Any:
    return b.make("DescribeTopicPartitionsResponseTopic", error_code=error, name=name,
                  topic_id=ZERO_UUID, is_internal=is_internal(name), partitions=(),
                  topic_authorized_operations=operations)


def cursor_error(broker: Broker, request: Any, names: Iterable[str]) -> str | None:
    cursor = request.cursor
    if cursor is None:
        return None
    if cursor.topic_name not in set(names):
        return "cursor topic does not exist. Please check the cursor topic."
    if int(cursor.partition_index) < 0:
        return ("partition index in cursor must be non-negative. Please check the cursor "
                "partition index.")
    return None


def describe_page(broker: Broker, ctx: RequestContext, b: ResponseBuilder, request: Any,
                  names: list[str], fetch_all: bool) -> tuple[list[Any], Any]:
    """KRaftMetadataCache.describeTopicResponse: topics in name order from the cursor."""
    cursor = request.cursor
    remaining = max(min(MAX_PARTITIONS_PER_RESPONSE, int(request.response_partition_limit)), 1)
    start_name = cursor.topic_name if cursor is not None else ""
    topics: list[Any] = []
    for name in (n for n in names if n >= start_name):
        if remaining == 0:
            return topics, b.make("Cursor", topic_name=name, partition_index=0)
        info = broker.engine.topics().get(name)
        if info is None:
            if not fetch_all:
                error = (ErrorCode.unknown_topic_or_partition if topic_name_error(name) is None
                         else ErrorCode.invalid_topic_exception)
                topics.append(missing_topic(b, name, error, topic_operations(ctx, name)))
            continue
        start = int(cursor.partition_index) if cursor is not None and name == start_name else 0
        topic, next_index = topic_partitions(broker, ctx, b, info, start, remaining)
        topics.append(topic)
        if next_index != -1:
            return topics, b.make("Cursor", topic_name=name, partition_index=next_index)
        remaining -= len(topic.partitions)
    return topics, None


def refused_topics(ctx: RequestContext, request: Any, names: Iterable[str]) -> set[str]:
    """The topics from the cursor's on that the principal may not DESCRIBE."""
    if ctx.authorizer is None:
        return set()
    start = request.cursor.topic_name if request.cursor is not None else ""
    return {n for n in names if n >= start and not topic_allowed(ctx, Operation.DESCRIBE, n)}


@api(75, "DescribeTopicPartitions", (0, 0),
     "KIP-966 paging by cursor and response_partition_limit (at most 2000 partitions)")
async def handle_describe_topic_partitions(broker: Broker, ctx: RequestContext, request: Any,
                                           b: ResponseBuilder) -> Any:
    fetch_all = not request.topics
    names = sorted(broker.engine.topics() if fetch_all else {str(t.name) for t in request.topics})
    problem = cursor_error(broker, request, names)
    if problem is not None:
        # Kafka fails the whole request: every requested topic carries the error.
        topics = [missing_topic(b, str(t.name), ErrorCode.invalid_request)
                  for t in request.topics]
        return b.make("DescribeTopicPartitionsResponse", throttle_time=NO_THROTTLE,
                      topics=tuple(topics), next_cursor=None)
    refused = refused_topics(ctx, request, names)
    if refused:
        names = [n for n in names if n not in refused]
    topics, next_cursor = describe_page(broker, ctx, b, request, names, fetch_all)
    if not fetch_all:  # a topic asked for by name: refused, its existence untold
        topics.extend(b.make("DescribeTopicPartitionsResponseTopic",
                             error_code=ErrorCode.topic_authorization_failed, name=name,
                             topic_id=ZERO_UUID, is_internal=False, partitions=(),
                             topic_authorized_operations=OPERATIONS_OMITTED)
                      for name in sorted(refused))
    return b.make("DescribeTopicPartitionsResponse", throttle_time=NO_THROTTLE,
                  topics=tuple(topics), next_cursor=next_cursor)
