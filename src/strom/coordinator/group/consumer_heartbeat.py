"""ConsumerGroupHeartbeat for KIP-848 groups: request validation, member epochs, joins,
leaves, static members, timers; persists through `consumer_group_log`."""

from __future__ import annotations

from collections.abc import Callable

from kio.schema.errors import ErrorCode

from strom.coordinator.group import consumer_log_format as clf
from strom.coordinator.group.assignors import ASSIGNORS
from strom.coordinator.group.consumer_group import (
    JOIN_EPOCH,
    LEAVE_EPOCH,
    REGEX_MAX_CHARS,
    STATIC_LEAVE_EPOCH,
    ConsumerGroup,
    ConsumerMember,
    HeartbeatError,
    from_ids,
    to_ids,
)
from strom.coordinator.group.consumer_group_log import (
    PersistedView,
    changed_records,
    diff_views,
    group_exists,
    persisted_view,
)
from strom.coordinator.group.model import (
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
    GroupConfig,
    TopicPartitionIds,
)
from strom.coordinator.group.reconcile import (
    NO_OWNER_EPOCH,
    MemberAssignment,
    MemberState,
    reconcile,
)
from strom.coordinator.group.timers import TimerQueue
from strom.coordinator.group.topic_regex import RegexError, compile_topic_regex

Emit = Callable[[str, bytes, bytes | None], None]

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
            raise RegexError(f"longer than {REGEX_MAX_CHARS} characters")
        compile_topic_regex(regex)
    except RegexError as exc:
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
        if group is None or not group_exists(group):
            changes = diff_views(old, {})
        else:
            changes = changed_records(group, old)
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
            group.rebalances += 1
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
        group.rebalances += 1

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
