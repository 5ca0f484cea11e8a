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
from strom.coordinator.group.group import ClassicGroup
from strom.coordinator.group.model import (
    CommitResult,
    CommittedOffset,
    TopicPartition,
    TxnCommitRequest,
)
from strom.coordinator.group.offsets import (
    commit_group,
    metadata_too_large,
    reject_all,
    validate_offset_commit,
)


def commit_txn_offsets(ctx: Context, req: TxnCommitRequest) -> CommitResult:
    """Validates and writes the offsets as pending ones of the producer's transaction; the
    caller has verified that the group's partition is in that transaction."""
    group = commit_group(ctx, req)
    if group is None:
        return reject_all(req.offsets, ErrorCode.illegal_generation)
    error = validate_offset_commit(group, req, transactional=True)  # no REBALANCE_IN_PROGRESS
    if error is not None:
        return reject_all(req.offsets, error)
    partition = ctx.partition_for(req.group_id)
    producer = (req.producer_id, req.producer_epoch)
    errors = []
    for commit in req.offsets:
        metadata = commit.metadata or ""
        if metadata_too_large(ctx, metadata):
            errors.append((commit.topic, commit.partition,
                           int(ErrorCode.offset_metadata_too_large)))
            continue
        tp = (commit.topic, commit.partition)
        pending = CommittedOffset(commit.offset, commit.leader_epoch, metadata, ctx.now_ms)
        ctx.offset_record(group.group_id, tp, pending, producer)
        ctx.txn.add(partition, req.producer_id, group.group_id, tp, pending)
        errors.append((commit.topic, commit.partition, int(ErrorCode.none)))
    return CommitResult(tuple(errors))


def complete_txn(ctx: Context, partition: int, producer_id: int, commit: bool,
                 applied: list[tuple[str, str, int, int]] | None = None) -> list[str]:
    """The producer's marker on `partition`: its pending offsets become committed (if newer
    than the committed ones) or go away. Returns the groups it touched; `applied` gets each
    (group, topic, partition, offset) committed. Writes nothing: the marker is the record."""
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
                if applied is not None:
                    applied.append((group_id, tp[0], tp[1], pending.offset.offset))
    return touched


def unstable_partitions(ctx: Context, group_id: str) -> set[TopicPartition]:
    """Partitions with an offset of an open transaction (OffsetFetch `require_stable`)."""
    return ctx.txn.pending_partitions(group_id)
