"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups and expiry
(Kafka's handleCommitOffsets, getOffsets, handleDeleteOffsets, handleDeleteGroups,
removeExpiredOffsets and cleanupGroupMetadata)."""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from strom.coordinator.group import rebalance
from strom.coordinator.group.context import Context, join_key, sync_key
from strom.coordinator.group.group import CONSUMER_PROTOCOL_TYPE, ClassicGroup, GroupState
from strom.coordinator.group.join import validate_current_member
from strom.coordinator.group.model import (
    UNKNOWN_MEMBER_ID,
    CommitRequest,
    CommitResult,
    CommittedOffset,
    OffsetCommit,
    TopicPartition,
    TxnCommitRequest,
)

_EMPTY = GroupState.EMPTY


def java_length(text: str) -> int:
    """Java's String.length(): UTF-16 code units, what Kafka compares to the metadata limit."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def validate_offset_commit(group: ClassicGroup, req: CommitRequest | TxnCommitRequest,
                           transactional: bool = False) -> int | None:
    """Kafka's ClassicGroup.validateOffsetCommit. A commit without member fields is a simple
    one: into an Empty group, or (transactional: v0-v2, or a producer outside group
    management) into any group."""
    if group.is_(GroupState.DEAD):
        return ErrorCode.coordinator_not_available
    if req.generation_id < 0 and group.is_(_EMPTY):
        return None  # admin client or a consumer without group management
    if (req.generation_id >= 0 or req.member_id != UNKNOWN_MEMBER_ID
            or req.group_instance_id is not None):
        error = validate_current_member(group, req.member_id, req.group_instance_id)
        if error is not None:
            return error
        return ErrorCode.illegal_generation if req.generation_id != group.generation_id else None
    return None if transactional or group.is_(_EMPTY) else ErrorCode.unknown_member_id


def reject_all(offsets: Sequence[OffsetCommit], error: int) -> CommitResult:
    """The same error for every partition of a commit."""
    return CommitResult(tuple((o.topic, o.partition, error) for o in offsets))


def commit_group(ctx: Context, req: CommitRequest | TxnCommitRequest) -> ClassicGroup | None:
    """The group a commit goes into, created for a simple commit; None for a commit from a
    generation this coordinator never had."""
    group = ctx.groups.get(req.group_id)
    if group is None and req.generation_id < 0:
        group = ctx.groups[req.group_id] = ClassicGroup(req.group_id, ctx.now_ms)
    return group


def metadata_too_large(ctx: Context, metadata: str) -> bool:
    return java_length(metadata) > ctx.config.offset_metadata_max_bytes


def commit_offsets(ctx: Context, req: CommitRequest) -> CommitResult:
    group = commit_group(ctx, req)
    if group is None:
        return reject_all(req.offsets, ErrorCode.illegal_generation)
    error = validate_offset_commit(group, req)
    if error is not None:
        return reject_all(req.offsets, error)
    if group.is_(GroupState.COMPLETING_REBALANCE):
        return reject_all(req.offsets, ErrorCode.rebalance_in_progress)
    if not group.is_(_EMPTY):  # Stable or PreparingRebalance: the commit is also a heartbeat
        rebalance.schedule_session(ctx, group, group.members[req.member_id])
    errors = []
    for commit in req.offsets:
        metadata = commit.metadata or ""
        if metadata_too_large(ctx, metadata):
            too_large = int(ErrorCode.offset_metadata_too_large)
            errors.append((commit.topic, commit.partition, too_large))
            continue
        tp = (commit.topic, commit.partition)
        committed = CommittedOffset(commit.offset, commit.leader_epoch, metadata, ctx.now_ms)
        group.offsets[tp] = committed
        ctx.offset_record(group.group_id, tp, committed)
        ctx.txn.note_committed(group.group_id, tp)
        errors.append((commit.topic, commit.partition, int(ErrorCode.none)))
    return CommitResult(tuple(errors))


def fetch_offsets(ctx: Context, group_id: str, partitions: Sequence[TopicPartition] | None,
                  ) -> tuple[int, dict[TopicPartition, CommittedOffset]]:
    group = ctx.groups.get(group_id)
    if group is None:
        return ErrorCode.none, {}
    if partitions is None:
        return ErrorCode.none, dict(group.offsets)
    return ErrorCode.none, {tp: group.offsets[tp] for tp in partitions if tp in group.offsets}


