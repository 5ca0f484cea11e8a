"""DescribeQuorum (55): the metadata quorum, as a combined broker and controller of one node
running KRaft would describe it.

strom has no Raft log of its own: this broker is the cluster's controller (DescribeCluster and
Metadata name it) and so the one voter and leader of the quorum, with nothing to replicate.
Kafka answers from KafkaRaftClient.handleDescribeQuorumRequest: only `__cluster_metadata`
partition 0 is described, any other request gets UNKNOWN_TOPIC_OR_PARTITION for every
partition it names. The leader's log end offset and the high watermark are -1 (Kafka's value
for "unknown": there is no metadata log), its fetch and caught-up times now (the leader's own
state, as Kafka reports it), and the leader epoch 0 (strom never elects; OffsetForLeaderEpoch
serves the same single epoch).

With an authorizer the request needs DESCRIBE on the cluster (Kafka's controller checks it
before answering), else only the top-level error CLUSTER_AUTHORIZATION_FAILED is answered
(DescribeQuorumRequest.getTopLevelErrorResponse).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from strom.broker.authorize import cluster_allowed
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.internal_topics import CLUSTER_METADATA_TOPIC
from strom.protocol.messages import ErrorCode, ResponseBuilder
from strom.security.acl import Operation

METADATA_PARTITION: Final = 0
LEADER_EPOCH: Final = 0
UNKNOWN_OFFSET: Final = -1
LISTENER_NAME: Final = "PLAINTEXT"
NO_DIRECTORY_ID: Final = uuid.UUID(int=0)  # Kafka's ZERO_UUID: no directory id known


def names_metadata_partition(request: Any) -> bool:
    """KafkaRaftClient.hasValidTopicPartition: exactly the metadata log's one partition."""
    topics = request.topics
    return (len(topics) == 1 and str(topics[0].topic_name) == CLUSTER_METADATA_TOPIC
            and len(topics[0].partitions) == 1
            and int(topics[0].partitions[0].partition_index) == METADATA_PARTITION)


def unknown_partitions(b: ResponseBuilder, request: Any) -> Any:
    """DescribeQuorumRequest.getPartitionLevelErrorResponse, with Kafka's default fields."""
    topics = tuple(
        b.make("TopicData", topic_name=topic.topic_name, partitions=tuple(
            b.make("PartitionData", partition_index=p.partition_index,
                   error_code=ErrorCode.unknown_topic_or_partition, error_message=None,
                   leader_id=0, leader_epoch=0, high_watermark=0, current_voters=(),
                   observers=())
            for p in topic.partitions))
        for topic in request.topics)
    return b.make("DescribeQuorumResponse", error_code=ErrorCode.none, error_message=None,
                  topics=topics, nodes=())


def quorum_partition(broker: Broker, b: ResponseBuilder) -> Any:
    now_ms = int(time.time() * 1000)
    voter = b.make("ReplicaState", replica_id=broker.node_id,
                   replica_directory_id=NO_DIRECTORY_ID, log_end_offset=UNKNOWN_OFFSET,
                   last_fetch_timestamp=now_ms, last_caught_up_timestamp=now_ms)
    return b.make("PartitionData", partition_index=METADATA_PARTITION,
                  error_code=ErrorCode.none, error_message=None, leader_id=broker.node_id,
                  leader_epoch=LEADER_EPOCH, high_watermark=UNKNOWN_OFFSET,
                  current_voters=(voter,), observers=())


@api(55, "DescribeQuorum", (0, 2), "this broker is the one voter and leader of "
     "__cluster_metadata-0 (no metadata log: offsets -1); other partitions "
     "UNKNOWN_TOPIC_OR_PARTITION")
async def handle_describe_quorum(broker: Broker, ctx: RequestContext, request: Any,
                                 b: ResponseBuilder) -> Any:
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        return b.make("DescribeQuorumResponse",
                      error_code=ErrorCode.cluster_authorization_failed, error_message=None,
                      topics=(), nodes=())
    if not names_metadata_partition(request):
        return unknown_partitions(b, request)
    topic = b.make("TopicData", topic_name=CLUSTER_METADATA_TOPIC,
                   partitions=(quorum_partition(broker, b),))
    nodes = (b.make("Node", node_id=broker.node_id, listeners=(
        b.make("Listener", name=LISTENER_NAME, host=broker.advertised_host,
               port=broker.advertised_port),)),) if b.has_class("Node") else ()  # v2+
    return b.make("DescribeQuorumResponse", error_code=ErrorCode.none, error_message=None,
                  topics=(topic,), nodes=nodes)
