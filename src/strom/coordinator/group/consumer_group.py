"""KIP-848 consumer groups (`group.protocol=consumer`): state and ConsumerGroupHeartbeat.

Kafka's GroupMetadataManager.consumerGroupHeartbeat without I/O. The group epoch moves when
members or subscriptions (or the partition counts of subscribed topics) change; the target
assignment is recomputed by the group's server-side assignor when the group epoch passes the
target's epoch; each member then walks to its target through `reconcile` (revoke first, then
receive partitions nobody else owns). `partition_owners` is what the coordinator has told the
members they may hold: it never names two members for one partition.

Persistence: with an `emit` sink, `ConsumerGroups` writes Kafka's KIP-848 records (types 3-8 of
`consumer_log_format`: group epoch, subscribed topic metadata, member metadata, target
assignment epoch and members, current member assignments) whenever they change, and tombstones
when a member leaves or is fenced and when the group is deleted. It diffs the group's persisted
view (`persisted_view`) against what it last wrote, so every mutation path is covered. Replay
(`replay.py`) rebuilds the groups with their epochs and assignments, so after a restart members
keep heartbeating with their epochs and keep their partitions; their sessions start at load.
Committed offsets are persisted as for classic groups.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from kio.schema.errors import ErrorCode

from strom.coordinator.group import consumer_log_format as clf
from strom.coordinator.group.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, Assignment
from strom.coordinator.group.model import (
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
    ConsumerMemberDescription,
    GroupConfig,
    TopicMetadata,
    TopicPartitionIds,
)
from strom.coordinator.group.reconcile import (
    NO_OWNER_EPOCH,
    MemberAssignment,
    MemberState,
    reconcile,
)
from strom.coordinator.group.timers import TimerQueue

TopicId = uuid.UUID
Emit = Callable[[str, bytes, bytes | None], None]
JOIN_EPOCH: Final = 0
LEAVE_EPOCH: Final = -1
STATIC_LEAVE_EPOCH: Final = -2
REGEX_MAX_CHARS: Final = 1000


class ConsumerGroupState(enum.StrEnum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"


class HeartbeatError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConsumerMember:
    __slots__ = ("assignment", "client_host", "client_id", "instance_id", "member_id",
                 "rack_id", "rebalance_timeout_ms", "server_assignor", "subscribed_regex",
                 "subscribed_topic_names")

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.rebalance_timeout_ms = 0
        self.subscribed_topic_names: tuple[str, ...] = ()
        self.subscribed_regex: str | None = None
        self.server_assignor: str | None = None
        self.assignment = MemberAssignment(JOIN_EPOCH, NO_OWNER_EPOCH)

    @property
    def member_epoch(self) -> int:
        return self.assignment.member_epoch

    def subscribed(self, topics: Mapping[str, TopicMetadata]) -> set[str]:
        names = {n for n in self.subscribed_topic_names if n in topics}
        if self.subscribed_regex is not None:
            pattern = re.compile(self.subscribed_regex)
            names |= {n for n, t in topics.items() if not t.internal and pattern.fullmatch(n)}
        return names


class ConsumerGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        self.partition_owners: dict[tuple[TopicId, int], tuple[str, int]] = {}
        # name -> (topic id, partitions) of the subscribed topics as of the group epoch
        self.subscription_metadata: dict[str, tuple[TopicId, int]] = {}
        self.topic_names: dict[TopicId, str] = {}
        # what changed since the records were last written (see ConsumerGroups.sync)
        self.dirty: set[str] = set()  # member ids
        self.targets_dirty = False

    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch != self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(m.member_epoch != self.assignment_epoch
               or m.assignment.state is not MemberState.STABLE for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def assignor_name(self) -> str:
        """Kafka's preferred server assignor: the one most members name, else the default."""
        votes = Counter(m.server_assignor for m in self.members.values() if m.server_assignor)
        if not votes:
            return DEFAULT_ASSIGNOR
        return min(votes, key=lambda name: (-votes[name], name))

    def set_assignment(self, member: ConsumerMember, new: MemberAssignment) -> None:
        """Replaces what `member` was told, keeping `partition_owners` exact."""
        for topic, partitions in member.assignment.owned().items():
            for p in partitions:
                owner = self.partition_owners.pop((topic, p), None)
                assert owner is not None and owner[0] == member.member_id, "owner map drifted"
        for topic, partitions in new.owned().items():
            for p in partitions:
                other = self.partition_owners.get((topic, p))
                assert other is None, f"{topic}-{p} given to {member.member_id} owned by {other}"
                self.partition_owners[(topic, p)] = (member.member_id, new.member_epoch)
        member.assignment = new
        self.dirty.add(member.member_id)

    def owner_epoch(self, member_id: str) -> Callable[[TopicId, int], int]:
        def epoch(topic: TopicId, partition: int) -> int:
            owner = self.partition_owners.get((topic, partition))
            return NO_OWNER_EPOCH if owner is None or owner[0] == member_id else owner[1]
        return epoch

    def remove(self, member_id: str) -> None:
        member = self.members[member_id]
        self.set_assignment(member, MemberAssignment(LEAVE_EPOCH, member.member_epoch))
        del self.members[member_id]
        self.target.pop(member_id, None)
        self.dirty.add(member_id)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == \
                member_id:
            del self.static_members[member.instance_id]

    def refresh_metadata(self, topics: Mapping[str, TopicMetadata]) -> bool:
        """Recomputes the subscribed topics' metadata; True if it changed."""
        names: set[str] = set()
        for member in self.members.values():
            names |= member.subscribed(topics)
        metadata = {n: (topics[n].topic_id, topics[n].partitions) for n in sorted(names)}
        for name, (topic_id, _) in metadata.items():
            self.topic_names[topic_id] = name
        changed = metadata != self.subscription_metadata
        self.subscription_metadata = metadata
        return changed

    def compute_target(self, topics: Mapping[str, TopicMetadata]) -> None:
        subscriptions = {
            m.member_id: frozenset(self.subscription_metadata[n][0] for n in m.subscribed(topics)
                                   if n in self.subscription_metadata)
            for m in self.members.values()}
        counts = {tid: count for tid, count in self.subscription_metadata.values()}
        assignor = ASSIGNORS[self.assignor_name()]
        self.target = assignor(subscriptions, counts, self.target)
        self.assignment_epoch = self.group_epoch
        self.targets_dirty = True

    def describe_member(self, member: ConsumerMember) -> ConsumerMemberDescription:
        return ConsumerMemberDescription(
            member.member_id, member.instance_id, member.rack_id, member.member_epoch,
            member.client_id, member.client_host, member.subscribed_topic_names,
            member.subscribed_regex, to_ids(member.assignment.assigned),
            to_ids(self.target.get(member.member_id, {})))


