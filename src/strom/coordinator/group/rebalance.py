"""The rebalance machinery: Kafka's prepareRebalance, DelayedJoin/InitialDelayedJoin,
onCompleteJoin, DelayedSync, DelayedHeartbeat and member removal, over `Context` timers.

Kafka keeps these as delayed operations in purgatories; here each is a keyed deadline in
`Context.timers` whose expiry `tick` hands to `on_timer`, and "checkAndComplete" is a direct
call at the same points Kafka makes it.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from strom.coordinator.group.context import Context, Timer, join_key, member_key, sync_key
from strom.coordinator.group.group import ClassicGroup, GroupState, Member
from strom.coordinator.group.model import (
    UNKNOWN_MEMBER_ID,
    JoinResult,
    SyncResult,
    join_error,
    sync_error,
)

_EMPTY = GroupState.EMPTY
_PREPARING = GroupState.PREPARING_REBALANCE
_COMPLETING = GroupState.COMPLETING_REBALANCE
_STABLE = GroupState.STABLE


# -- member deadlines (DelayedHeartbeat) ----------------------------------------------------


def schedule_session(ctx: Context, group: ClassicGroup, member: Member,
                     timeout_ms: int | None = None) -> None:
    """Kafka's completeAndScheduleNextExpiration: restart the member's session deadline.

    Like Kafka's tryCompleteElseWatch, a member parked in a rebalance at this moment has
    satisfied its heartbeat and gets no deadline until the next reschedule.
    """
    key = member_key(group.group_id, member.member_id)
    if member.has_satisfied_heartbeat():
        ctx.timers.cancel(key)
        return
    timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
    ctx.timers.schedule(key, ctx.now_ms + timeout,
                        Timer("session", group.group_id, member.member_id))


def add_pending_member_expiration(ctx: Context, group: ClassicGroup, member_id: str,
                                  timeout_ms: int) -> None:
    ctx.timers.schedule(member_key(group.group_id, member_id), ctx.now_ms + timeout_ms,
                        Timer("pending", group.group_id, member_id))


def on_member_timer(ctx: Context, timer: Timer) -> None:
    group = ctx.groups.get(timer.group_id)
    if group is None:
        return
    if timer.kind == "pending":
        if not group.has(timer.member_id):
            remove_pending_member_and_update_group(ctx, group, timer.member_id)
        return
    member = group.members.get(timer.member_id)
    if member is not None and not member.has_satisfied_heartbeat():
        remove_member_and_update_group(ctx, group, member)


# -- removal --------------------------------------------------------------------------------


def remove_member_and_update_group(ctx: Context, group: ClassicGroup, member: Member) -> None:
    # A parked JoinGroup learns it is gone; Kafka leaves a parked SyncGroup to time out in the
    # client, here it gets the answer a retry would get.
    ctx.maybe_answer_join(group, member, join_error(UNKNOWN_MEMBER_ID,
                                                    ErrorCode.unknown_member_id))
    ctx.maybe_answer_sync(group, member, sync_error(ErrorCode.unknown_member_id))
    group.remove(member.member_id)
    ctx.timers.cancel(member_key(group.group_id, member.member_id))
    if group.state in (_STABLE, _COMPLETING):
        maybe_prepare_rebalance(ctx, group)
    elif group.is_(_PREPARING):
        try_complete_join(ctx, group)


def remove_pending_member_and_update_group(ctx: Context, group: ClassicGroup,
                                           member_id: str) -> None:
    group.remove(member_id)
    if group.is_(_PREPARING):
        try_complete_join(ctx, group)


# -- PreparingRebalance (DelayedJoin, InitialDelayedJoin) ------------------------------------


def maybe_prepare_rebalance(ctx: Context, group: ClassicGroup) -> None:
    if group.can_rebalance():
        prepare_rebalance(ctx, group)


def prepare_rebalance(ctx: Context, group: ClassicGroup) -> None:
    if group.is_(_COMPLETING):
        reset_and_propagate_assignment_error(ctx, group, ErrorCode.rebalance_in_progress)
    group.pending_sync_members.clear()
    ctx.timers.cancel(sync_key(group.group_id))
    if group.is_(_EMPTY):
        delay = ctx.config.initial_rebalance_delay_ms
        remaining = max(group.rebalance_timeout_ms() - delay, 0)
        timer = Timer("initial_join", group.group_id, delay_ms=delay, remaining_ms=remaining)
    else:
        delay = group.rebalance_timeout_ms()
        timer = Timer("join", group.group_id)
    group.transition_to(_PREPARING, ctx.now_ms)
    ctx.timers.schedule(join_key(group.group_id), ctx.now_ms + delay, timer)
    try_complete_join(ctx, group)


def try_complete_join(ctx: Context, group: ClassicGroup) -> None:
    """Kafka's checkAndComplete on the group's join: a DelayedJoin completes once every
    member has rejoined; the InitialDelayedJoin only ever completes at its deadline."""
    scheduled = ctx.timers.get(join_key(group.group_id))
    if scheduled is None or scheduled[1].kind != "join" or not group.is_(_PREPARING):
        return
    if group.has_all_members_joined():
        ctx.timers.cancel(join_key(group.group_id))
        on_complete_join(ctx, group)


def on_join_timer(ctx: Context, timer: Timer) -> None:
    group = ctx.groups.get(timer.group_id)
    if group is None or not group.is_(_PREPARING):
        return
    if timer.kind == "initial_join" and group.new_member_added and timer.remaining_ms != 0:
        group.new_member_added = False
        delay = min(ctx.config.initial_rebalance_delay_ms, timer.remaining_ms)
        remaining = max(timer.remaining_ms - timer.delay_ms, 0)
        ctx.timers.schedule(join_key(group.group_id), ctx.now_ms + delay,
                            Timer("initial_join", group.group_id, delay_ms=delay,
                                  remaining_ms=remaining))
        return
    on_complete_join(ctx, group)


def _maybe_elect_new_joined_leader(group: ClassicGroup) -> bool:
    if group.leader_id is None:
        return False
    if group.members[group.leader_id].awaiting_join:
        return True
    for member in group.members.values():
        if member.awaiting_join:
            group.leader_id = member.member_id
            return True
    return False


def on_complete_join(ctx: Context, group: ClassicGroup) -> None:
    # Dynamic members that did not rejoin in time are dropped; static ones stay (KIP-345).
    for member in [m for m in group.members.values()
                   if not m.awaiting_join and m.group_instance_id is None]:
        ctx.maybe_answer_sync(group, member, sync_error(ErrorCode.unknown_member_id))
        group.remove(member.member_id)
        ctx.timers.cancel(member_key(group.group_id, member.member_id))
    if not _maybe_elect_new_joined_leader(group) and group.members:
        # Only static members that did not rejoin remain: wait another rebalance timeout.
        ctx.timers.schedule(join_key(group.group_id), ctx.now_ms + group.rebalance_timeout_ms(),
                            Timer("join", group.group_id))
        return
    group.init_next_generation(ctx.now_ms)
    if group.is_(_EMPTY):
        ctx.store_group(group, {})
        return
    leader_view = group.current_member_metadata()
    for member in group.members.values():
        result = JoinResult(ErrorCode.none, group.generation_id, group.protocol_type,
                            group.protocol_name, group.leader_id or "", member.member_id,
                            leader_view if group.is_leader(member.member_id) else ())
        ctx.maybe_answer_join(group, member, result)
        schedule_session(ctx, group, member)
        member.is_new = False
        group.pending_sync_members.add(member.member_id)
    ctx.timers.schedule(sync_key(group.group_id), ctx.now_ms + group.rebalance_timeout_ms(),
                        Timer("sync", group.group_id, generation_id=group.generation_id))


# -- CompletingRebalance (assignment propagation, DelayedSync) -------------------------------


def propagate_assignment(ctx: Context, group: ClassicGroup, error: int) -> None:
    ok = error == ErrorCode.none
    protocol_type, protocol_name = (group.protocol_type, group.protocol_name) if ok else (None,
                                                                                         None)
    for member in group.members.values():
        result = SyncResult(error, protocol_type, protocol_name, member.assignment)
        if ctx.maybe_answer_sync(group, member, result):
            schedule_session(ctx, group, member)


def reset_and_propagate_assignment_error(ctx: Context, group: ClassicGroup, error: int) -> None:
    assert group.is_(_COMPLETING)
    for member in group.members.values():
        member.assignment = b""
    propagate_assignment(ctx, group, error)


def set_and_propagate_assignment(ctx: Context, group: ClassicGroup,
                                 assignment: dict[str, bytes]) -> None:
    assert group.is_(_COMPLETING)
    for member in group.members.values():
        member.assignment = assignment[member.member_id]
    propagate_assignment(ctx, group, ErrorCode.none)


def remove_pending_sync_member(ctx: Context, group: ClassicGroup, member_id: str) -> None:
    group.pending_sync_members.discard(member_id)
    if not group.pending_sync_members:
        ctx.timers.cancel(sync_key(group.group_id))


def on_sync_timer(ctx: Context, timer: Timer) -> None:
    """Members that never sent SyncGroup after a rebalance are removed, and it starts again."""
    group = ctx.groups.get(timer.group_id)
    if (group is None or group.generation_id != timer.generation_id
            or group.state not in (_COMPLETING, _STABLE) or not group.pending_sync_members):
        return
    for member_id in sorted(group.pending_sync_members):
        group.remove(member_id)
        ctx.timers.cancel(member_key(group.group_id, member_id))
    prepare_rebalance(ctx, group)
