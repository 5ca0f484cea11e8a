"""Metadata (3): brokers, topics and partitions; auto-creates topics when allowed (never an
internal topic: only its coordinator creates it, see coordinator/internal_topics.py).

With an authorizer, as Kafka's KafkaApis.handleTopicMetadataRequest: listing every topic shows
only those the principal may DESCRIBE; a topic asked for by name without DESCRIBE answers
TOPIC_AUTHORIZATION_FAILED (whether it exists or not, and it is not created), by id the same
with the id and no name (ids are not secret). Auto-creation also needs CREATE on the cluster
or on the topic, else TOPIC_AUTHORIZATION_FAILED. Authorized operations, when asked for, come
from the authorizer; the cluster's (v8-v10) are 0 without DESCRIBE on the cluster.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

from strom.broker.authorize import cluster_allowed, operations_or, topic_allowed
from strom.broker.leadership import controller_id, partition_fields
from strom.broker.operations import CLUSTER_OPERATIONS, OPERATIONS_OMITTED, TOPIC_OPERATIONS
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.coordinator.internal_topics import INTERNAL_TOPICS
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType
from strom.storage.api import StorageError, TopicInfo

log = logging.getLogger(__name__)

ZERO_UUID: Final = uuid.UUID(int=0)


def partition_entries(broker: Broker, b: ResponseBuilder, info: TopicInfo) -> tuple[Any, ...]:
    return tuple(b.make("MetadataResponsePartition", **partition_fields(broker, info.name, index))
                 for index in range(info.partitions))


def topic_entry(broker: Broker, b: ResponseBuilder, info: TopicInfo,
                operations: int = OPERATIONS_OMITTED) -> Any:
    return b.make("MetadataResponseTopic", error_code=ErrorCode.none, name=info.name,
                  topic_id=info.topic_id, is_internal=info.name in INTERNAL_TOPICS,
                  partitions=partition_entries(broker, b, info),
                  topic_authorized_operations=operations)


def error_topic(b: ResponseBuilder, name: str | None, topic_id: uuid.UUID | None,
                error: ErrorCode, operations: int = OPERATIONS_OMITTED,
                internal: bool | None = None) -> Any:
    if name is None and b.version < 12:
        name = ""  # the response's name is nullable only from v12
    return b.make("MetadataResponseTopic", error_code=error, name=name,
                  topic_id=topic_id or ZERO_UUID,
                  is_internal=name in INTERNAL_TOPICS if internal is None else internal,
                  partitions=(),
                  topic_authorized_operations=operations)


class TopicQuery:
    """What one Metadata request asks about its topics, and who asks."""

    __slots__ = ("allow_create", "b", "broker", "ctx", "with_operations")

    def __init__(self, broker: Broker, ctx: RequestContext, b: ResponseBuilder,
                 allow_create: bool, with_operations: bool) -> None:
        self.broker, self.ctx, self.b = broker, ctx, b
        self.allow_create = allow_create
        self.with_operations = with_operations

    def operations(self, name: str) -> int:
        if not self.with_operations:
            return OPERATIONS_OMITTED
        return operations_or(self.ctx, ResourceType.TOPIC, name, TOPIC_OPERATIONS)

    def describable(self, name: str) -> bool:
        return topic_allowed(self.ctx, Operation.DESCRIBE, name)

    def creatable(self, name: str) -> bool:
        """Kafka's rule for auto-creation: CREATE on the cluster, or else on the topic."""
        return (cluster_allowed(self.ctx, Operation.CREATE)
                or topic_allowed(self.ctx, Operation.CREATE, name))

    def entry(self, info: TopicInfo) -> Any:
        return topic_entry(self.broker, self.b, info, self.operations(info.name))

    def by_id(self, topic_id: uuid.UUID) -> Any:
        info = self.broker.engine.topic_by_id(topic_id)
        if info is None:
            return error_topic(self.b, None, topic_id, ErrorCode.unknown_topic_id)
        if not self.describable(info.name):
            return error_topic(self.b, None, topic_id, ErrorCode.topic_authorization_failed,
                               internal=False)
        return self.entry(info)

    async def by_name(self, name: str, topic_id: uuid.UUID | None) -> Any:
        b = self.b
        if not self.describable(name):  # not even whether it exists is told
            return error_topic(b, name, None, ErrorCode.topic_authorization_failed,
                               internal=False)
        info = self.broker.engine.topics().get(name)
        if info is not None:
            return self.entry(info)
        if self.allow_create and not self.creatable(name):
            return error_topic(b, name, None, ErrorCode.topic_authorization_failed)
        if topic_name_error(name) is not None:
            return error_topic(b, name, topic_id, ErrorCode.invalid_topic_exception,
                               self.operations(name))
        if self.allow_create:
            try:
                info = await self.broker.auto_create_topic(name)
            except (StorageError, OSError):
                log.exception("auto-creating topic %s failed", name)
                return error_topic(b, name, topic_id, ErrorCode.unknown_server_error,
                                   self.operations(name))
        if info is None:
            return error_topic(b, name, topic_id, ErrorCode.unknown_topic_or_partition,
                               self.operations(name))
        return self.entry(info)

    async def requested(self, topic: Any) -> Any:
        topic_id = getattr(topic, "topic_id", None)
        if topic.name is not None:
            return await self.by_name(topic.name, topic_id)
        if topic_id is None or topic_id == ZERO_UUID or self.b.version < 12:
            # Kafka resolves topic ids in Metadata only from v12.
            return error_topic(self.b, None, topic_id, ErrorCode.invalid_request)
        return self.by_id(topic_id)

    def every_topic(self) -> tuple[Any, ...]:
        """Every topic the principal may describe, by name."""
        infos = sorted(self.broker.engine.topics().values(), key=lambda t: t.name)
        return tuple(self.entry(info) for info in infos if self.describable(info.name))


def cluster_operations(ctx: RequestContext, request: Any) -> int:
    """Asked for in v8-v10 only: 0 without DESCRIBE on the cluster, as Kafka answers."""
    if not getattr(request, "include_cluster_authorized_operations", False):
        return OPERATIONS_OMITTED
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        return 0
    return operations_or(ctx, ResourceType.CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS)


@api(3, "Metadata", (0, 13), "topic ids (v10+), auto-creation per auto.create.topics.enable "
     "(never of an internal topic)")
async def handle_metadata(broker: Broker, ctx: RequestContext, request: Any,
                          b: ResponseBuilder) -> Any:
    wanted = request.topics
    allow_create = (bool(getattr(request, "allow_auto_topic_creation", True))
                    and broker.config.get_bool("auto.create.topics.enable"))
    query = TopicQuery(broker, ctx, b, allow_create,
                       bool(getattr(request, "include_topic_authorized_operations", False)))
    # v0 asks for every topic with an empty list, later versions with null.
    if wanted is None or (b.version == 0 and not wanted):
        topics = query.every_topic()
    else:
        topics = tuple([await query.requested(t) for t in wanted])
    live = await broker.engine.brokers()
    listener = ctx.session.listener
    brokers = tuple(b.make("MetadataResponseBroker", node_id=r.node_id,
                           host=r.endpoint(listener)[0], port=r.endpoint(listener)[1],
                           rack=r.rack)
                    for r in live)
    return b.make("MetadataResponse", throttle_time=NO_THROTTLE, brokers=brokers,
                  cluster_id=broker.cluster_id, controller_id=controller_id(broker, live),
                  topics=topics,
                  cluster_authorized_operations=cluster_operations(ctx, request),
                  error_code=ErrorCode.none)