def delete_offsets(ctx: Context, group_id: str, partitions: Sequence[TopicPartition],
                   ) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    if not group_id:
        return ErrorCode.invalid_group_id, ()
    group = ctx.groups.get(group_id)
    if group is None or group.is_(GroupState.DEAD):
        return ErrorCode.group_id_not_found, ()
    if not group.is_(_EMPTY) and not group.is_consumer_group():
        return ErrorCode.non_empty_group, ()
    errors = []
    eligible = []
    for tp in partitions:
        if not group.is_(_EMPTY) and group.is_subscribed_to_topic(tp[0]):
            errors.append((tp[0], tp[1], int(ErrorCode.group_subscribed_to_topic)))
        else:
            eligible.append(tp)
            errors.append((tp[0], tp[1], int(ErrorCode.none)))
    if eligible:
        cleanup_group(ctx, group, _remove_offsets(ctx, group, eligible))
    return ErrorCode.none, tuple(errors)


def delete_groups(ctx: Context, group_ids: Sequence[str]) -> list[tuple[str, int]]:
    results = []
    for group_id in dict.fromkeys(group_ids):  # distinct, in request order
        group = ctx.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            results.append((group_id, int(ErrorCode.group_id_not_found)))
        elif not group.is_(_EMPTY):
            results.append((group_id, int(ErrorCode.non_empty_group)))
        else:
            # Committed and pending offsets alike get a tombstone (Kafka's deleteAllOffsets):
            # the tombstone drops the pending ones, so a later COMMIT marker brings none back.
            doomed = [*group.offsets, *sorted(ctx.txn.pending_partitions(group_id))]
            cleanup_group(ctx, group, _remove_offsets(ctx, group, doomed), force=True)
            results.append((group_id, int(ErrorCode.none)))
    return results


def expire_offsets(ctx: Context) -> None:
    """The periodic `offsets.retention.check.interval.ms` task over every group."""
    for group in list(ctx.groups.values()):
        pending = ctx.txn.pending_partitions(group.group_id)  # wait for their transactions
        expired = [tp for tp in _expired_offsets(group, ctx.now_ms,
                                                 ctx.config.offsets_retention_ms)
                   if tp not in pending]
        cleanup_group(ctx, group, _remove_offsets(ctx, group, expired))


def _remove_offsets(ctx: Context, group: ClassicGroup, partitions: Sequence[TopicPartition],
                    ) -> list[TopicPartition]:
    """Removes the offsets, committed or pending (Kafka writes a tombstone for either, and
    the tombstone drops the pending ones); returns those that need a tombstone."""
    pending = ctx.txn.pending_partitions(group.group_id)
    removed = [tp for tp in partitions
               if group.offsets.pop(tp, None) is not None or tp in pending]
    for tp in removed:
        ctx.txn.forget_committed(group.group_id, tp)
        ctx.txn.discard(group.group_id, tp)
    return removed


def cleanup_group(ctx: Context, group: ClassicGroup, removed: Sequence[TopicPartition],
                  force: bool = False) -> None:
    """Tombstones for removed offsets; an Empty group without offsets goes Dead and away
    (with a metadata tombstone unless it never had a generation: offsets-only groups)."""
    for tp in removed:
        ctx.offset_record(group.group_id, tp, None)
    if force or (group.is_(_EMPTY) and not group.offsets
                 and not ctx.txn.has_pending(group.group_id)):
        group.state = GroupState.DEAD
        del ctx.groups[group.group_id]
        ctx.timers.cancel(join_key(group.group_id))
        ctx.timers.cancel(sync_key(group.group_id))
        if group.generation_id > 0:
            ctx.group_tombstone(group.group_id)


def _expired_offsets(group: ClassicGroup, now_ms: int, retention_ms: int,
                     ) -> list[TopicPartition]:
    """KIP-211: offsets of an Empty group expire `retention_ms` after it became Empty; those
    of a Stable consumer group expire per commit for topics no member subscribes to any more;
    those of a group that never had members (simple consumers) expire per commit."""
    subscribed: frozenset[str] = frozenset()
    since_empty = None
    if group.protocol_type is not None and group.is_(_EMPTY):
        since_empty = group.state_timestamp_ms
    elif (group.protocol_type == CONSUMER_PROTOCOL_TYPE and group.subscribed_topics is not None
          and group.is_(GroupState.STABLE)):
        subscribed = group.subscribed_topics
    elif group.protocol_type is not None:
        return []
    expired = []
    for tp, committed in group.offsets.items():
        if tp[0] in subscribed:
            continue
        if committed.expire_timestamp_ms is not None:
            if now_ms >= committed.expire_timestamp_ms:
                expired.append(tp)
            continue
        base = committed.commit_timestamp_ms if since_empty is None else since_empty
        if now_ms - base >= retention_ms:
            expired.append(tp)
    return expired
