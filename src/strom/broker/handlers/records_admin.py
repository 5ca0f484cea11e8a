"""DeleteRecords (21): advances partitions' log start offsets, as Partition.deleteRecordsOnLeader.

Offset -1 means the high watermark; an offset beyond the high watermark (or negative) is
OFFSET_OUT_OF_RANGE; a topic whose cleanup.policy lacks "delete" answers POLICY_VIOLATION;
Kafka's internal topics are refused with INVALID_TOPIC_EXCEPTION. The low watermark answered
is the log start offset after the deletion (the lowest across replicas, and there is one).

With an authorizer each topic needs DELETE (Kafka's KafkaApis.handleDeleteRecordsRequest): the
partitions of a topic refused answer TOPIC_AUTHORIZATION_FAILED, whether it exists or not, and
nothing is deleted from them.
"""

from __future__ import annotations

from typing import Any, Final

from strom.broker.authorize import topic_allowed
from strom.broker.errors import ApiError, unexpected
from strom.broker.leadership import not_led_here
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.internal_topics import INTERNAL_TOPICS
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import NotLeader, OffsetOutOfRange, StorageError, UnknownTopic

HIGH_WATERMARK: Final = -1
INVALID_LOW_WATERMARK: Final = -1




async def delete_before(broker: Broker, topic: str, index: int, offset: int) -> int:
    """The new low watermark; raises ApiError. Holds the topic's lock, so the topic is not
    deleted or reconfigured meanwhile."""
    async with broker.topic_locks.hold(topic):
        return await _delete_before(broker, topic, index, offset)


async def _delete_before(broker: Broker, topic: str, index: int, offset: int) -> int:
    try:
        plog = broker.engine.partition(topic, index)
    except UnknownTopic:
        raise ApiError(ErrorCode.unknown_topic_or_partition) from None
    if topic in INTERNAL_TOPICS:
        raise ApiError(ErrorCode.invalid_topic_exception)
    if "delete" not in broker.engine.log_config(topic).cleanup_policy.split(","):
        raise ApiError(ErrorCode.policy_violation)
    if not_led_here(broker, topic, index) is not None:
        raise ApiError(ErrorCode.not_leader_or_follower)
    try:
        high_watermark = (await plog.offsets()).high_watermark
        target = high_watermark if offset == HIGH_WATERMARK else offset
        if target < 0 or target > high_watermark:
            raise ApiError(ErrorCode.offset_out_of_range)
        return await plog.delete_records_before(target)
    except OffsetOutOfRange:
        raise ApiError(ErrorCode.offset_out_of_range) from None
    except NotLeader:  # the lease moved meanwhile
        raise ApiError(ErrorCode.not_leader_or_follower) from None
    except (StorageError, OSError):
        raise ApiError(ErrorCode.kafka_storage_error) from None


@api(21, "DeleteRecords", (0, 2), "offset -1 is the high watermark; compact-only topics refused")
async def handle_delete_records(broker: Broker, ctx: RequestContext, request: Any,
                                b: ResponseBuilder) -> Any:
    # Kafka keys the request by topic-partition: a repeated partition counts once (last offset).
    wanted: dict[str, dict[int, int]] = {}
    for topic in request.topics:
        per_topic = wanted.setdefault(str(topic.name), {})
        for part in topic.partitions:
            per_topic[int(part.partition_index)] = int(part.offset)
    topics = []
    for name, offsets in wanted.items():
        allowed = topic_allowed(ctx, Operation.DELETE, name)
        partitions = []
        for index, offset in offsets.items():
            error, low = ErrorCode.none, INVALID_LOW_WATERMARK
            try:
                if not allowed:
                    raise ApiError(ErrorCode.topic_authorization_failed)
                low = await delete_before(broker, name, index, offset)
            except ApiError as refused:
                error = refused.code
            except Exception:
                error = unexpected(f"deleting records of {name}-{index}").code
            partitions.append(b.make("DeleteRecordsPartitionResult", partition_index=index,
                                     low_watermark=low, error_code=error))
        topics.append(b.make("DeleteRecordsTopicResult", name=name, partitions=tuple(partitions)))
    return b.make("DeleteRecordsResponse", throttle_time=NO_THROTTLE, topics=tuple(topics))
