"""Committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47).

Authorization, in Kafka's order (KafkaApis): OffsetCommit needs READ on the group (every
partition GROUP_AUTHORIZATION_FAILED, nothing committed) and READ on each topic (its partitions
TOPIC_AUTHORIZATION_FAILED and not committed, before any UNKNOWN_TOPIC_OR_PARTITION); OffsetFetch
DESCRIBE on the group, and DESCRIBE on each topic: a topic named is answered
TOPIC_AUTHORIZATION_FAILED, a fetch of all the group's offsets leaves such topics out;
OffsetDelete DELETE on the group and READ on each topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Final

from strom.broker.authorize import group_allowed, topic_allowed
from strom.broker.coordinator_runtime import CoordinatorError
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import (
    CommitRequest,
    CommitResult,
    CommittedOffset,
    OffsetCommit,
)
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation

NO_OFFSET: Final = -1
NO_EPOCH: Final = -1


def partition_error(broker: Broker, topic: str | None, partition: int) -> ErrorCode | None:
    """Kafka refuses offsets for partitions the cluster does not have."""
    if topic is None:
        return ErrorCode.unknown_topic_id
    info = broker.engine.topics().get(topic)
    if info is None or not 0 <= partition < info.partitions:
        return ErrorCode.unknown_topic_or_partition
    return None


def authorized_partition_error(broker: Broker, ctx: RequestContext, topic: str | None,
                               partition: int) -> ErrorCode | None:
    """`partition_error`, with TOPIC_AUTHORIZATION_FAILED first for a topic the principal may
    not READ (an unknown topic id stays UNKNOWN_TOPIC_ID: there is no name to authorize)."""
    if topic is not None and not topic_allowed(ctx, Operation.READ, topic):
        return ErrorCode.topic_authorization_failed
    return partition_error(broker, topic, partition)


def commit_topic_name(broker: Broker, topic: Any) -> str | None:
    return broker.resolve_topic(getattr(topic, "name", None), getattr(topic, "topic_id", None))


def offset_commit(topic: str, partition: Any) -> OffsetCommit:
    """One partition of an OffsetCommit or TxnOffsetCommit request."""
    return OffsetCommit(
        topic=topic, partition=int(partition.partition_index),
        offset=int(partition.committed_offset),
        leader_epoch=int(getattr(partition, "committed_leader_epoch", NO_EPOCH)),
        metadata=partition.committed_metadata)


def commit_response(b: ResponseBuilder, request: Any,
                    errors: dict[tuple[int, int], ErrorCode]) -> Any:
    topics = tuple(
        b.make("OffsetCommitResponseTopic", name=getattr(t, "name", None),
               topic_id=getattr(t, "topic_id", None),
               partitions=tuple(
                   b.make("OffsetCommitResponsePartition", partition_index=p.partition_index,
                          error_code=errors[(ti, int(p.partition_index))])
                   for p in t.partitions))
        for ti, t in enumerate(request.topics))
    return b.make("OffsetCommitResponse", throttle_time=NO_THROTTLE, topics=topics)


@api(8, "OffsetCommit", (2, 10), "generation/member checks; simple commits for groups without "
     "members; topic ids (v10)")
async def handle_offset_commit(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    errors: dict[tuple[int, int], ErrorCode] = {}
    if not group_allowed(ctx, Operation.READ, request.group_id):
        errors = {(ti, int(p.partition_index)): ErrorCode.group_authorization_failed
                  for ti, t in enumerate(request.topics) for p in t.partitions}
        return commit_response(b, request, errors)
    valid: list[tuple[tuple[int, int], OffsetCommit]] = []
    for ti, topic in enumerate(request.topics):
        name = commit_topic_name(broker, topic)
        for p in topic.partitions:
            key = (ti, int(p.partition_index))
            error = authorized_partition_error(broker, ctx, name, int(p.partition_index))
            if error is not None or not request.group_id:
                errors[key] = error or ErrorCode.invalid_group_id
                continue
            assert name is not None
            valid.append((key, offset_commit(name, p)))
    if valid:
        commit = CommitRequest(
            group_id=request.group_id,
            generation_id=int(request.generation_id_or_member_epoch),
            member_id=request.member_id,
            group_instance_id=getattr(request, "group_instance_id", None),
            offsets=tuple(c for _, c in valid))
        try:
            result = await broker.groups.write(
                commit.group_id, lambda core, now_ms: core.commit_offsets(commit, now_ms))
        except CoordinatorError as exc:
            result = CommitResult((), exc.error)
        outcome = {(t, p): ErrorCode(code) for t, p, code in result.partition_errors}
        for key, c in valid:
            errors[key] = (ErrorCode(result.error) if result.error
                           else outcome.get((c.topic, c.partition), ErrorCode.none))
        await broker.groups.record_commits(commit.group_id, [
            (c.topic, c.partition, c.offset) for key, c in valid if errors[key] == ErrorCode.none])
    return commit_response(b, request, errors)


def fetched_partition(b: ResponseBuilder, index: int, committed: CommittedOffset | None,
                      error: ErrorCode) -> Any:
    return b.make(
        "OffsetFetchResponsePartitions" if b.has_class("OffsetFetchResponsePartitions")
        else "OffsetFetchResponsePartition",
        partition_index=index, error_code=error,
        committed_offset=NO_OFFSET if committed is None else committed.offset,
        committed_leader_epoch=NO_EPOCH if committed is None else committed.leader_epoch,
        metadata="" if committed is None else (committed.metadata or ""))


def fetched(b: ResponseBuilder, index: int, committed: CommittedOffset | None,
            error: ErrorCode, unstable: bool) -> Any:
    """A partition's entry; UNSTABLE_OFFSET_COMMIT (and no offset) while a transaction has
    an offset for it pending and the client asked for stable offsets (KIP-447)."""
    if unstable and error == ErrorCode.none:
        return fetched_partition(b, index, None, ErrorCode.unstable_offset_commit)
    return fetched_partition(b, index, committed, error)


def fetch_group(broker: Broker, ctx: RequestContext, b: ResponseBuilder, group_id: str,
                topics: Iterable[Any] | None, require_stable: bool = False,
                ) -> tuple[ErrorCode, list[Any]]:
    """(group error, topic entries) for one group of an OffsetFetch; a shard not served
    answers its error for the group (every partition of a version without a group error)."""
    try:
        core = broker.groups.core(group_id)
    except CoordinatorError as exc:
        error = ErrorCode(exc.error)
        return error, [] if topics is None else failed_topics(b, topics, error)
    return fetch_from(core, broker, ctx, b, group_id, topics, require_stable)


def failed_topics(b: ResponseBuilder, topics: Iterable[Any], error: ErrorCode) -> list[Any]:
    """The requested partitions, each with the group's error and no offset."""
    return [b.make(topic_class(b), name=getattr(topic, "name", None),
                   topic_id=getattr(topic, "topic_id", None), partitions=tuple(
                       fetched_partition(b, int(p), None, error)
                       for p in topic.partition_indexes))
            for topic in topics]


