"""Classic consumer groups: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

Each handler maps the request of its version onto the coordinator's model and back; the
coordinator decides, the GroupRuntime persists and waits.

Authorization (Kafka's KafkaApis): FindCoordinator needs DESCRIBE on the group (key type 0) or
the transactional id (key type 1), per key; JoinGroup, SyncGroup, Heartbeat and LeaveGroup READ
on the group; DescribeGroups DESCRIBE per group; DeleteGroups DELETE per group; ListGroups lists
every group to a principal with DESCRIBE on the cluster, otherwise only the groups it may
DESCRIBE. A refused request reaches no coordinator: nothing is created or changed.
"""

from __future__ import annotations

from typing import Any, Final

from strom.broker.authorize import (
    cluster_allowed,
    group_allowed,
    operations_or,
    transactional_id_allowed,
)
from strom.broker.coordinator_runtime import CoordinatorError, CoordinatorRuntime, ShardStatus
from strom.broker.leadership import leadership
from strom.broker.operations import OPERATIONS_OMITTED
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.group.model import (
    GroupDescription,
    HeartbeatRequest,
    JoinRequest,
    JoinResult,
    LeaveMember,
    LeaveRequest,
    LeaveResult,
    SyncRequest,
    SyncResult,
    join_error,
    sync_error,
)
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation, ResourceType

KEY_TYPE_GROUP: Final = 0
KEY_TYPE_TRANSACTION: Final = 1
# Operations a consumer group supports: READ 3, DELETE 6, DESCRIBE 8.
GROUP_OPERATIONS: Final = sum(1 << op for op in (3, 6, 8))
# Kafka's messages for these errors (Errors.java), where an answer carries one.
GROUP_AUTHORIZATION_MESSAGE: Final = "Group authorization failed."
TRANSACTIONAL_ID_AUTHORIZATION_MESSAGE: Final = "Transactional Id authorization failed."


async def coordinator_node(broker: Broker, key: str, key_type: int
                           ) -> tuple[int, str | None, int]:
    """(error, message, node id): the coordinator of `key` is the leader of the key's
    partition of `__consumer_offsets` / `__transaction_state`, as Kafka answers;
    COORDINATOR_NOT_AVAILABLE while no broker leads it (or this broker leads it but its
    shard cannot be loaded)."""
    runtime: CoordinatorRuntime[Any]
    if key_type == KEY_TYPE_GROUP:
        runtime = broker.groups.runtime
    elif key_type == KEY_TYPE_TRANSACTION:
        try:  # Kafka creates __transaction_state on the first such lookup
            await broker.transactions.own(create=True)
        except CoordinatorError:
            return ErrorCode.coordinator_not_available, "the transaction log is unavailable", -1
        runtime = broker.transactions.runtime
    else:
        return ErrorCode.invalid_request, f"unknown key type {key_type}", -1
    found = leadership(broker, runtime.topic, runtime.partition_for(key))
    if found is None or found.leader is None:
        return ErrorCode.coordinator_not_available, "the coordinator is not available", -1
    if found.leader == broker.node_id and runtime.status(
            runtime.partition_for(key)) not in (ShardStatus.ACTIVE, ShardStatus.LOADING):
        return ErrorCode.coordinator_not_available, "the coordinator is not available", -1
    return ErrorCode.none, None, found.leader


def coordinator_refusal(ctx: RequestContext, key: str, key_type: int
                        ) -> tuple[ErrorCode, str] | None:
    """Why FindCoordinator may not look `key` up for this principal (Kafka: DESCRIBE on the
    group or the transactional id), or None; checked before anything (__transaction_state
    is not created for a refused lookup)."""
    if key_type == KEY_TYPE_GROUP and not group_allowed(ctx, Operation.DESCRIBE, key):
        return ErrorCode.group_authorization_failed, GROUP_AUTHORIZATION_MESSAGE
    if key_type == KEY_TYPE_TRANSACTION and not transactional_id_allowed(
            ctx, Operation.DESCRIBE, key):
        return (ErrorCode.transactional_id_authorization_failed,
                TRANSACTIONAL_ID_AUTHORIZATION_MESSAGE)
    return None