def to_ids(assignment: Mapping[TopicId, frozenset[int]]) -> TopicPartitionIds:
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(assignment.items(), key=_by_str)
                 if ps)


def _by_str(item: tuple[TopicId, frozenset[int]]) -> str:
    return str(item[0])


STATE_BYTES: Final = {MemberState.STABLE: clf.STATE_STABLE,
                      MemberState.UNREVOKED_PARTITIONS: clf.STATE_UNREVOKED_PARTITIONS,
                      MemberState.UNRELEASED_PARTITIONS: clf.STATE_UNRELEASED_PARTITIONS}
PersistedView = dict[clf.ConsumerKey, clf.ConsumerValue]


def _ids(assignment: Mapping[TopicId, frozenset[int]]) -> clf.TopicPartitions:
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(assignment.items(), key=_by_str)
                 if ps)


def _member_metadata(member: ConsumerMember) -> clf.MemberMetadataValue:
    return clf.MemberMetadataValue(
        member.instance_id, member.rack_id, member.client_id, member.client_host,
        member.subscribed_topic_names, member.subscribed_regex, member.server_assignor,
        member.rebalance_timeout_ms)


def _current(member: ConsumerMember) -> clf.CurrentAssignmentValue:
    current = member.assignment
    return clf.CurrentAssignmentValue(current.member_epoch, current.previous_member_epoch,
                                      STATE_BYTES[current.state], _ids(current.assigned),
                                      _ids(current.pending_revocation))


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


def _exists(group: ConsumerGroup) -> bool:
    return group.group_epoch != 0 or bool(group.members)  # else a join refused at once


def persisted_view(group: ConsumerGroup) -> PersistedView:
    """The records (types 3-8) that describe `group`, by key: what a compacted log holds."""
    gid = group.group_id
    view: PersistedView = {}
    if not _exists(group):
        return view
    for member in group.members.values():
        view[clf.ConsumerKey(clf.MEMBER_METADATA, gid, member.member_id)] = \
            _member_metadata(member)
    for member_id, target in group.target.items():
        view[clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, gid, member_id)] = \
            clf.TargetMemberValue(_ids(target))
    for member in group.members.values():
        view[clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, gid, member.member_id)] = \
            _current(member)
    view.update(_group_records(group))
    return view


