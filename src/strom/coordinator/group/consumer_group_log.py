"""The KIP-848 records of a consumer group (types 3-8 of `consumer_log_format`): the view a
compacted `__consumer_offsets` holds for a group, and the changes that bring it up to date, in
Kafka's order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from strom.coordinator.group import consumer_log_format as clf
from strom.coordinator.group.consumer_group import ConsumerGroup, ConsumerMember, to_ids
from strom.coordinator.group.reconcile import MemberState

STATE_BYTES: Final = {MemberState.STABLE: clf.STATE_STABLE,
                      MemberState.UNREVOKED_PARTITIONS: clf.STATE_UNREVOKED_PARTITIONS,
                      MemberState.UNRELEASED_PARTITIONS: clf.STATE_UNRELEASED_PARTITIONS}
PersistedView = dict[clf.ConsumerKey, clf.ConsumerValue]



def _member_metadata(member: ConsumerMember) -> clf.MemberMetadataValue:
    return clf.MemberMetadataValue(
        member.instance_id, member.rack_id, member.client_id, member.client_host,
        member.subscribed_topic_names, member.subscribed_regex, member.server_assignor,
        member.rebalance_timeout_ms)


def _current(member: ConsumerMember) -> clf.CurrentAssignmentValue:
    current = member.assignment
    return clf.CurrentAssignmentValue(current.member_epoch, current.previous_member_epoch,
                                      STATE_BYTES[current.state], to_ids(current.assigned),
                                      to_ids(current.pending_revocation))


def _group_records(group: ConsumerGroup) -> PersistedView:
    """The group-level records (types 4, 3, 6)."""
    gid = group.group_id
    return {
        clf.ConsumerKey(clf.PARTITION_METADATA, gid): clf.PartitionMetadataValue(tuple(
            clf.TopicMetadataValue(topic_id, name, count)
            for name, (topic_id, count) in sorted(group.subscription_metadata.items()))),
        clf.ConsumerKey(clf.GROUP_METADATA, gid): clf.GroupEpochValue(group.group_epoch),
        clf.ConsumerKey(clf.TARGET_ASSIGNMENT_METADATA, gid):
            clf.AssignmentEpochValue(group.assignment_epoch),
    }


def group_exists(group: ConsumerGroup) -> bool:
    return group.group_epoch != 0 or bool(group.members)  # else a join refused at once


def persisted_view(group: ConsumerGroup) -> PersistedView:
    """The records (types 3-8) that describe `group`, by key: what a compacted log holds."""
    gid = group.group_id
    view: PersistedView = {}
    if not group_exists(group):
        return view
    for member in group.members.values():
        view[clf.ConsumerKey(clf.MEMBER_METADATA, gid, member.member_id)] = \
            _member_metadata(member)
    for member_id, target in group.target.items():
        view[clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, gid, member_id)] = \
            clf.TargetMemberValue(to_ids(target))
    for member in group.members.values():
        view[clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, gid, member.member_id)] = \
            _current(member)
    view.update(_group_records(group))
    return view


def changed_records(group: ConsumerGroup, old: Mapping[clf.ConsumerKey, clf.ConsumerValue],
                     ) -> list[tuple[clf.ConsumerKey, clf.ConsumerValue | None]]:
    """`diff_views(old, persisted_view(group))`, looking only at the group-level records and
    the members marked dirty (all of them when the target assignment was recomputed)."""
    gid = group.group_id
    fresh: dict[clf.ConsumerKey, clf.ConsumerValue | None] = dict(_group_records(group))
    member_ids = set(group.dirty)
    if group.targets_dirty:
        member_ids |= group.target.keys()
    for member_id in member_ids:
        member = group.members.get(member_id)
        target = group.target.get(member_id)
        fresh[clf.ConsumerKey(clf.MEMBER_METADATA, gid, member_id)] = \
            None if member is None else _member_metadata(member)
        fresh[clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, gid, member_id)] = \
            None if target is None else clf.TargetMemberValue(to_ids(target))
        fresh[clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, gid, member_id)] = \
            None if member is None else _current(member)
    changes = [(key, value) for key, value in fresh.items()
               if old.get(key) != value and (value is not None or key in old)]
    changes.sort(key=_rank)
    return changes


# Kafka's order: a member's tombstones (current assignment, target, metadata) come before the
# records they change; then member metadata, subscription metadata, group epoch, target
# assignment, assignment epoch, current assignments; group-level tombstones (deletion) last.
_ORDER: Final = {
    (clf.CURRENT_MEMBER_ASSIGNMENT, True): 0, (clf.TARGET_ASSIGNMENT_MEMBER, True): 1,
    (clf.MEMBER_METADATA, True): 2,
    (clf.MEMBER_METADATA, False): 10, (clf.PARTITION_METADATA, False): 11,
    (clf.GROUP_METADATA, False): 12, (clf.TARGET_ASSIGNMENT_MEMBER, False): 13,
    (clf.TARGET_ASSIGNMENT_METADATA, False): 14, (clf.CURRENT_MEMBER_ASSIGNMENT, False): 15,
    (clf.TARGET_ASSIGNMENT_METADATA, True): 20, (clf.PARTITION_METADATA, True): 21,
    (clf.GROUP_METADATA, True): 22,
}


def _rank(change: tuple[clf.ConsumerKey, clf.ConsumerValue | None]) -> int:
    return _ORDER[(change[0].kind, change[1] is None)]


def diff_views(old: Mapping[clf.ConsumerKey, clf.ConsumerValue],
               new: Mapping[clf.ConsumerKey, clf.ConsumerValue],
               ) -> list[tuple[clf.ConsumerKey, clf.ConsumerValue | None]]:
    """The records that turn `old` into `new`: values for changed keys, None for removed."""
    changes: list[tuple[clf.ConsumerKey, clf.ConsumerValue | None]] = [
        (key, None) for key in old if key not in new]
    changes += [(key, value) for key, value in new.items() if old.get(key) != value]
    changes.sort(key=_rank)
    return changes