async def coordinator_entry(broker: Broker, ctx: RequestContext, key: str, key_type: int
                            ) -> dict[str, Any]:
    refused = coordinator_refusal(ctx, key, key_type)
    if refused is not None:  # Kafka's batched answers (v4+) carry no message for it
        return dict(key=key, node_id=-1, host="", port=-1, error_code=refused[0],
                    error_message=refused[1] if ctx.api_version < 4 else None)
    error, message, node = await coordinator_node(broker, key, key_type)
    endpoint = None
    if error == ErrorCode.none and node == broker.node_id:
        endpoint = broker.registration()
    elif error == ErrorCode.none:
        endpoint = next((r for r in await broker.engine.brokers() if r.node_id == node), None)
        if endpoint is None:
            error, message = ErrorCode.coordinator_not_available, "the coordinator is not live"
    host, port = ("", -1) if endpoint is None else endpoint.endpoint(ctx.session.listener)
    return dict(key=key, node_id=-1 if endpoint is None else endpoint.node_id,
                host=host, port=port,
                error_code=ErrorCode(error), error_message=message)


@api(10, "FindCoordinator", (0, 6), "the leader of the key's partition of __consumer_offsets "
     "or __transaction_state; batched keys (v4+)")
async def handle_find_coordinator(broker: Broker, ctx: RequestContext, request: Any,
                                  b: ResponseBuilder) -> Any:
    key_type = int(getattr(request, "key_type", KEY_TYPE_GROUP))
    if b.version >= 4:
        entries = [await coordinator_entry(broker, ctx, key, key_type)
                   for key in request.coordinator_keys]
        return b.make("FindCoordinatorResponse", throttle_time=NO_THROTTLE, coordinators=tuple(
            b.make("Coordinator", **entry) for entry in entries))
    entry = await coordinator_entry(broker, ctx, request.key, key_type)
    return b.make("FindCoordinatorResponse", throttle_time=NO_THROTTLE,
                  error_code=entry["error_code"], error_message=entry["error_message"],
                  node_id=entry["node_id"], host=entry["host"], port=entry["port"])


def join_response(b: ResponseBuilder, result: JoinResult) -> Any:
    members = tuple(
        b.make("JoinGroupResponseMember", member_id=m.member_id,
               group_instance_id=m.group_instance_id, metadata=m.metadata)
        for m in result.members)
    return b.make("JoinGroupResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode(result.error), generation_id=result.generation_id,
                  protocol_type=result.protocol_type,
                  protocol_name=(result.protocol_name if b.version >= 7
                                 else result.protocol_name or ""), leader=result.leader,
                  skip_assignment=result.skip_assignment, member_id=result.member_id,
                  members=members)