def _changed_records(group: ConsumerGroup, old: Mapping[clf.ConsumerKey, clf.ConsumerValue],
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
            None if target is None else clf.TargetMemberValue(_ids(target))
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


def from_ids(ids: Iterable[tuple[TopicId, Iterable[int]]]) -> dict[TopicId, frozenset[int]]:
    out: dict[TopicId, frozenset[int]] = {}
    for topic, partitions in ids:
        out[topic] = out.get(topic, frozenset()) | frozenset(partitions)
    return {t: ps for t, ps in out.items() if ps}


def _invalid(message: str) -> HeartbeatError:
    return HeartbeatError(ErrorCode.invalid_request, message)


def validate(req: ConsumerHeartbeatRequest) -> None:
    """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid."""
    if not req.group_id:
        raise _invalid("GroupId can't be empty.")
    if not req.member_id:
        raise _invalid("MemberId can't be empty.")
    if req.instance_id is not None and not req.instance_id:
        raise _invalid("InstanceId can't be empty.")
    if req.rack_id is not None and not req.rack_id:
        raise _invalid("RackId can't be empty.")
    _validate_epoch_fields(req)
    if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
        raise HeartbeatError(ErrorCode.unsupported_assignor,
                             f"ServerAssignor {req.server_assignor} is not supported. "
                             f"Supported assignors: {', '.join(sorted(ASSIGNORS))}.")
    if req.subscribed_topic_regex:  # "" clears the regex subscription (librdkafka sends it)
        _validate_regex(req.subscribed_topic_regex)


def _validate_epoch_fields(req: ConsumerHeartbeatRequest) -> None:
    if req.member_epoch == JOIN_EPOCH:
        if req.rebalance_timeout_ms == -1:
            raise _invalid("RebalanceTimeoutMs must be provided in first request.")
        if req.owned is None or any(ps for _, ps in req.owned):
            raise _invalid("TopicPartitions must be empty when (re-)joining.")
        if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
            raise _invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first "
                           "request.")
    elif req.member_epoch == STATIC_LEAVE_EPOCH:
        if req.instance_id is None:
            raise _invalid("InstanceId can't be null.")
    elif req.member_epoch < STATIC_LEAVE_EPOCH:
        raise _invalid(f"MemberEpoch {req.member_epoch} is invalid.")


def _validate_regex(regex: str) -> None:
    try:
        if len(regex) > REGEX_MAX_CHARS:
            raise re.error("too long")
        re.compile(regex)
    except re.error as exc:
        raise HeartbeatError(ErrorCode.invalid_regular_expression,
                             f"SubscribedTopicRegex `{regex}` is not a valid regular "
                             f"expression: {exc}.") from None


def check_epoch(member: ConsumerMember, req: ConsumerHeartbeatRequest) -> None:
    """Kafka's throwIfMemberEpochIsInvalid: a member one epoch behind may catch up only if it
    owns nothing it was not given."""
    epoch = member.member_epoch
    fenced = HeartbeatError(ErrorCode.fenced_member_epoch,
                            f"The consumer group member has a greater member epoch ({epoch}) "
                            f"than the one known by the group coordinator "
                            f"({req.member_epoch}).")
    if req.member_epoch > epoch:
        raise HeartbeatError(ErrorCode.fenced_member_epoch,
                             f"The consumer group member has a smaller member epoch ({epoch})"
                             f" than the one known by the client ({req.member_epoch}).")
    if req.member_epoch < epoch:
        if req.member_epoch != member.assignment.previous_member_epoch or req.owned is None:
            raise fenced
        assigned = member.assignment.assigned
        if any(not frozenset(ps) <= assigned.get(t, frozenset()) for t, ps in req.owned):
            raise fenced


def response(member: ConsumerMember, config: GroupConfig,
             assignment: TopicPartitionIds | None) -> ConsumerHeartbeatResult:
    return ConsumerHeartbeatResult(ErrorCode.none, None, member.member_id, member.member_epoch,
                                   config.consumer_heartbeat_interval_ms, assignment)


