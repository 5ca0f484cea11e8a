"""JoinGroup: Kafka's handleJoinGroup with its new-member, static-member and current-member
paths. Returns the answer, or `Parked` when the member waits for the rebalance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from strom.coordinator.group import rebalance
from strom.coordinator.group.context import Context, member_key
from strom.coordinator.group.group import ClassicGroup, GroupState, Member
from strom.coordinator.group.model import (
    UNKNOWN_MEMBER_ID,
    JoinRequest,
    JoinResult,
    join_error,
    sync_error,
)

_EMPTY = GroupState.EMPTY
_PREPARING = GroupState.PREPARING_REBALANCE
_COMPLETING = GroupState.COMPLETING_REBALANCE
_STABLE = GroupState.STABLE


@dataclass(frozen=True, slots=True)
class Parked:
    """The request waits; its answer is the first completion for `member_id` emitted from
    index `since` of `Context.completions` on, within this call or a later one."""

    member_id: str
    since: int


def park(ctx: Context, member_id: str) -> Parked:
    return Parked(member_id, len(ctx.completions))


def validate_current_member(group: ClassicGroup, member_id: str,
                            group_instance_id: str | None) -> int | None:
    """Kafka's validateCurrentMember: a static member's id must be the one its instance maps
    to (else FENCED_INSTANCE_ID), and the member must exist (else UNKNOWN_MEMBER_ID)."""
    if group_instance_id is not None:
        current = group.static_members.get(group_instance_id)
        if current is None:
            return ErrorCode.unknown_member_id
        if current != member_id:
            return ErrorCode.fenced_instance_id
    if not group.has(member_id):
        return ErrorCode.unknown_member_id
    return None


def handle_join(ctx: Context, req: JoinRequest) -> JoinResult | Parked:
    config = ctx.config
    if not req.group_id:
        return join_error(req.member_id, ErrorCode.invalid_group_id)
    if not config.min_session_timeout_ms <= req.session_timeout_ms <= config.max_session_timeout_ms:
        return join_error(req.member_id, ErrorCode.invalid_session_timeout)
    is_unknown = req.member_id == UNKNOWN_MEMBER_ID
    group = ctx.groups.get(req.group_id)
    if group is None:
        if not is_unknown:
            return join_error(req.member_id, ErrorCode.unknown_member_id)
        group = ctx.groups[req.group_id] = ClassicGroup(req.group_id, ctx.now_ms)
    result: JoinResult | Parked
    if not _accept_joining_member(ctx, group, req.member_id):
        group.remove(req.member_id)
        ctx.timers.cancel(member_key(group.group_id, req.member_id))
        result = join_error(UNKNOWN_MEMBER_ID, ErrorCode.group_max_size_reached)
    elif is_unknown:
        result = _new_member_join(ctx, group, req)
    else:
        result = _current_member_join(ctx, group, req)
    if group.is_(_PREPARING):
        rebalance.try_complete_join(ctx, group)
    return result


def _accept_joining_member(ctx: Context, group: ClassicGroup, member_id: str) -> bool:
    max_size = ctx.config.max_group_size
    if group.state in (_EMPTY, GroupState.DEAD):
        return True
    if group.is_(_PREPARING):
        member = group.members.get(member_id)
        return (member is not None and member.awaiting_join) or group.num_awaiting_join < max_size
    return group.has(member_id) or len(group.members) < max_size


def _supports(group: ClassicGroup, req: JoinRequest) -> bool:
    return group.supports_protocols(req.protocol_type, {name for name, _ in req.protocols})


def _new_member_join(ctx: Context, group: ClassicGroup, req: JoinRequest) -> JoinResult | Parked:
    if group.is_(GroupState.DEAD):
        return join_error(UNKNOWN_MEMBER_ID, ErrorCode.coordinator_not_available)
    if not _supports(group, req):
        return join_error(UNKNOWN_MEMBER_ID, ErrorCode.inconsistent_group_protocol)
    instance_id = req.group_instance_id
    new_member_id = f"{req.client_id if instance_id is None else instance_id}-{uuid.uuid4()}"
    if instance_id is not None:
        old_member_id = group.static_members.get(instance_id)
        if old_member_id is not None:
            return _update_static_member(ctx, group, req, instance_id, old_member_id,
                                         new_member_id)
    elif req.require_known_member_id:
        group.pending_members.add(new_member_id)
        rebalance.add_pending_member_expiration(ctx, group, new_member_id,
                                                req.session_timeout_ms)
        return join_error(new_member_id, ErrorCode.member_id_required)
    return _add_member_and_rebalance(ctx, group, req, new_member_id)


def _add_member_and_rebalance(ctx: Context, group: ClassicGroup, req: JoinRequest,
                              member_id: str) -> Parked:
    member = Member(member_id, req.group_instance_id, req.client_id, req.client_host,
                    req.rebalance_timeout_ms, req.session_timeout_ms, req.protocol_type,
                    tuple(req.protocols))
    member.is_new = True
    member.awaiting_join = True
    if group.is_(_PREPARING) and group.generation_id == 0:
        group.new_member_added = True
    group.add(member)
    parked = park(ctx, member_id)
    # A new member cannot heartbeat while its JoinGroup is parked; drop it if it stays too long.
    rebalance.schedule_session(ctx, group, member, ctx.config.new_member_join_timeout_ms)
    rebalance.maybe_prepare_rebalance(ctx, group)
    return parked


def _update_static_member(ctx: Context, group: ClassicGroup, req: JoinRequest,
                          instance_id: str, old_member_id: str,
                          new_member_id: str) -> JoinResult | Parked:
    """A known group.instance.id rejoined without its member id: it takes over the member."""
    current_leader = group.leader_id
    old = group.members[old_member_id]
    ctx.maybe_answer_join(group, old, join_error(old_member_id, ErrorCode.fenced_instance_id))
    ctx.maybe_answer_sync(group, old, sync_error(ErrorCode.fenced_instance_id))
    ctx.timers.cancel(member_key(group.group_id, old_member_id))
    member = group.replace_static_member(instance_id, old_member_id, new_member_id)
    rebalance.schedule_session(ctx, group, member)
    group.update_member(member, tuple(req.protocols), req.rebalance_timeout_ms,
                        req.session_timeout_ms)
    group.set_awaiting_join(member, True)
    parked = park(ctx, new_member_id)
    if group.is_(_COMPLETING):
        # The leader may already hold the old id's metadata: assign again.
        rebalance.prepare_rebalance(ctx, group)
    elif group.is_(_STABLE):
        if group.protocol_name != group.select_protocol():
            rebalance.maybe_prepare_rebalance(ctx, group)
            return parked
        ctx.store_group(group, {m.member_id: m.assignment for m in group.members.values()})
        group.set_awaiting_join(member, False)
        return _static_rejoin_result(group, req, new_member_id, current_leader)
    return parked


def _static_rejoin_result(group: ClassicGroup, req: JoinRequest, member_id: str,
                          current_leader: str | None) -> JoinResult:
    if req.supports_skip_assignment:
        # KIP-814: the leader learns it leads but skips the assignor; the group stays Stable.
        is_leader = group.is_leader(member_id)
        return JoinResult(ErrorCode.none, group.generation_id, group.protocol_type,
                          group.protocol_name, group.leader_id or "", member_id,
                          group.current_member_metadata() if is_leader else (), is_leader)
    # Before v9: answer with the old leader id so a rejoining leader acts as a follower.
    return JoinResult(ErrorCode.none, group.generation_id, group.protocol_type,
                      group.protocol_name, current_leader or "", member_id, ())


def _current_member_join(ctx: Context, group: ClassicGroup,
                         req: JoinRequest) -> JoinResult | Parked:
    member_id = req.member_id
    if group.is_(GroupState.DEAD):
        return join_error(member_id, ErrorCode.coordinator_not_available)
    if not _supports(group, req):
        return join_error(member_id, ErrorCode.inconsistent_group_protocol)
    if member_id in group.pending_members:
        if req.group_instance_id is not None:  # Kafka: IllegalStateException
            return join_error(member_id, ErrorCode.unknown_server_error)
        return _add_member_and_rebalance(ctx, group, req, member_id)
    error = validate_current_member(group, member_id, req.group_instance_id)
    if error is not None:
        return join_error(member_id, error)
    member = group.members[member_id]
    rejoin_needed = (group.is_(_PREPARING) or not member.matches(tuple(req.protocols))
                     or (group.is_(_STABLE) and group.is_leader(member_id)))
    if rejoin_needed:
        return _update_member_and_rebalance(ctx, group, member, req)
    # Same metadata in CompletingRebalance / follower in Stable: the current generation.
    is_leader = group.is_(_COMPLETING) and group.is_leader(member_id)
    return JoinResult(ErrorCode.none, group.generation_id, group.protocol_type,
                      group.protocol_name, group.leader_id or "", member_id,
                      group.current_member_metadata() if is_leader else ())


def _update_member_and_rebalance(ctx: Context, group: ClassicGroup, member: Member,
                                 req: JoinRequest) -> Parked:
    # A JoinGroup from a member already parked replaces the parked one under the same key
    # (Kafka drops the old callback): the shell's new waiter supersedes the old one.
    group.update_member(member, tuple(req.protocols), req.rebalance_timeout_ms,
                        req.session_timeout_ms)
    group.set_awaiting_join(member, True)
    parked = park(ctx, member.member_id)
    rebalance.maybe_prepare_rebalance(ctx, group)
    return parked
