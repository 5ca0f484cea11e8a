"""Rebuilding groups and offsets from `__consumer_offsets`, one record at a time in log order
(Kafka's GroupMetadataManager.loadGroupsAndOffsets, incrementally)."""

from __future__ import annotations

import logging

from strom.coordinator.group.context import Context
from strom.coordinator.group.group import ClassicGroup, GroupState, Member
from strom.coordinator.group.log_format import (
    GroupMetadataKey,
    GroupMetadataValue,
    LogFormatError,
    OffsetCommitKey,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
)
from strom.coordinator.group.model import CommittedOffset, GroupLogRecord

log = logging.getLogger(__name__)


def replay_record(ctx: Context, record: GroupLogRecord) -> str | None:
    """Applies one record; returns the group it touched, or None if it was skipped."""
    try:
        key = decode_key(record.key)
        if isinstance(key, OffsetCommitKey):
            _replay_offset(ctx, key, record.value)
        else:
            _replay_group(ctx, key, record.value)
    except LogFormatError as exc:
        log.warning("skipping unreadable __consumer_offsets-%d record: %s", record.partition, exc)
        return None
    return key.group_id


def _get_or_create(ctx: Context, group_id: str) -> ClassicGroup:
    group = ctx.groups.get(group_id)
    if group is None:
        group = ctx.groups[group_id] = ClassicGroup(group_id, None)
    return group


def _drop_if_unused(ctx: Context, group: ClassicGroup) -> None:
    # Kafka loads a group only if it has metadata or offsets.
    if not group.offsets and group.generation_id == 0 and group.protocol_type is None:
        del ctx.groups[group.group_id]


def _replay_offset(ctx: Context, key: OffsetCommitKey, raw: bytes | None) -> None:
    tp = (key.topic, key.partition)
    if raw is None:
        group = ctx.groups.get(key.group_id)
        if group is not None and group.offsets.pop(tp, None) is not None:
            _drop_if_unused(ctx, group)
        return
    value = decode_offset_commit_value(raw)
    expire = None if value.expire_timestamp_ms == -1 else value.expire_timestamp_ms
    _get_or_create(ctx, key.group_id).offsets[tp] = CommittedOffset(
        value.offset, value.leader_epoch, value.metadata, value.commit_timestamp_ms, expire)


def _replay_group(ctx: Context, key: GroupMetadataKey, raw: bytes | None) -> None:
    old = ctx.groups.get(key.group_id)
    if raw is None:
        if old is not None:
            fresh = ctx.groups[key.group_id] = ClassicGroup(key.group_id, None)
            fresh.offsets = old.offsets
            _drop_if_unused(ctx, fresh)
        return
    value = decode_group_metadata_value(raw)
    group = ctx.groups[key.group_id] = _load_group(key.group_id, value)
    if old is not None:
        group.offsets = old.offsets


def _load_group(group_id: str, value: GroupMetadataValue) -> ClassicGroup:
    if value.members and value.protocol_name is None:
        raise LogFormatError(f"group {group_id}: members without a protocol")
    group = ClassicGroup(group_id, None)
    group.generation_id = value.generation_id
    group.protocol_type = value.protocol_type or None
    group.protocol_name = value.protocol_name
    group.state_timestamp_ms = (None if value.current_state_timestamp_ms == -1
                                else value.current_state_timestamp_ms)
    for stored in value.members:
        if stored.member_id in group.members:
            raise LogFormatError(f"group {group_id}: member {stored.member_id} twice")
        if stored.group_instance_id in group.static_members:
            raise LogFormatError(f"group {group_id}: instance {stored.group_instance_id} twice")
        assert value.protocol_name is not None
        member = Member(stored.member_id, stored.group_instance_id, stored.client_id,
                        stored.client_host, stored.rebalance_timeout_ms,
                        stored.session_timeout_ms, value.protocol_type,
                        ((value.protocol_name, stored.subscription),))
        member.assignment = stored.assignment
        group.add(member)
    if value.leader_id is not None and value.leader_id in group.members:
        group.leader_id = value.leader_id
    group.state = GroupState.STABLE if group.members else GroupState.EMPTY
    group.subscribed_topics = group.compute_subscribed_topics()
    return group
