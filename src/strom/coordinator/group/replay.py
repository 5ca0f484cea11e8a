"""Rebuilding groups and offsets from `__consumer_offsets`, one record at a time in log order
(Kafka's GroupMetadataManager.loadGroupsAndOffsets, incrementally).

KIP-848 records (key versions 3-8) are applied to the log's view of each consumer group (latest
value per key; a tombstone removes the key), and `load_consumer_group` turns a view into a
`ConsumerGroup` once the log has been read: members with their epochs, states, assignments and
target assignments, the group and assignment epochs and the subscribed topics' metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from strom.coordinator.group import consumer_log_format as clf
from strom.coordinator.group.consumer_group import ConsumerGroup, ConsumerMember, from_ids
from strom.coordinator.group.consumer_group_log import STATE_BYTES, PersistedView
from strom.coordinator.group.context import Context
from strom.coordinator.group.group import ClassicGroup, GroupState, Member
from strom.coordinator.group.log_format import (
    GroupMetadataKey,
    GroupMetadataValue,
    OffsetCommitKey,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
)
from strom.coordinator.group.model import CommittedOffset, GroupLogRecord
from strom.coordinator.group.reconcile import MemberAssignment
from strom.coordinator.group.topic_regex import RegexError, compile_topic_regex
from strom.coordinator.log_codec import LogFormatError

log = logging.getLogger(__name__)


def replay_record(ctx: Context, record: GroupLogRecord,
                  consumer_views: dict[str, PersistedView] | None = None) -> str | None:
    """Applies one record; returns the group it touched, or None if it was skipped.
    KIP-848 records go to `consumer_views` (skipped without it)."""
    if clf.key_version(record.key) in clf.CONSUMER_KEY_VERSIONS:
        try:
            if consumer_views is None:
                raise LogFormatError("no consumer group state to replay into")
            return _replay_consumer(consumer_views, record)
        except LogFormatError as exc:
            log.warning("skipping unreadable __consumer_offsets-%d record: %s",
                        record.partition, exc)
            return None
    try:
        key = decode_key(record.key)
        if isinstance(key, OffsetCommitKey) and record.producer_id >= 0:
            _replay_txn_offset(ctx, key, record)
        elif isinstance(key, OffsetCommitKey):
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
    # Kafka loads a group only if it has metadata or offsets (committed or pending).
    if (not group.offsets and group.generation_id == 0 and group.protocol_type is None
            and not ctx.txn.has_pending(group.group_id)):
        del ctx.groups[group.group_id]


def _replay_offset(ctx: Context, key: OffsetCommitKey, raw: bytes | None) -> None:
    tp = (key.topic, key.partition)
    if raw is None:
        ctx.txn.forget_committed(key.group_id, tp)
        ctx.txn.discard(key.group_id, tp)
        group = ctx.groups.get(key.group_id)
        if group is not None and group.offsets.pop(tp, None) is not None:
            _drop_if_unused(ctx, group)
        return
    _get_or_create(ctx, key.group_id).offsets[tp] = _committed(raw)
    ctx.txn.note_committed(key.group_id, tp)


def _committed(raw: bytes) -> CommittedOffset:
    value = decode_offset_commit_value(raw)
    expire = None if value.expire_timestamp_ms == -1 else value.expire_timestamp_ms
    return CommittedOffset(value.offset, value.leader_epoch, value.metadata,
                           value.commit_timestamp_ms, expire)


def _replay_txn_offset(ctx: Context, key: OffsetCommitKey, record: GroupLogRecord) -> None:
    """An offset of a transaction: pending until the producer's marker on this partition."""
    if record.value is None:  # the coordinator writes none; nothing to wait for
        return
    committed = _committed(record.value)
    _get_or_create(ctx, key.group_id)
    ctx.txn.add(record.partition, record.producer_id, key.group_id,
                (key.topic, key.partition), committed)


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


# -- KIP-848 consumer groups ---------------------------------------------------------------

_STATES = {byte: state for state, byte in STATE_BYTES.items()}


def _replay_consumer(views: dict[str, PersistedView], record: GroupLogRecord) -> str:
    key = clf.decode_key(record.key)
    view = views.setdefault(key.group_id, {})
    if record.value is None:
        view.pop(key, None)
        if not view:
            del views[key.group_id]
        return key.group_id
    value = clf.decode_value(key.kind, record.value)
    if isinstance(value, clf.CurrentAssignmentValue) and value.state not in _STATES:
        raise LogFormatError(f"member {key.member_id}: unknown member state {value.state}")
    if isinstance(value, clf.MemberMetadataValue) and value.subscribed_topic_regex is not None:
        try:
            compile_topic_regex(value.subscribed_topic_regex)
        except RegexError as exc:
            raise LogFormatError(f"member {key.member_id}: bad regex ({exc})") from None
    view[key] = value
    return key.group_id


def load_consumer_group(group_id: str, view: Mapping[clf.ConsumerKey, clf.ConsumerValue],
                        ) -> ConsumerGroup | None:
    """The group the log's records describe; None if they hold no group epoch (left over
    records of a deleted group)."""
    group = ConsumerGroup(group_id)
    epoch = None
    currents: dict[str, clf.CurrentAssignmentValue] = {}
    targets: dict[str, clf.TargetMemberValue] = {}
    for key, value in view.items():
        if isinstance(value, clf.GroupEpochValue):
            epoch = value.epoch
        elif isinstance(value, clf.AssignmentEpochValue):
            group.assignment_epoch = value.epoch
        elif isinstance(value, clf.PartitionMetadataValue):
            group.subscription_metadata = {t.name: (t.topic_id, t.partitions)
                                           for t in value.topics}
            group.topic_names = {t.topic_id: t.name for t in value.topics}
        else:
            assert key.member_id is not None, "member record without a member id"
            if isinstance(value, clf.MemberMetadataValue):
                group.members[key.member_id] = _member(key.member_id, value)
            elif isinstance(value, clf.TargetMemberValue):
                targets[key.member_id] = value
            else:
                currents[key.member_id] = value
    if epoch is None:
        log.warning("consumer group %s: records without a group epoch; not loaded", group_id)
        return None
    group.group_epoch = epoch
    group.target = {member_id: from_ids(target.partitions)
                    for member_id, target in targets.items() if member_id in group.members}
    for member in group.members.values():
        _restore_member(group, member, currents.get(member.member_id))
    return group


def _restore_member(group: ConsumerGroup, member: ConsumerMember,
                    current: clf.CurrentAssignmentValue | None) -> None:
    if member.instance_id is not None:
        group.static_members[member.instance_id] = member.member_id
    if current is None:
        return
    restored = MemberAssignment(
        current.member_epoch, current.previous_member_epoch, _STATES[current.state],
        from_ids(current.assigned), from_ids(current.pending_revocation))
    if any((t, p) in group.partition_owners for t, ps in restored.owned().items() for p in ps):
        log.warning("consumer group %s: member %s owns partitions another member owns; it "
                    "must rejoin", group.group_id, member.member_id)
        return
    group.set_assignment(member, restored)


def _member(member_id: str, value: clf.MemberMetadataValue) -> ConsumerMember:
    member = ConsumerMember(member_id)
    member.instance_id = value.instance_id
    member.rack_id = value.rack_id
    member.client_id = value.client_id
    member.client_host = value.client_host
    member.subscribed_topic_names = value.subscribed_topic_names
    member.subscribed_regex = value.subscribed_topic_regex
    member.server_assignor = value.server_assignor
    member.rebalance_timeout_ms = value.rebalance_timeout_ms
    return member
