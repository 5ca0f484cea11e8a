"""ListOffsets (2): the offset for a timestamp, or for one of Kafka's special timestamps.

-2 earliest (log start offset), -1 latest (high watermark), -3 the record with the largest
timestamp (KIP-734, v7+), -4 earliest local (KIP-405, v8+; the log start offset, as nothing is
tiered), -5 latest tiered (KIP-1005, v9+) and -6 earliest pending upload (KIP-1023, v11+), both
"unknown" (-1) as Kafka answers for a topic without remote storage. Any other negative
timestamp, or a special one below its version, is UNSUPPORTED_VERSION, as in Kafka's
ReplicaManager. There is one leader epoch, 0, from the start.

With an authorizer each topic needs DESCRIBE (Kafka's KafkaApis.handleListOffsetRequest): the
partitions of a topic refused answer TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Final

from strom.broker.authorize import topic_allowed
from strom.broker.handlers.fetch import READ_COMMITTED
from strom.broker.leadership import leader_check, storage_error
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import NotLeader, PartitionLog, StorageError, UnknownTopic

LATEST: Final = -1
EARLIEST: Final = -2
MAX_TIMESTAMP: Final = -3
EARLIEST_LOCAL: Final = -4
LATEST_TIERED: Final = -5
EARLIEST_PENDING_UPLOAD: Final = -6
CONSUMER_REPLICA_ID: Final = -1
UNKNOWN: Final = -1

# ReplicaManager.timestampMinSupportedVersion
MIN_VERSION_FOR: Final = {
    EARLIEST: 1, LATEST: 1, MAX_TIMESTAMP: 7, EARLIEST_LOCAL: 8, LATEST_TIERED: 9,
    EARLIEST_PENDING_UPLOAD: 11,
}


@dataclass(frozen=True, slots=True)
class Found:
    offset: int
    timestamp: int = UNKNOWN
    leader_epoch: int = 0  # the partition's current leader epoch (set by lookup's caller)


NOT_FOUND: Final = Found(UNKNOWN, UNKNOWN, UNKNOWN)


def timestamp_unsupported(timestamp: int, version: int) -> bool:
    if timestamp >= 0:
        return False
    needed = MIN_VERSION_FOR.get(timestamp)
    return needed is None or version < needed


async def max_timestamp_record(plog: PartitionLog) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record carrying the log's largest timestamp.

    Kafka (3.8+, KAFKA-16310) answers with that record's own offset, not its batch's last
    offset, so the engine's answer is narrowed to the first record with that timestamp.
    """
    hit = await plog.max_timestamp()
    if hit is None:
        return None
    first = await plog.offset_for_timestamp(hit[1])
    if first is not None and first[1] == hit[1] and first[0] <= hit[0]:
        return first
    return hit


async def lookup(plog: PartitionLog, timestamp: int, replica_id: int,
                 read_committed: bool = False) -> Found:
    """UnifiedLog.fetchOffsetByTimestamp as Partition.fetchOffsetForTimestamp filters it:
    consumers see up to the high watermark, read_committed ones up to the last stable
    offset."""
    offsets = await plog.offsets()
    if replica_id != CONSUMER_REPLICA_ID:
        last_fetchable = offsets.log_end
    elif read_committed:
        last_fetchable = offsets.last_stable
    else:
        last_fetchable = offsets.high_watermark
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return Found(offsets.log_start)
    if timestamp == LATEST:
        return Found(last_fetchable)
    if timestamp in (LATEST_TIERED, EARLIEST_PENDING_UPLOAD):
        return NOT_FOUND
    if timestamp == MAX_TIMESTAMP:
        hit = await max_timestamp_record(plog)
    else:
        hit = await plog.offset_for_timestamp(timestamp)
    if hit is None or hit[0] >= last_fetchable:
        return NOT_FOUND
    return Found(hit[0], hit[1])


def answer(b: ResponseBuilder, part: Any, error: ErrorCode, found: Found = NOT_FOUND) -> Any:
    return b.make("ListOffsetsPartitionResponse", partition_index=part.partition_index,
                  error_code=error, timestamp=found.timestamp, offset=found.offset,
                  leader_epoch=found.leader_epoch)


async def list_partition(broker: Broker, b: ResponseBuilder, topic: str, part: Any,
                         replica_id: int, duplicated: bool, read_committed: bool) -> Any:
    if duplicated:
        return answer(b, part, ErrorCode.invalid_request)
    timestamp = int(part.timestamp)
    if timestamp_unsupported(timestamp, b.version):
        return answer(b, part, ErrorCode.unsupported_version)
    try:
        plog = broker.engine.partition(topic, int(part.partition_index))
        refused, leadership = leader_check(broker, topic, int(part.partition_index),
                                           int(getattr(part, "current_leader_epoch", -1)))
    except UnknownTopic:
        return answer(b, part, ErrorCode.unknown_topic_or_partition)
    if refused is not None:
        return answer(b, part, refused)
    try:
        found = await lookup(plog, timestamp, replica_id, read_committed)
    except (UnknownTopic, NotLeader, StorageError) as exc:  # deleted or moved meanwhile
        return answer(b, part, storage_error(exc))
    if found.offset != UNKNOWN:
        found = replace(found, leader_epoch=leadership.epoch)
    return answer(b, part, ErrorCode.none, found)


@api(2, "ListOffsets", (1, 11),
     "earliest/latest/max-timestamp/by-time; tiered specials answer -1; read_committed "
     "latest is the last stable offset")
async def handle_list_offsets(broker: Broker, ctx: RequestContext, request: Any,
                              b: ResponseBuilder) -> Any:
    replica_id = int(request.replica_id)
    read_committed = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
    counts = Counter((str(t.name), int(p.partition_index))
                     for t in request.topics for p in t.partitions)
    # One answer per topic-partition, grouped by topic in request order, as Kafka's map gives.
    answered: dict[str, dict[int, Any]] = {}
    allowed: dict[str, bool] = {}  # DESCRIBE, asked once per topic
    for topic in request.topics:
        name = str(topic.name)
        if name not in allowed:
            allowed[name] = topic_allowed(ctx, Operation.DESCRIBE, name)
        refused = not allowed[name]
        per_topic = answered.setdefault(name, {})
        for part in topic.partitions:
            index = int(part.partition_index)
            if index in per_topic:
                continue
            if refused:
                per_topic[index] = answer(b, part, ErrorCode.topic_authorization_failed)
                continue
            per_topic[index] = await list_partition(broker, b, name, part, replica_id,
                                                    counts[(name, index)] > 1,
                                                    read_committed)
    topics = tuple(b.make("ListOffsetsTopicResponse", name=name, partitions=tuple(parts.values()))
                   for name, parts in answered.items())
    return b.make("ListOffsetsResponse", throttle_time=NO_THROTTLE, topics=topics)
