"""DescribeProducers (61, KIP-664): the active idempotent producers of partitions.

Per requested partition, as Kafka's ReplicaManager.activeProducerState: every producer the
partition's producer state knows (those not yet expired by producer.id.expiration.ms), with its
epoch, the last sequence and timestamp of its last batch, and the first offset of its open
transaction (-1 if none). coordinator_epoch is -1 (one coordinator, never moved). An unknown
topic or partition gets UNKNOWN_TOPIC_OR_PARTITION (no error message, as Kafka);
NOT_LEADER_OR_FOLLOWER never happens on a single broker. Partitions are answered in request
order, repeats included.

With an authorizer each topic needs READ (Kafka's KafkaApis.handleDescribeProducersRequest): the
partitions of a topic refused answer TOPIC_AUTHORIZATION_FAILED with Kafka's message, whether
the topic exists or not. A name that is not a legal topic name is not authorized (Kafka
refuses it as invalid first; it cannot exist).
"""

from __future__ import annotations

from typing import Any, Final

from strom.broker.authorize import topic_allowed
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import UnknownTopic
from strom.storage.producer_state import ActiveProducer

NO_COORDINATOR_EPOCH: Final = -1
# Errors.TOPIC_AUTHORIZATION_FAILED's message, which Kafka's `new ApiError(error)` carries.
TOPIC_REFUSED: Final = "Topic authorization failed."


def active_producers(broker: Broker, topic: str, index: int) -> list[ActiveProducer] | None:
    """The partition's producers; None if the topic or partition does not exist."""
    try:
        plog = broker.engine.partition(topic, index)
    except UnknownTopic:
        return None
    return plog.producer_state.active_producers()


@api(61, "DescribeProducers", (0, 0),
     "active producers per partition (epoch, last sequence and timestamp, open "
     "transaction's start offset); coordinator epoch -1")
async def handle_describe_producers(broker: Broker, ctx: RequestContext, request: Any,
                                    b: ResponseBuilder) -> Any:
    topics = []
    for topic in request.topics:
        name = str(topic.name)
        refused = topic_name_error(name) is None and not topic_allowed(ctx, Operation.READ, name)
        partitions = []
        for index in topic.partition_indexes:
            if refused:
                partitions.append(b.make(
                    "PartitionResponse", partition_index=index,
                    error_code=ErrorCode.topic_authorization_failed, error_message=TOPIC_REFUSED,
                    active_producers=()))
                continue
            producers = active_producers(broker, name, int(index))
            if producers is None:
                partitions.append(b.make(
                    "PartitionResponse", partition_index=index,
                    error_code=ErrorCode.unknown_topic_or_partition, error_message=None,
                    active_producers=()))
                continue
            states = tuple(b.make(
                "ProducerState", producer_id=p.producer_id, producer_epoch=p.epoch,
                last_sequence=p.last_sequence, last_timestamp=p.last_timestamp,
                coordinator_epoch=NO_COORDINATOR_EPOCH,
                current_txn_start_offset=p.current_txn_start_offset) for p in producers)
            partitions.append(b.make("PartitionResponse", partition_index=index,
                                     error_code=ErrorCode.none, error_message=None,
                                     active_producers=states))
        topics.append(b.make("TopicResponse", name=name, partitions=tuple(partitions)))
    return b.make("DescribeProducersResponse", throttle_time=NO_THROTTLE, topics=tuple(topics))