def topic_class(b: ResponseBuilder) -> str:
    return ("OffsetFetchResponseTopics" if b.has_class("OffsetFetchResponseTopics")
            else "OffsetFetchResponseTopic")


def fetch_from(core: GroupCoordinator, broker: Broker, ctx: RequestContext, b: ResponseBuilder,
               group_id: str, topics: Iterable[Any] | None, require_stable: bool,
               ) -> tuple[ErrorCode, list[Any]]:
    unstable = core.unstable_offsets(group_id) if require_stable else set()
    if topics is None:
        error, offsets = core.fetch_offsets(group_id, None)
        by_topic: dict[str, list[tuple[int, CommittedOffset]]] = {}
        for (topic, partition), committed in sorted(offsets.items()):
            if topic_allowed(ctx, Operation.DESCRIBE, topic):  # the others are not shown
                by_topic.setdefault(topic, []).append((partition, committed))
        entries = [
            b.make(topic_class(b), name=name, topic_id=topic_id(broker, name), partitions=tuple(
                fetched(b, p, c, ErrorCode.none, (name, p) in unstable) for p, c in parts))
            for name, parts in by_topic.items()]
        return ErrorCode(error), entries
    entries = []
    group_error = ErrorCode.none
    for topic in topics:
        name = commit_topic_name(broker, topic)
        if name and not topic_allowed(ctx, Operation.DESCRIBE, name):
            entries.extend(failed_topics(b, (topic,), ErrorCode.topic_authorization_failed))
            continue
        wanted = [(name, int(p)) for p in topic.partition_indexes] if name else []
        error, offsets = core.fetch_offsets(group_id, wanted)
        group_error = ErrorCode(error) or group_error
        parts = tuple(
            fetched(b, int(p), offsets.get((name, int(p))) if name else None,
                    ErrorCode.none if name else ErrorCode.unknown_topic_id,
                    (name, int(p)) in unstable)
            for p in topic.partition_indexes)
        entries.append(b.make(topic_class(b), name=getattr(topic, "name", None),
                              topic_id=getattr(topic, "topic_id", None), partitions=parts))
    return group_error, entries


