"""Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit and the end of a
transaction (Kafka's GroupCoordinator.handleTxnCommitOffsets, GroupMetadata.prepareTxnOffsetCommit
and completePendingTxnOffsetCommit; the new coordinator's validateTransactionalOffsetCommit).

Valid offsets are written to `__consumer_offsets` in the producer's transactional batch but stay
pending, invisible to OffsetFetch (which answers UNSTABLE_OFFSET_COMMIT to `require_stable`),
until the transaction's marker: COMMIT makes them the committed offsets, ABORT drops them.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from strom.coordinator.group.context import Context
from strom.coordinator.group.group import ClassicGroup, GroupState
from strom.coordinator.group.join import validate_current_member
from strom.coordinator.group.model import (
    UNKNOWN_MEMBER_ID,
    CommitResult,
    CommittedOffset,
    TopicPartition,
    TxnCommitRequest,
)
from strom.coordinator.group.offsets import java_length


def _all(req: TxnCommitRequest, error: int) -> CommitResult:
    return CommitResult(tuple((o.topic, o.partition, error) for o in req.offsets))


def _validate(group: ClassicGroup, req: TxnCommitRequest) -> int | None:
    """ClassicGroup.validateOffsetCommit with isTransactional: no member fields (v0-v2, or a
    producer outside group management) commit into any group; no REBALANCE_IN_PROGRESS."""
    if group.is_(GroupState.DEAD):
        return ErrorCode.coordinator_not_available
    if req.generation_id < 0 and group.is_(GroupState.EMPTY):
        return None
    if (req.generation_id >= 0 or req.member_id != UNKNOWN_MEMBER_ID
            or req.group_instance_id is not None):
        error = validate_current_member(group, req.member_id, req.group_instance_id)
        if error is not None:
            return error
        return ErrorCode.illegal_generation if req.generation_id != group.generation_id else None
    return None


def commit_txn_offsets(ctx: Context, req: TxnCommitRequest) -> CommitResult:
    """Validates and writes the offsets as pending ones of the producer's transaction; the
    caller has verified that the group's partition is in that transaction."""
    group = ctx.groups.get(req.group_id)
    if group is None:
        if req.generation_id >= 0:
            return _all(req, ErrorCode.illegal_generation)
        group = ctx.groups[req.group_id] = ClassicGroup(req.group_id, ctx.now_ms)
    error = _validate(group, req)
    if error is not None:
        return _all(req, error)
    partition = ctx.partition_for(req.group_id)
    producer = (req.producer_id, req.producer_epoch)
    errors = []
    for commit in req.offsets:
        metadata = commit.metadata or ""
        if java_length(metadata) > ctx.config.offset_metadata_max_bytes:
            errors.append((commit.topic, commit.partition,
                           int(ErrorCode.offset_metadata_too_large)))
            continue
        tp = (commit.topic, commit.partition)
        pending = CommittedOffset(commit.offset, commit.leader_epoch, metadata, ctx.now_ms)
        ctx.offset_record(group.group_id, tp, pending, producer)
        ctx.txn.add(partition, req.producer_id, group.group_id, tp, pending)
        errors.append((commit.topic, commit.partition, int(ErrorCode.none)))
    return CommitResult(tuple(errors))


def complete_txn(ctx: Context, partition: int, producer_id: int, commit: bool) -> list[str]:
    """The producer's marker on `partition`: its pending offsets become committed (if newer
    than the committed ones) or go away. Returns the groups it touched. Writes nothing: the
    marker is the record."""
    touched = []
    for group_id, offsets in ctx.txn.take(partition, producer_id).items():
        touched.append(group_id)
        if not commit:
            continue
        group = ctx.groups.get(group_id)
        if group is None:  # pending offsets keep their group; only a replayed log gets here
            group = ctx.groups[group_id] = ClassicGroup(group_id, None)
        for tp, pending in offsets.items():
            if ctx.txn.replaces(group_id, tp, pending, tp in group.offsets):
                group.offsets[tp] = pending.offset
    return touched


def unstable_partitions(ctx: Context, group_id: str) -> set[TopicPartition]:
    """Partitions with an offset of an open transaction (OffsetFetch `require_stable`)."""
    return ctx.txn.pending_partitions(group_id)
