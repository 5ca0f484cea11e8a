"""Fetch (1): whole batches from each partition, long polling until min_bytes or max_wait.

Fetch sessions (KIP-227) are answered the way Kafka answers when its session cache has no
room: a full response with session id 0, after which clients keep sending full fetches.

With an authorizer, as Kafka's KafkaApis.handleFetchRequest: a consumer needs READ on each
topic, a follower (replica id >= 0) CLUSTER_ACTION on the cluster; a partition refused is
answered TOPIC_AUTHORIZATION_FAILED and never read (a topic id unknown stays UNKNOWN_TOPIC_ID
for a consumer). A fetch with nothing it may read answers at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from strom.broker.authorize import cluster_allowed, topic_allowed
from strom.broker.leadership import (
    current_leader,
    leader_check,
    leadership,
    node_endpoints,
    storage_error,
)
from strom.broker.meter import TopicMeter
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import (
    Leadership,
    OffsetOutOfRange,
    PartitionLog,
    ReadResult,
    StorageError,
    UnknownTopic,
    chunks_bytes,
)

log = logging.getLogger(__name__)

FINAL_EPOCH: Final = -1
READ_COMMITTED: Final = 1  # isolation_level


@dataclass(slots=True)
class FetchBudget:
    remaining: int
    first: bool = True
    leaders: set[int] = field(default_factory=set)  # named in NOT_LEADER answers (KIP-951)


def aborted_transactions(b: ResponseBuilder, plog: PartitionLog, fetch_offset: int,
                         data: bytes) -> tuple[Any, ...]:
    """The aborted transactions a read_committed consumer needs to drop records of the data
    returned: those overlapping [fetch_offset, end of the last batch) (Kafka's
    collectAbortedTxns with the fetched data's upper bound)."""
    if not data:
        return ()
    upper = fetch_offset
    view = memoryview(data)
    pos = 0
    while pos + BATCH_HEADER_SIZE <= len(data):
        header = read_batch_header(view, pos)
        upper = header.next_offset
        pos += header.size
    return tuple(b.make("AbortedTransaction", producer_id=pid, first_offset=first)
                 for pid, first in plog.aborted_transactions(fetch_offset, upper))


def unread_error(topic: str | None, denied: bool) -> ErrorCode | None:
    """Why a partition is not read at all: its topic refused, or unknown by id."""
    if denied:
        return ErrorCode.topic_authorization_failed
    if topic is None:
        return ErrorCode.unknown_topic_id
    return None


async def read_partition(broker: Broker, b: ResponseBuilder, topic: str | None, part: Any,
                         budget: FetchBudget, committed: bool,
                         denied: bool = False) -> tuple[Any, int, int]:
    """(the partition's answer, bytes of records in it, the high watermark read or -1)."""
    def answer(error: ErrorCode, hw: int = -1, lso: int = -1, records: bytes = b"",
               stable: int | None = None, aborted: tuple[Any, ...] | None = None,
               leader: Leadership | None = None) -> Any:
        hint = {}
        if leader is not None and b.has("PartitionData", "current_leader"):
            hint["current_leader"] = current_leader(b, leader)
            if leader.leader is not None:
                budget.leaders.add(leader.leader)
        return b.make("PartitionData", partition_index=part.partition, error_code=error,
                      high_watermark=hw, last_stable_offset=hw if stable is None else stable,
                      log_start_offset=lso, aborted_transactions=aborted,
                      preferred_read_replica=-1, records=records, **hint)

    unread = unread_error(topic, denied)
    if unread is not None:
        return answer(unread), 0, -1
    assert topic is not None
    try:
        plog = broker.engine.partition(topic, part.partition)
        refused, found = leader_check(broker, topic, part.partition,
                                      int(getattr(part, "current_leader_epoch", -1)))
    except UnknownTopic:
        return answer(ErrorCode.unknown_topic_or_partition), 0, -1
    if refused is not None:
        return answer(refused, leader=found), 0, -1
    limit = min(int(part.partition_max_bytes), budget.remaining)
    try:
        fetch_offset = int(part.fetch_offset)
        result: ReadResult = await plog.read(fetch_offset, max(limit, 0), budget.first,
                                             committed=committed)
        data = chunks_bytes(result.chunks) if result.size else b""
        aborted = aborted_transactions(b, plog, fetch_offset, data) if committed else None
    except OffsetOutOfRange:
        offsets = await plog.offsets()
        return answer(ErrorCode.offset_out_of_range, offsets.high_watermark,
                      offsets.log_start), 0, -1
    except (StorageError, OSError) as exc:  # deleted, moved, or the storage failed
        error = read_failure(exc, topic, part.partition, broker.meter)
        moved = error == ErrorCode.not_leader_or_follower
        return answer(error, leader=leadership(broker, topic, part.partition)
                      if moved else None), 0, -1
    if data:
        budget.first = False
        budget.remaining -= len(data)
    return answer(ErrorCode.none, result.high_watermark, result.log_start_offset, data,
                  result.last_stable_offset, aborted), len(data), result.high_watermark


def read_failure(exc: StorageError | OSError, topic: str, partition: int,
                 meter: TopicMeter | None = None) -> ErrorCode:
    """The error of a failed read; a storage error is counted in `meter` (metrics on)."""
    if isinstance(exc, StorageError):
        error = storage_error(exc)
        if error != ErrorCode.kafka_storage_error:
            return error  # deleted, or the lease moved, while we read
    log.error("fetch from %s-%d failed: %s", topic, partition, exc)
    if meter is not None:
        meter.storage_error("read")
    return ErrorCode.kafka_storage_error


def topic_name(broker: Broker, topic: Any) -> str | None:
    return broker.resolve_topic(getattr(topic, "topic", None), getattr(topic, "topic_id", None))


@dataclass(slots=True)
class FetchRound:
    """One read of every partition a fetch names."""

    topics: tuple[Any, ...]
    size: int  # bytes of records
    seen: dict[tuple[str, int], int]  # the high watermarks read, to wait on
    leaders: set[int]  # named in NOT_LEADER_OR_FOLLOWER answers
    sizes: list[tuple[str, int, int]]  # (topic, partition, bytes) read; kept for metrics only


def replica_id(request: Any) -> int:
    """The fetching replica (>= 0 for a follower): replica_state's from v15, else the
    request's own field."""
    state = getattr(request, "replica_state", None)
    if state is not None:
        return int(state.replica_id)
    return int(getattr(request, "replica_id", -1))


def refused_topics(broker: Broker, ctx: RequestContext, request: Any
                   ) -> frozenset[str | None]:
    """The topics (by the name a topic id resolves to; None: every topic id unknown) this
    fetch may not read, each checked once; empty without an authorizer."""
    if ctx.authorizer is None:
        return frozenset()
    names = {topic_name(broker, t) for t in request.topics}
    if replica_id(request) >= 0:  # a follower: the cluster's CLUSTER_ACTION, or nothing
        return (frozenset() if cluster_allowed(ctx, Operation.CLUSTER_ACTION)
                else frozenset(names))
    return frozenset(n for n in names
                     if n is not None and not topic_allowed(ctx, Operation.READ, n))


async def read_all(broker: Broker, b: ResponseBuilder, request: Any,
                   refused: frozenset[str | None] = frozenset(),
                   max_bytes: int | None = None) -> FetchRound:
    limit = int(request.max_bytes) if max_bytes is None else max_bytes
    budget = FetchBudget(remaining=max(limit, 0))
    committed = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
    topics = []
    total = 0
    seen: dict[tuple[str, int], int] = {}
    sizes: list[tuple[str, int, int]] = []
    metered = broker.meter is not None
    for topic in request.topics:
        name = topic_name(broker, topic)
        partitions = []
        for part in topic.partitions:
            data, size, hw = await read_partition(broker, b, name, part, budget, committed,
                                                  name in refused)
            partitions.append(data)
            total += size
            if name is not None and hw >= 0:
                seen[(name, int(part.partition))] = hw
                if size and metered:
                    sizes.append((name, int(part.partition), size))
        topics.append(b.make("FetchableTopicResponse", topic=name or "",
                             topic_id=getattr(topic, "topic_id", None),
                             partitions=tuple(partitions)))
    return FetchRound(tuple(topics), total, seen, budget.leaders, sizes)


def fetch_response(b: ResponseBuilder, error: ErrorCode, topics: tuple[Any, ...],
                   endpoints: tuple[Any, ...] = ()) -> Any:
    return b.make("FetchResponse", throttle_time=NO_THROTTLE, error_code=error, session_id=0,
                  responses=topics, node_endpoints=endpoints)


@api(1, "Fetch", (4, 17),
     "long poll (max_wait_ms/min_bytes), max_bytes and per-partition limits, topic ids (v13+); "
     "read_committed (up to the last stable offset, aborted transactions listed); sessions "
     "answered sessionless (session id 0)")
async def handle_fetch(broker: Broker, ctx: RequestContext, request: Any,
                       b: ResponseBuilder) -> Any:
    session_id = int(getattr(request, "session_id", 0))
    epoch = int(getattr(request, "session_epoch", FINAL_EPOCH))
    if session_id != 0 and epoch not in (0, FINAL_EPOCH):
        return fetch_response(b, ErrorCode.fetch_session_id_not_found, ())
    max_wait_s = min(request.max_wait.total_seconds(),
                     broker.config.get_int("fetch.max.wait.ms.cap") / 1000)
    deadline = time.monotonic() + max(max_wait_s, 0)
    refused = refused_topics(broker, ctx, request)
    max_bytes, min_bytes = int(request.max_bytes), int(request.min_bytes)
    if broker.quotas.active:  # no more than the consumer_byte_rate allows over its window
        window = broker.quotas.fetch_window_bytes(ctx.session, ctx.client_id or "")
        if window is not None and window < max_bytes:
            max_bytes, min_bytes = window, min(min_bytes, window)
    while True:
        read = await read_all(broker, b, request, refused, max_bytes)
        remaining = deadline - time.monotonic()
        if (read.size >= min_bytes or remaining <= 0 or read.leaders
                or (refused and not read.seen)):
            endpoints = (await node_endpoints(broker, b, read.leaders,
                                                ctx.session.listener)
                         if b.has("FetchResponse", "node_endpoints") else ())
            if broker.meter is not None:  # the bytes of records each partition's answer has
                for name, index, size in read.sizes:
                    broker.meter.fetched(name, index, size)
            return fetch_response(b, ErrorCode.none, read.topics, endpoints)
        await broker.engine.wait_for_data(read.seen, remaining)
