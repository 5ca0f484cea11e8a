"""OffsetForLeaderEpoch (23): the end offset of a leader epoch, for truncation checks.

strom has one leader epoch, 0, starting at the log start offset. Kafka's
LeaderEpochFileCache.endOffsetFor with that single entry gives:

- requested epoch -1 (undefined): (-1, -1);
- requested epoch 0 (the latest): (0, log end offset);
- requested epoch above the latest: (-1, -1);
- requested epoch below the earliest (any other negative): (requested epoch, the first
  epoch's start offset), i.e. the log start offset.
"""

from __future__ import annotations

from typing import Any, Final

from strom.broker.handlers.fetch import LEADER_EPOCH, leader_epoch_error
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.storage.api import PartitionLog, UnknownTopic

UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1


async def end_offset_for(plog: PartitionLog, requested_epoch: int) -> tuple[int, int]:
    """(epoch, end offset) as LeaderEpochFileCache.endOffsetFor answers."""
    if requested_epoch == UNDEFINED_EPOCH or requested_epoch > LEADER_EPOCH:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    offsets = await plog.offsets()
    if requested_epoch == LEADER_EPOCH:
        return LEADER_EPOCH, offsets.log_end
    return requested_epoch, offsets.log_start


async def epoch_end_offset(broker: Broker, b: ResponseBuilder, topic: str, part: Any) -> Any:
    def answer(error: ErrorCode, epoch: int = UNDEFINED_EPOCH,
               offset: int = UNDEFINED_EPOCH_OFFSET) -> Any:
        return b.make("EpochEndOffset", error_code=error, partition=part.partition,
                      leader_epoch=epoch, end_offset=offset)

    try:
        plog = broker.engine.partition(topic, int(part.partition))
    except UnknownTopic:
        return answer(ErrorCode.unknown_topic_or_partition)
    epoch_error = leader_epoch_error(int(part.current_leader_epoch))
    if epoch_error is not None:
        return answer(epoch_error)
    epoch, offset = await end_offset_for(plog, int(part.leader_epoch))
    return answer(ErrorCode.none, epoch, offset)


@api(23, "OffsetForLeaderEpoch", (2, 4),
     "one leader epoch (0): epoch 0 ends at the log end offset, later epochs are undefined")
async def handle_offset_for_leader_epoch(broker: Broker, ctx: RequestContext, request: Any,
                                         b: ResponseBuilder) -> Any:
    topics = tuple([
        b.make("OffsetForLeaderTopicResult", topic=t.topic,
               partitions=tuple([await epoch_end_offset(broker, b, str(t.topic), p)
                                 for p in t.partitions]))
        for t in request.topics
    ])
    return b.make("OffsetForLeaderEpochResponse", throttle_time=NO_THROTTLE, topics=topics)
