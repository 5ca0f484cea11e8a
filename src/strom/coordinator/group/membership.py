"""SyncGroup, Heartbeat and LeaveGroup: Kafka's handleSyncGroup, handleHeartbeat and
handleLeaveGroup for classic groups."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from strom.coordinator.group import rebalance
from strom.coordinator.group.context import Context, member_key
from strom.coordinator.group.group import ClassicGroup, GroupState
from strom.coordinator.group.join import Parked, park, validate_current_member
from strom.coordinator.group.model import (
    UNKNOWN_MEMBER_ID,
    HeartbeatRequest,
    LeaveMember,
    LeaveRequest,
    LeaveResult,
    SyncRequest,
    SyncResult,
    sync_error,
)


def _validate_sync(group: ClassicGroup, req: SyncRequest) -> int | None:
    if group.is_(GroupState.DEAD):
        return ErrorCode.coordinator_not_available
    error = validate_current_member(group, req.member_id, req.group_instance_id)
    if error is not None:
        return error
    if req.generation_id != group.generation_id:
        return ErrorCode.illegal_generation
    if req.protocol_type is not None and req.protocol_type != group.protocol_type:
        return ErrorCode.inconsistent_group_protocol
    if req.protocol_name is not None and req.protocol_name != group.protocol_name:
        return ErrorCode.inconsistent_group_protocol
    return None


def handle_sync(ctx: Context, req: SyncRequest) -> SyncResult | Parked:
    if not req.group_id:
        return sync_error(ErrorCode.invalid_group_id)
    group = ctx.groups.get(req.group_id)
    if group is None:
        return sync_error(ErrorCode.unknown_member_id)
    error = _validate_sync(group, req)
    if error is not None:
        return sync_error(error)
    if group.is_(GroupState.EMPTY):
        return sync_error(ErrorCode.unknown_member_id)
    if group.is_(GroupState.PREPARING_REBALANCE):
        return sync_error(ErrorCode.rebalance_in_progress)
    member = group.members[req.member_id]
    rebalance.remove_pending_sync_member(ctx, group, req.member_id)
    if group.is_(GroupState.STABLE):
        result = SyncResult(ErrorCode.none, group.protocol_type, group.protocol_name,
                            member.assignment)
        rebalance.schedule_session(ctx, group, member)
        return result
    # CompletingRebalance: park until the leader's assignment arrives (a repeated SyncGroup
    # replaces the parked one under the same key, as Kafka replaces the callback).
    member.awaiting_sync = True
    parked = park(ctx, req.member_id)
    if group.is_leader(req.member_id):
        given = dict(req.assignments)
        assignment = {member_id: given.get(member_id, b"") for member_id in group.members}
        ctx.store_group(group, assignment)
        rebalance.set_and_propagate_assignment(ctx, group, assignment)
        group.transition_to(GroupState.STABLE, ctx.now_ms)
    return parked


def handle_heartbeat(ctx: Context, req: HeartbeatRequest) -> int:
    if not req.group_id:
        return ErrorCode.invalid_group_id
    group = ctx.groups.get(req.group_id)
    if group is None:
        return ErrorCode.unknown_member_id
    if group.is_(GroupState.DEAD):
        return ErrorCode.coordinator_not_available
    error = validate_current_member(group, req.member_id, req.group_instance_id)
    if error is not None:
        return error
    if req.generation_id != group.generation_id:
        return ErrorCode.illegal_generation
    if group.is_(GroupState.EMPTY):
        return ErrorCode.unknown_member_id
    rebalance.schedule_session(ctx, group, group.members[req.member_id])
    if group.is_(GroupState.PREPARING_REBALANCE):
        return ErrorCode.rebalance_in_progress
    return ErrorCode.none


def handle_leave(ctx: Context, req: LeaveRequest) -> LeaveResult:
    if not req.group_id:
        return LeaveResult(ErrorCode.invalid_group_id, ())
    group = ctx.groups.get(req.group_id)
    if group is None:
        return LeaveResult(ErrorCode.none, tuple(
            (m.member_id, m.group_instance_id, int(ErrorCode.unknown_member_id))
            for m in req.members))
    if group.is_(GroupState.DEAD):
        return LeaveResult(ErrorCode.coordinator_not_available, ())
    return LeaveResult(ErrorCode.none, tuple(
        (m.member_id, m.group_instance_id, _leave_one(ctx, group, m)) for m in req.members))


def _leave_one(ctx: Context, group: ClassicGroup, leaving: LeaveMember) -> int:
    member_id = leaving.member_id
    if member_id == UNKNOWN_MEMBER_ID:
        # Admin removal by group.instance.id (KIP-345) names no member id.
        instance_id = leaving.group_instance_id
        current = None if instance_id is None else group.static_members.get(instance_id)
        if current is None:
            return ErrorCode.unknown_member_id
        member_id = current
    elif member_id in group.pending_members:
        ctx.timers.cancel(member_key(group.group_id, member_id))
        rebalance.remove_pending_member_and_update_group(ctx, group, member_id)
        return ErrorCode.none
    else:
        error = validate_current_member(group, member_id, leaving.group_instance_id)
        if error is not None:
            return error
    rebalance.remove_member_and_update_group(ctx, group, group.members[member_id])
    return ErrorCode.none
