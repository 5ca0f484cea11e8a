"""Metadata (3): brokers, topics and partitions; auto-creates topics when allowed (never an
internal topic: only its coordinator creates it, see coordinator/internal_topics.py)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Final

from strom.broker.leadership import controller_id, partition_fields
from strom.broker.operations import CLUSTER_OPERATIONS, OPERATIONS_OMITTED, TOPIC_OPERATIONS
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.coordinator.internal_topics import INTERNAL_TOPICS
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
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
                error: ErrorCode) -> Any:
    if name is None and b.version < 12:
        name = ""  # the response's name is nullable only from v12
    return b.make("MetadataResponseTopic", error_code=error, name=name,
                  topic_id=topic_id or ZERO_UUID, is_internal=name in INTERNAL_TOPICS,
                  partitions=(),
                  topic_authorized_operations=OPERATIONS_OMITTED)


async def requested_topic(broker: Broker, b: ResponseBuilder, topic: Any,
                          allow_create: bool, operations: int) -> Any:
    topic_id = getattr(topic, "topic_id", None)
    name = topic.name
    if name is None:
        if topic_id is None or topic_id == ZERO_UUID or b.version < 12:
            # Kafka resolves topic ids in Metadata only from v12.
            return error_topic(b, None, topic_id, ErrorCode.invalid_request)
        info = broker.engine.topic_by_id(topic_id)
        if info is None:
            return error_topic(b, None, topic_id, ErrorCode.unknown_topic_id)
        return topic_entry(broker, b, info, operations)
    if topic_name_error(name) is not None:
        return error_topic(b, name, topic_id, ErrorCode.invalid_topic_exception)
    info = broker.engine.topics().get(name)
    if info is None and allow_create:
        try:
            info = await broker.auto_create_topic(name)
        except (StorageError, OSError):
            log.exception("auto-creating topic %s failed", name)
            return error_topic(b, name, topic_id, ErrorCode.unknown_server_error)
    if info is None:
        return error_topic(b, name, topic_id, ErrorCode.unknown_topic_or_partition)
    return topic_entry(broker, b, info, operations)


@api(3, "Metadata", (0, 13), "topic ids (v10+), auto-creation per auto.create.topics.enable "
     "(never of an internal topic)")
async def handle_metadata(broker: Broker, ctx: RequestContext, request: Any,
                          b: ResponseBuilder) -> Any:
    wanted = request.topics
    topic_ops = (TOPIC_OPERATIONS if getattr(request, "include_topic_authorized_operations", False)
                 else OPERATIONS_OMITTED)
    cluster_ops = (CLUSTER_OPERATIONS
                   if getattr(request, "include_cluster_authorized_operations", False)
                   else OPERATIONS_OMITTED)
    # v0 asks for every topic with an empty list, later versions with null.
    if wanted is None or (b.version == 0 and not wanted):
        topics = tuple(topic_entry(broker, b, info, topic_ops)
                       for info in sorted(broker.engine.topics().values(), key=lambda t: t.name))
    else:
        allow = bool(getattr(request, "allow_auto_topic_creation", True))
        topics = tuple([await requested_topic(broker, b, t, allow, topic_ops) for t in wanted])
    live = await broker.engine.brokers()
    listener = ctx.session.listener
    brokers = tuple(b.make("MetadataResponseBroker", node_id=r.node_id,
                           host=r.endpoint(listener)[0], port=r.endpoint(listener)[1],
                           rack=r.rack)
                    for r in live)
    return b.make("MetadataResponse", throttle_time=NO_THROTTLE, brokers=brokers,
                  cluster_id=broker.cluster_id, controller_id=controller_id(broker, live),
                  topics=topics,
                  cluster_authorized_operations=cluster_ops,
                  error_code=ErrorCode.none)