def validate_offset_fetch(broker: Broker, group: Any) -> int | None:
    """OffsetFetch v9+ of a KIP-848 member; None if the group's shard is not served (the
    fetch then answers the shard's error)."""
    try:
        core = broker.groups.core(group.group_id)
    except CoordinatorError:
        return None
    return core.validate_offset_fetch(group.group_id, getattr(group, "member_id", None),
                                      int(getattr(group, "member_epoch", -1)))


def topic_id(broker: Broker, name: str) -> uuid.UUID | None:
    info = broker.engine.topics().get(name)
    return None if info is None else info.topic_id


@api(9, "OffsetFetch", (1, 10), "multiple groups (v8+), require_stable (v7+: "
     "UNSTABLE_OFFSET_COMMIT while a transaction's offset is pending), topic ids (v10)")
async def handle_offset_fetch(broker: Broker, ctx: RequestContext, request: Any,
                              b: ResponseBuilder) -> Any:
    require_stable = bool(getattr(request, "require_stable", False))
    if b.version >= 8:
        groups = []
        for group in request.groups:
            denied = fetch_refusal(broker, ctx, group)
            if denied:
                groups.append(b.make("OffsetFetchResponseGroup", group_id=group.group_id,
                                     topics=(), error_code=ErrorCode(denied)))
                continue
            error, topics = fetch_group(broker, ctx, b, group.group_id, group.topics,
                                        require_stable)
            groups.append(b.make("OffsetFetchResponseGroup", group_id=group.group_id,
                                 topics=tuple(topics), error_code=error))
        return b.make("OffsetFetchResponse", throttle_time=NO_THROTTLE, groups=tuple(groups))
    if not group_allowed(ctx, Operation.DESCRIBE, request.group_id):
        # Kafka: the group's error at the top from v2, on every partition asked before
        refused = ErrorCode.group_authorization_failed
        topics = failed_topics(b, request.topics, refused) if b.version < 2 else []
        return b.make("OffsetFetchResponse", throttle_time=NO_THROTTLE, topics=tuple(topics),
                      error_code=refused)
    error, topics = fetch_group(broker, ctx, b, request.group_id, request.topics,
                                require_stable)
    return b.make("OffsetFetchResponse", throttle_time=NO_THROTTLE, topics=tuple(topics),
                  error_code=error)


def fetch_refusal(broker: Broker, ctx: RequestContext, group: Any) -> int | None:
    """Why one group of an OffsetFetch v8+ gets no offsets: GROUP_AUTHORIZATION_FAILED
    without DESCRIBE on it, else `validate_offset_fetch`'s answer."""
    if not group_allowed(ctx, Operation.DESCRIBE, group.group_id):
        return ErrorCode.group_authorization_failed
    return validate_offset_fetch(broker, group)


@api(47, "OffsetDelete", (0, 0), "GROUP_SUBSCRIBED_TO_TOPIC while members subscribe to it")
async def handle_offset_delete(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.DELETE, request.group_id):
        return b.make("OffsetDeleteResponse", error_code=ErrorCode.group_authorization_failed,
                      throttle_time=NO_THROTTLE, topics=())
    readable = {t.name for t in request.topics if topic_allowed(ctx, Operation.READ, t.name)}
    wanted = [(t.name, int(p.partition_index)) for t in request.topics if t.name in readable
              for p in t.partitions]
    try:
        error, outcome = await broker.groups.write(
            request.group_id, lambda core, now_ms: core.delete_offsets(request.group_id,
                                                                      wanted, now_ms))
    except CoordinatorError as exc:
        error, outcome = exc.error, ()
    codes = {(t, p): ErrorCode(code) for t, p, code in outcome}
    if error == ErrorCode.none:
        broker.groups.lag_history.drop_partitions(request.group_id, [
            (t, p) for t, p, code in outcome if code == ErrorCode.none])
    codes.update(((t.name, int(p.partition_index)), ErrorCode.topic_authorization_failed)
                 for t in request.topics if t.name not in readable for p in t.partitions)
    topics = tuple(
        b.make("OffsetDeleteResponseTopic", name=t.name, partitions=tuple(
            b.make("OffsetDeleteResponsePartition", partition_index=p.partition_index,
                   error_code=codes.get((t.name, int(p.partition_index)), ErrorCode.none))
            for p in t.partitions))
        for t in request.topics)
    return b.make("OffsetDeleteResponse", error_code=ErrorCode(error),
                  throttle_time=NO_THROTTLE, topics=topics)
