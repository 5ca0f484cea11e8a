"""Committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Final

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
    valid: list[tuple[tuple[int, int], OffsetCommit]] = []
    for ti, topic in enumerate(request.topics):
        name = commit_topic_name(broker, topic)
        for p in topic.partitions:
            key = (ti, int(p.partition_index))
            error = partition_error(broker, name, int(p.partition_index))
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


def fetch_group(broker: Broker, b: ResponseBuilder, group_id: str,
                topics: Iterable[Any] | None, require_stable: bool = False,
                ) -> tuple[ErrorCode, list[Any]]:
    """(group error, topic entries) for one group of an OffsetFetch; a shard not served
    answers its error for the group (every partition of a version without a group error)."""
    try:
        core = broker.groups.core(group_id)
    except CoordinatorError as exc:
        error = ErrorCode(exc.error)
        return error, [] if topics is None else failed_topics(b, topics, error)
    return fetch_from(core, broker, b, group_id, topics, require_stable)


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


def fetch_from(core: GroupCoordinator, broker: Broker, b: ResponseBuilder, group_id: str,
               topics: Iterable[Any] | None, require_stable: bool,
               ) -> tuple[ErrorCode, list[Any]]:
    unstable = core.unstable_offsets(group_id) if require_stable else set()
    if topics is None:
        error, offsets = core.fetch_offsets(group_id, None)
        by_topic: dict[str, list[tuple[int, CommittedOffset]]] = {}
        for (topic, partition), committed in sorted(offsets.items()):
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
            denied = validate_offset_fetch(broker, group)
            if denied:
                groups.append(b.make("OffsetFetchResponseGroup", group_id=group.group_id,
                                     topics=(), error_code=ErrorCode(denied)))
                continue
            error, topics = fetch_group(broker, b, group.group_id, group.topics,
                                        require_stable)
            groups.append(b.make("OffsetFetchResponseGroup", group_id=group.group_id,
                                 topics=tuple(topics), error_code=error))
        return b.make("OffsetFetchResponse", throttle_time=NO_THROTTLE, groups=tuple(groups))
    error, topics = fetch_group(broker, b, request.group_id, request.topics, require_stable)
    return b.make("OffsetFetchResponse", throttle_time=NO_THROTTLE, topics=tuple(topics),
                  error_code=error)


@api(47, "OffsetDelete", (0, 0), "GROUP_SUBSCRIBED_TO_TOPIC while members subscribe to it")
async def handle_offset_delete(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    wanted = [(t.name, int(p.partition_index)) for t in request.topics for p in t.partitions]
    try:
        error, outcome = await broker.groups.write(
            request.group_id, lambda core, now_ms: core.delete_offsets(request.group_id,
                                                                      wanted, now_ms))
    except CoordinatorError as exc:
        error, outcome = exc.error, ()
    codes = {(t, p): ErrorCode(code) for t, p, code in outcome}
    topics = tuple(
        b.make("OffsetDeleteResponseTopic", name=t.name, partitions=tuple(
            b.make("OffsetDeleteResponsePartition", partition_index=p.partition_index,
                   error_code=codes.get((t.name, int(p.partition_index)), ErrorCode.none))
            for p in t.partitions))
        for t in request.topics)
    return b.make("OffsetDeleteResponse", error_code=ErrorCode(error),
                  throttle_time=NO_THROTTLE, topics=topics)