class ConsumerGroups:
    """Every consumer group and their deadlines: sessions and revocation (rebalance) timeouts."""

    def __init__(self, config: GroupConfig, emit: Emit | None = None) -> None:
        self.config = config
        self.groups: dict[str, ConsumerGroup] = {}
        # ("session" | "revocation", group id, member id) -> member epoch when scheduled
        self.timers: TimerQueue[int] = TimerQueue()
        # where records go (group id, key, value or None); None: nothing is persisted
        self.emit = emit
        # what the log holds for each group (written by `sync`, rebuilt by replay)
        self.persisted: dict[str, PersistedView] = {}

    def heartbeat(self, req: ConsumerHeartbeatRequest, now_ms: int) -> ConsumerHeartbeatResult:
        try:
            validate(req)
            if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._leave(req)
            return self._heartbeat(req, now_ms)
        except HeartbeatError as exc:
            return ConsumerHeartbeatResult(exc.code, exc.message, None, 0, 0)
        finally:
            self.sync(req.group_id)

    def sync(self, group_id: str) -> None:
        """Emits the records that bring the log's view of the group up to date."""
        group = self.groups.get(group_id)
        if self.emit is None:
            if group is not None:
                group.dirty.clear()
                group.targets_dirty = False
            return
        old = self.persisted.get(group_id, {})
        if group is None or not _exists(group):
            changes = diff_views(old, {})
        else:
            changes = _changed_records(group, old)
            group.dirty.clear()
            group.targets_dirty = False
        self._write(group_id, old, changes)

    def _write(self, group_id: str, view: PersistedView,
               changes: list[tuple[clf.ConsumerKey, clf.ConsumerValue | None]]) -> None:
        assert self.emit is not None
        for key, value in changes:
            if value is None:
                view.pop(key, None)
                self.emit(group_id, clf.encode_key(key), None)
            else:
                view[key] = value
                self.emit(group_id, clf.encode_key(key), clf.encode_value(value))
        if view:
            self.persisted[group_id] = view
        else:
            self.persisted.pop(group_id, None)

    def drop(self, group_id: str) -> None:
        """Deletes the group (it must have no members), tombstoning its records."""
        group = self.groups.pop(group_id)
        assert not group.members, "dropping a consumer group with members"
        self.sync(group_id)

    def restore(self, group: ConsumerGroup, now_ms: int) -> None:
        """Installs a group rebuilt by replay; its members' sessions start now."""
        self.groups[group.group_id] = group
        for member in group.members.values():
            self._schedule(group, member, now_ms)
        group.dirty.clear()
        group.targets_dirty = False
        if self.emit is not None:  # records the load dropped (orphans) are tombstoned
            old = self.persisted.get(group.group_id, {})
            self._write(group.group_id, old, diff_views(old, persisted_view(group)))

    def _member(self, group: ConsumerGroup, req: ConsumerHeartbeatRequest) -> ConsumerMember:
        member = group.members.get(req.member_id)
        if req.member_epoch != JOIN_EPOCH:
            if member is None:
                raise HeartbeatError(ErrorCode.unknown_member_id,
                                     f"Member {req.member_id} is not a member of group "
                                     f"{group.group_id}.")
            check_epoch(member, req)
            return member
        if member is not None:  # rejoining: it owns nothing now, so it starts over
            group.set_assignment(member, MemberAssignment(JOIN_EPOCH, member.member_epoch))
            return member
        if len(group.members) >= self.config.max_group_size:
            raise HeartbeatError(ErrorCode.group_max_size_reached,
                                 f"The consumer group has reached its maximum capacity of "
                                 f"{self.config.max_group_size} members.")
        member = ConsumerMember(req.member_id)
        if req.instance_id is not None:
            self._replace_static(group, member, req.instance_id)
        group.members[member.member_id] = member
        return member

    def _replace_static(self, group: ConsumerGroup, member: ConsumerMember,
                        instance_id: str) -> None:
        """A static member rejoining under a new member id takes over its predecessor's
        assignment if the predecessor left temporarily (epoch -2)."""
        previous_id = group.static_members.get(instance_id)
        if previous_id is not None:
            previous = group.members[previous_id]
            if previous.member_epoch != STATIC_LEAVE_EPOCH:
                raise HeartbeatError(ErrorCode.unreleased_instance_id,
                                     f"Static member {previous_id} with instance id "
                                     f"{instance_id} is not released yet.")
            kept = previous.assignment
            group.remove(previous_id)
            self._cancel(group.group_id, previous_id)
            group.target[member.member_id] = dict(kept.assigned)
            member.assignment = MemberAssignment(JOIN_EPOCH, NO_OWNER_EPOCH)
        member.instance_id = instance_id
        group.static_members[instance_id] = member.member_id

    def _heartbeat(self, req: ConsumerHeartbeatRequest, now_ms: int) -> ConsumerHeartbeatResult:
        group = self.groups.get(req.group_id)
        if group is None:
            if req.member_epoch != JOIN_EPOCH:  # an unknown member must rejoin
                raise HeartbeatError(ErrorCode.unknown_member_id,
                                     f"Group {req.group_id} has no member {req.member_id}.")
            group = self.groups[req.group_id] = ConsumerGroup(req.group_id)
        is_new = req.member_id not in group.members
        group.dirty.add(req.member_id)
        member = self._member(group, req)
        before = member.assignment
        bump = _update_member(member, req) or is_new
        topics = {t.name: t for t in req.topics}
        if group.refresh_metadata(topics) or bump:
            group.group_epoch += 1
        if group.group_epoch > group.assignment_epoch:
            group.compute_target(topics)
        owned = None if req.owned is None else from_ids(req.owned)
        updated = reconcile(member.assignment, group.assignment_epoch,
                            group.target.get(member.member_id, {}), owned,
                            group.owner_epoch(member.member_id))
        group.set_assignment(member, updated)
        self._schedule(group, member, now_ms)
        send = (req.member_epoch == JOIN_EPOCH or before.assigned != updated.assigned
                or (owned is not None and owned != dict(updated.assigned)))
        return response(member, self.config, to_ids(updated.assigned) if send else None)

    def _leave(self, req: ConsumerHeartbeatRequest) -> ConsumerHeartbeatResult:
        group = self.groups.get(req.group_id)
        member = None if group is None else group.members.get(req.member_id)
        if group is None or member is None:
            raise HeartbeatError(ErrorCode.unknown_member_id,
                                 f"Member {req.member_id} is not a member of group "
                                 f"{req.group_id}.")
        if req.member_epoch == STATIC_LEAVE_EPOCH and member.instance_id is not None:
            # Kept with its assignment until it rejoins or its session expires.
            kept = member.assignment
            group.set_assignment(member, MemberAssignment(
                STATIC_LEAVE_EPOCH, kept.member_epoch, kept.state, kept.assigned,
                kept.pending_revocation))
            self.timers.cancel(("revocation", group.group_id, member.member_id))
        else:
            self.fence(group, member.member_id)
        return ConsumerHeartbeatResult(ErrorCode.none, None, req.member_id, req.member_epoch,
                                       0)

    def fence(self, group: ConsumerGroup, member_id: str) -> None:
        """Removes a member (left, session expired, revocation too slow); bumps the epoch."""
        group.remove(member_id)
        self._cancel(group.group_id, member_id)
        group.group_epoch += 1

    def _cancel(self, group_id: str, member_id: str) -> None:
        self.timers.cancel(("session", group_id, member_id))
        self.timers.cancel(("revocation", group_id, member_id))

    def _schedule(self, group: ConsumerGroup, member: ConsumerMember, now_ms: int) -> None:
        epoch = member.member_epoch
        self.timers.schedule(("session", group.group_id, member.member_id),
                             now_ms + self.config.consumer_session_timeout_ms, epoch)
        key = ("revocation", group.group_id, member.member_id)
        if member.assignment.state is not MemberState.UNREVOKED_PARTITIONS:
            self.timers.cancel(key)
        elif self.timers.get(key) is None:
            self.timers.schedule(key, now_ms + member.rebalance_timeout_ms, epoch)

    def tick(self, now_ms: int) -> None:
        touched: set[str] = set()
        try:
            self._tick(now_ms, touched)
        finally:
            for group_id in sorted(touched):
                self.sync(group_id)

    def _tick(self, now_ms: int, touched: set[str]) -> None:
        cutoff = self.timers.seq
        while (due := self.timers.pop_due(now_ms, cutoff)) is not None:
            key, epoch = due
            assert isinstance(key, tuple)
            kind, group_id, member_id = key
            group = self.groups.get(group_id)
            member = None if group is None else group.members.get(member_id)
            if group is None or member is None:
                continue
            if kind == "session" or (
                    member.assignment.state is MemberState.UNREVOKED_PARTITIONS
                    and member.member_epoch == epoch):
                self.fence(group, member_id)
                touched.add(group_id)

    def next_deadline_ms(self) -> int | None:
        return self.timers.next_deadline_ms()


def _update_member(member: ConsumerMember, req: ConsumerHeartbeatRequest) -> bool:
    """Applies the request's changed fields; True if the subscription changed."""
    member.client_id, member.client_host = req.client_id, req.client_host
    if req.rack_id is not None:
        member.rack_id = req.rack_id
    if req.rebalance_timeout_ms != -1:
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
    changed = False
    if req.subscribed_topic_names is not None:
        names = tuple(sorted(set(req.subscribed_topic_names)))
        changed = names != member.subscribed_topic_names
        member.subscribed_topic_names = names
    regex = req.subscribed_topic_regex
    if regex is not None and (regex or None) != member.subscribed_regex:
        member.subscribed_regex = regex or None
        changed = True
    if req.server_assignor is not None and req.server_assignor != member.server_assignor:
        member.server_assignor = req.server_assignor
        changed = True
    return changed
