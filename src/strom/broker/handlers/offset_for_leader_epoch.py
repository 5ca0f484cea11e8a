"""OffsetForLeaderEpoch (23): the end offset of a leader epoch, for truncation checks (KIP-101,
KIP-320).

The partition's leader epochs and where each began come from the storage (a single broker has
one, epoch 0, from the log start; PostgreSQL records one each time a partition's lease changes
hands). The answer is Kafka's LeaderEpochFileCache.endOffsetFor over them:

- requested epoch -1 (undefined), or above the current epoch: (-1, -1);
- the current epoch: (current epoch, log end offset);
- an earlier epoch: the largest epoch at or below it, ending where the next epoch began (an
  epoch that began where a later one also began holds no records and is left out, as Kafka's
  cache drops it);
- below the earliest: (requested epoch, the earliest epoch's start offset).

Only the partition's leader answers; the request's current_leader_epoch is checked as Fetch
checks it.

With an authorizer (Kafka's KafkaApis.handleOffsetForLeaderEpochRequest): CLUSTER_ACTION on the
cluster (a replica's right) allows every topic; otherwise each topic needs DESCRIBE (KIP-320:
consumers ask too), and the partitions of a topic refused answer TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from strom.broker.authorize import cluster_allowed, topic_allowed
from strom.broker.leadership import leader_check, storage_error
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import StorageError, UnknownTopic

UNDEFINED_EPOCH: Final = -1
UNDEFINED_EPOCH_OFFSET: Final = -1


def end_offset_for(epochs: Sequence[tuple[int, int]], current: int, log_end: int,
                   requested: int) -> tuple[int, int]:
    """(epoch, end offset) as LeaderEpochFileCache.endOffsetFor answers, over `epochs`
    ((epoch, start offset) in epoch order)."""
    if requested == UNDEFINED_EPOCH or requested > current:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if requested == current:
        return current, log_end
    kept: list[tuple[int, int]] = []
    for epoch, start in epochs:  # a later epoch starting at or before an earlier one wins
        while kept and kept[-1][1] >= start:
            kept.pop()
        kept.append((epoch, start))
    if not kept:
        return requested, log_end
    if requested < kept[0][0]:
        return requested, kept[0][1]
    floor = max(i for i, (epoch, _start) in enumerate(kept) if epoch <= requested)
    if floor + 1 < len(kept):
        return kept[floor][0], kept[floor + 1][1]
    return kept[floor][0], log_end


async def epoch_end_offset(broker: Broker, b: ResponseBuilder, topic: str, part: Any,
                           denied: bool = False) -> Any:
    def answer(error: ErrorCode, epoch: int = UNDEFINED_EPOCH,
               offset: int = UNDEFINED_EPOCH_OFFSET) -> Any:
        return b.make("EpochEndOffset", error_code=error, partition=part.partition,
                      leader_epoch=epoch, end_offset=offset)

    if denied:
        return answer(ErrorCode.topic_authorization_failed)
    index = int(part.partition)
    try:
        plog = broker.engine.partition(topic, index)
        refused, leadership = leader_check(broker, topic, index, int(part.current_leader_epoch))
    except UnknownTopic:
        return answer(ErrorCode.unknown_topic_or_partition)
    if refused is not None:
        return answer(refused)
    try:
        offsets = await plog.offsets()
        epochs = await broker.engine.leader_epochs(topic, index)
    except StorageError as exc:
        return answer(storage_error(exc))
    epoch, offset = end_offset_for(epochs, leadership.epoch, offsets.log_end,
                                   int(part.leader_epoch))
    return answer(ErrorCode.none, epoch, offset)


def refused_topics(ctx: RequestContext, request: Any) -> frozenset[str]:
    """The topics this request may not ask about; empty without an authorizer."""
    if ctx.authorizer is None or cluster_allowed(ctx, Operation.CLUSTER_ACTION):
        return frozenset()
    names = {str(t.topic) for t in request.topics}
    return frozenset(n for n in names if not topic_allowed(ctx, Operation.DESCRIBE, n))


@api(23, "OffsetForLeaderEpoch", (2, 4),
     "every leader epoch a partition has had (a new one each time its lease moves), as "
     "Kafka's leader-epoch cache answers")
async def handle_offset_for_leader_epoch(broker: Broker, ctx: RequestContext, request: Any,
                                         b: ResponseBuilder) -> Any:
    refused = refused_topics(ctx, request)
    topics = tuple([
        b.make("OffsetForLeaderTopicResult", topic=t.topic,
               partitions=tuple([await epoch_end_offset(broker, b, str(t.topic), p,
                                                        str(t.topic) in refused)
                                 for p in t.partitions]))
        for t in request.topics
    ])
    return b.make("OffsetForLeaderEpochResponse", throttle_time=NO_THROTTLE, topics=topics)