@api(11, "JoinGroup", (0, 9), "classic protocol; MEMBER_ID_REQUIRED from v4; static membership")
async def handle_join_group(broker: Broker, ctx: RequestContext, request: Any,
                            b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return join_response(b, join_error("", ErrorCode.group_authorization_failed))
    session_ms = int(request.session_timeout.total_seconds() * 1000)
    rebalance = getattr(request, "rebalance_timeout", None)
    join = JoinRequest(
        group_id=request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=ctx.client_id or "", client_host=ctx.client_host,
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=session_ms if rebalance is None
        else int(rebalance.total_seconds() * 1000),
        protocol_type=request.protocol_type,
        protocols=tuple((p.name, p.metadata) for p in request.protocols),
        require_known_member_id=b.version >= 4, reason=getattr(request, "reason", None),
        supports_skip_assignment=b.version >= 9)
    try:
        result = await broker.groups.write(join.group_id,
                                           lambda core, now_ms: core.join(join, now_ms))
    except CoordinatorError as exc:
        result = join_error(join.member_id, exc.error)
    return join_response(b, result)


@api(14, "SyncGroup", (0, 5), "the leader's assignment reaches every member of the generation")
async def handle_sync_group(broker: Broker, ctx: RequestContext, request: Any,
                            b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return sync_response(b, sync_error(ErrorCode.group_authorization_failed))
    sync = SyncRequest(
        group_id=request.group_id, member_id=request.member_id,
        generation_id=int(request.generation_id),
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments=tuple((a.member_id, a.assignment) for a in request.assignments))
    try:
        result = await broker.groups.write(sync.group_id,
                                           lambda core, now_ms: core.sync(sync, now_ms))
    except CoordinatorError as exc:
        result = sync_error(exc.error)
        if exc.error == ErrorCode.coordinator_load_in_progress:
            # Kafka: the rebalance's state is lost with the load; rejoin without a lookup.
            result = sync_error(ErrorCode.rebalance_in_progress)
    return sync_response(b, result)


def sync_response(b: ResponseBuilder, result: SyncResult) -> Any:
    return b.make("SyncGroupResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode(result.error), protocol_type=result.protocol_type,
                  protocol_name=result.protocol_name, assignment=result.assignment)


@api(12, "Heartbeat", (0, 4), "")
async def handle_heartbeat(broker: Broker, ctx: RequestContext, request: Any,
                           b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return b.make("HeartbeatResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.group_authorization_failed)
    beat = HeartbeatRequest(group_id=request.group_id, member_id=request.member_id,
                            generation_id=int(request.generation_id),
                            group_instance_id=getattr(request, "group_instance_id", None))
    try:
        error = await broker.groups.write(beat.group_id,
                                          lambda core, now_ms: core.heartbeat(beat, now_ms))
    except CoordinatorError as exc:  # still loading: Kafka answers blindly
        error = (ErrorCode.none if exc.error == ErrorCode.coordinator_load_in_progress
                 else exc.error)
    return b.make("HeartbeatResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode(error))


@api(13, "LeaveGroup", (0, 5), "batched members from v3")
async def handle_leave_group(broker: Broker, ctx: RequestContext, request: Any,
                             b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return b.make("LeaveGroupResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.group_authorization_failed, members=())
    if b.version >= 3:
        members = tuple(LeaveMember(m.member_id, m.group_instance_id, getattr(m, "reason", None))
                        for m in request.members)
    else:
        members = (LeaveMember(request.member_id, None, None),)
    leave = LeaveRequest(group_id=request.group_id, members=members)
    try:
        result = await broker.groups.write(leave.group_id,
                                           lambda core, now_ms: core.leave(leave, now_ms))
    except CoordinatorError as exc:
        result = LeaveResult(exc.error, ())
    error = result.error
    if b.version < 3 and error == ErrorCode.none and result.members:
        error = result.members[0][2]  # a single leaver's own error is the answer
    members = tuple(
        b.make("MemberResponse", member_id=member_id, group_instance_id=instance_id,
               error_code=ErrorCode(code))
        for member_id, instance_id, code in result.members) if b.version >= 3 else ()
    return b.make("LeaveGroupResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode(error),
                  members=members)


@api(15, "DescribeGroups", (0, 6), "")
async def handle_describe_groups(broker: Broker, ctx: RequestContext, request: Any,
                                 b: ResponseBuilder) -> Any:
    include_operations = bool(getattr(request, "include_authorized_operations", False))
    groups = []
    for group in described_groups(broker, ctx, list(request.groups)):
        error = ErrorCode(group.error)
        if b.version < 6 and error == ErrorCode.group_id_not_found:
            error = ErrorCode.none  # before v6 an unknown group is described as Dead, no error
        members = tuple(
            b.make("DescribedGroupMember", member_id=m.member_id,
                   group_instance_id=m.group_instance_id, client_id=m.client_id,
                   client_host=m.client_host, member_metadata=m.metadata,
                   member_assignment=m.assignment)
            for m in group.members)
        operations = OPERATIONS_OMITTED
        if include_operations and error == ErrorCode.none:
            operations = operations_or(ctx, ResourceType.GROUP, group.group_id,
                                       GROUP_OPERATIONS)
        groups.append(b.make(
            "DescribedGroup", error_code=error, error_message=None,
            group_id=group.group_id, group_state=group.state, protocol_type=group.protocol_type,
            protocol_data=group.protocol, members=members, authorized_operations=operations))
    return b.make("DescribeGroupsResponse", throttle_time=NO_THROTTLE, groups=tuple(groups))


def described_groups(broker: Broker, ctx: RequestContext, group_ids: list[str]
                     ) -> list[GroupDescription]:
    """`describe` of the groups the principal may DESCRIBE; the others are described with
    GROUP_AUTHORIZATION_FAILED alone (Kafka's DescribeGroupsResponse.groupError)."""
    allowed = [g for g in dict.fromkeys(group_ids) if group_allowed(ctx, Operation.DESCRIBE, g)]
    described = {d.group_id: d for d in describe(broker, allowed)}
    refused = ErrorCode.group_authorization_failed
    return [described.get(g) or GroupDescription(g, refused, "", "", "", ()) for g in group_ids]


@api(16, "ListGroups", (0, 5), "states filter (v4+), types filter (v5+)")
async def handle_list_groups(broker: Broker, ctx: RequestContext, request: Any,
                             b: ResponseBuilder) -> Any:
    states = tuple(getattr(request, "states_filter", ()))
    types = tuple(getattr(request, "types_filter", ()))
    try:
        listings = [g for core in broker.groups.listed_cores()
                    for g in core.list_groups(states, types)]
    except CoordinatorError as exc:
        return b.make("ListGroupsResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode(exc.error), groups=())
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        listings = [g for g in listings if group_allowed(ctx, Operation.DESCRIBE, g.group_id)]
    return b.make("ListGroupsResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                  groups=tuple(
                      b.make("ListedGroup", group_id=g.group_id, protocol_type=g.protocol_type,
                             group_state=g.state, group_type=g.group_type)
                      for g in listings))


@api(42, "DeleteGroups", (0, 2), "NON_EMPTY_GROUP for groups with members")
async def handle_delete_groups(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    wanted = list(dict.fromkeys(request.groups_names))
    allowed = [g for g in wanted if group_allowed(ctx, Operation.DELETE, g)]
    results: dict[str, int] = dict.fromkeys(wanted, ErrorCode.group_authorization_failed)
    for group_ids in broker.groups.by_shard(allowed).values():
        results.update(await delete_groups(broker, group_ids))
    for group_id, error in results.items():
        if error == ErrorCode.none:
            broker.groups.lag_history.drop_group(group_id)
    return b.make("DeleteGroupsResponse", throttle_time=NO_THROTTLE, results=tuple(
        b.make("DeletableGroupResult", group_id=group_id,
               error_code=ErrorCode(results[group_id]))
        for group_id in wanted))


def describe(broker: Broker, group_ids: list[str]) -> list[GroupDescription]:
    """Each group described by its shard, in request order; a shard not served describes
    its groups with its error (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)."""
    described: dict[str, GroupDescription] = {}
    for ids in broker.groups.by_shard(group_ids).values():
        try:
            described.update((d.group_id, d) for d in broker.groups.core(ids[0]).describe(ids))
        except CoordinatorError as exc:
            described.update((g, GroupDescription(g, exc.error, "", "", "", ())) for g in ids)
    return [described[g] for g in group_ids]


async def delete_groups(broker: Broker, group_ids: list[str]) -> list[tuple[str, int]]:
    """DeleteGroups of ids of one shard: (group_id, error) each."""
    try:
        return await broker.groups.write(
            group_ids[0], lambda core, now_ms: core.delete_groups(group_ids, now_ms))
    except CoordinatorError as exc:
        return [(group_id, exc.error) for group_id in group_ids]
