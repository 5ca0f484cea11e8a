"""KIP-848 consumer groups: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

The coordinator assigns partitions server-side; the handler hands it a snapshot of the cluster's
topics (what Metadata would say) with each heartbeat so that new topics and partition counts
are picked up on the next heartbeat.

Authorization, as Kafka 4's KafkaApis and GroupMetadataManager: a heartbeat needs READ on the
group (GROUP_AUTHORIZATION_FAILED), and DESCRIBE on every topic it subscribes to by name
(TOPIC_AUTHORIZATION_FAILED, the member is not admitted); a regular expression only ever
matches topics the principal may DESCRIBE (Kafka resolves it with the heartbeating member's
rights; the topics it may not describe are left out, no error). ConsumerGroupDescribe needs
DESCRIBE per group, and a group whose members are assigned topics the principal may not
DESCRIBE is answered with TOPIC_AUTHORIZATION_FAILED instead of its description.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Final

from strom.broker.authorize import group_allowed, operations_or, topic_allowed
from strom.broker.coordinator_runtime import CoordinatorError
from strom.broker.handlers.groups import GROUP_OPERATIONS
from strom.broker.operations import OPERATIONS_OMITTED
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.coordinator.group.model import (
    ConsumerGroupDescription,
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
    TopicMetadata,
    TopicPartitionIds,
)
from strom.coordinator.internal_topics import INTERNAL_TOPICS
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation, ResourceType

UNAUTHORIZED_TOPICS_MESSAGE: Final = ("The group has described topic(s) that the client is not "
                                      "authorized to describe.")


def topics_snapshot(broker: Broker, ctx: RequestContext | None = None
                    ) -> tuple[TopicMetadata, ...]:
    """The cluster's topics for the coordinator. A topic `ctx`'s principal may not DESCRIBE is
    hidden from regular expressions as an internal topic is (topic names are checked before:
    `unauthorized_subscription`)."""
    return tuple(TopicMetadata(t.name, t.topic_id, t.partitions, t.name in INTERNAL_TOPICS or (
        ctx is not None and not topic_allowed(ctx, Operation.DESCRIBE, t.name)))
                 for t in broker.engine.topics().values())


def unauthorized_subscription(ctx: RequestContext, request: Any) -> bool:
    """Whether the heartbeat subscribes by name to a topic the principal may not DESCRIBE
    (Kafka answers TOPIC_AUTHORIZATION_FAILED whether or not the topic exists)."""
    names = request.subscribed_topic_names or ()
    return any(not topic_allowed(ctx, Operation.DESCRIBE, name) for name in set(names))


def heartbeat_refusal(b: ResponseBuilder, error: ErrorCode) -> Any:
    """Kafka's ConsumerGroupHeartbeatRequest.getErrorResponse: the error code alone."""
    return b.make("ConsumerGroupHeartbeatResponse", throttle_time=NO_THROTTLE, error_code=error,
                  error_message=None, member_id=None, member_epoch=0,
                  heartbeat_interval=timedelta(0), assignment=None)


def _owned(request: Any) -> TopicPartitionIds | None:
    if request.topic_partitions is None:
        return None
    return tuple((t.topic_id, tuple(int(p) for p in t.partitions))
                 for t in request.topic_partitions if t.topic_id is not None)


@api(68, "ConsumerGroupHeartbeat", (0, 1), "KIP-848 server-side assignment (uniform, range); "
     "topic regex via RE2 (v1); membership persisted in __consumer_offsets")
async def handle_consumer_group_heartbeat(broker: Broker, ctx: RequestContext, request: Any,
                                          b: ResponseBuilder) -> Any:
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return heartbeat_refusal(b, ErrorCode.group_authorization_failed)
    if unauthorized_subscription(ctx, request):
        return heartbeat_refusal(b, ErrorCode.topic_authorization_failed)
    member_id = request.member_id
    if b.version == 0 and not member_id and request.member_epoch == 0:
        member_id = str(uuid.uuid4())  # v0: the coordinator names new members
    rebalance = request.rebalance_timeout
    beat = ConsumerHeartbeatRequest(
        group_id=request.group_id, member_id=member_id, member_epoch=int(request.member_epoch),
        instance_id=request.instance_id, rack_id=request.rack_id,
        rebalance_timeout_ms=int(rebalance.total_seconds() * 1000),
        subscribed_topic_names=(None if request.subscribed_topic_names is None
                                else tuple(request.subscribed_topic_names)),
        subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
        server_assignor=request.server_assignor, owned=_owned(request),
        client_id=ctx.client_id or "", client_host=ctx.client_host,
        topics=topics_snapshot(broker, ctx if ctx.authorizer is not None else None))
    try:
        result = await broker.groups.write(
            beat.group_id, lambda core, now_ms: core.consumer_heartbeat(beat, now_ms))
    except CoordinatorError as exc:
        result = ConsumerHeartbeatResult(exc.error, None, None, 0, 0)
    assignment = None
    if result.assignment is not None:
        assignment = b.make("Assignment", topic_partitions=tuple(
            b.make("TopicPartitions", topic_id=t, partitions=ps) for t, ps in result.assignment))
    return b.make("ConsumerGroupHeartbeatResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode(result.error), error_message=result.error_message,
                  member_id=result.member_id, member_epoch=result.member_epoch,
                  heartbeat_interval=timedelta(milliseconds=result.heartbeat_interval_ms),
                  assignment=assignment)


def _assignment(broker: Broker, b: ResponseBuilder, ids: TopicPartitionIds) -> Any:
    parts = []
    for topic_id, partitions in ids:
        info = broker.engine.topic_by_id(topic_id)
        parts.append(b.make("TopicPartitions", topic_id=topic_id,
                            topic_name="" if info is None else info.name,
                            partitions=partitions))
    return b.make("Assignment", topic_partitions=tuple(parts))


@api(69, "ConsumerGroupDescribe", (0, 1), "states Empty/Assigning/Reconciling/Stable; "
     "GROUP_ID_NOT_FOUND for unknown and classic groups")
async def handle_consumer_group_describe(broker: Broker, ctx: RequestContext, request: Any,
                                         b: ResponseBuilder) -> Any:
    groups = []
    for group in described_consumer_groups(broker, ctx, list(request.group_ids)):
        operations = OPERATIONS_OMITTED
        if request.include_authorized_operations and group.error == ErrorCode.none:
            operations = operations_or(ctx, ResourceType.GROUP, group.group_id,
                                       GROUP_OPERATIONS)
        members = tuple(
            b.make("Member", member_id=m.member_id, instance_id=m.instance_id,
                   rack_id=m.rack_id, member_epoch=m.member_epoch, client_id=m.client_id,
                   client_host=m.client_host, subscribed_topic_names=m.subscribed_topic_names,
                   subscribed_topic_regex=m.subscribed_topic_regex,
                   assignment=_assignment(broker, b, m.assignment),
                   target_assignment=_assignment(broker, b, m.target_assignment),
                   member_type=1)
            for m in group.members)
        groups.append(b.make(
            "DescribedGroup", error_code=ErrorCode(group.error), error_message=group.error_message,
            group_id=group.group_id, group_state=group.state, group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch, assignor_name=group.assignor_name,
            members=members, authorized_operations=operations))
    return b.make("ConsumerGroupDescribeResponse", throttle_time=NO_THROTTLE,
                  groups=tuple(groups))


def refused_group(group_id: str, error: ErrorCode, message: str | None
                  ) -> ConsumerGroupDescription:
    return ConsumerGroupDescription(group_id, error, message, "", 0, 0, "", ())


def described_consumer_groups(broker: Broker, ctx: RequestContext, group_ids: list[str]
                              ) -> list[ConsumerGroupDescription]:
    """`consumer_describe` of the groups the principal may DESCRIBE, the others refused with
    GROUP_AUTHORIZATION_FAILED; with an authorizer, a group assigning a topic the principal may
    not DESCRIBE is refused with TOPIC_AUTHORIZATION_FAILED (Kafka's KafkaApis)."""
    allowed = [g for g in dict.fromkeys(group_ids) if group_allowed(ctx, Operation.DESCRIBE, g)]
    described = {d.group_id: d for d in consumer_describe(broker, allowed)}
    out = []
    for group_id in group_ids:
        group = described.get(group_id)
        if group is None:
            group = refused_group(group_id, ErrorCode.group_authorization_failed, None)
        elif ctx.authorizer is not None and hides_topics(broker, ctx, group):
            group = refused_group(group_id, ErrorCode.topic_authorization_failed,
                                  UNAUTHORIZED_TOPICS_MESSAGE)
        out.append(group)
    return out


def hides_topics(broker: Broker, ctx: RequestContext, group: ConsumerGroupDescription) -> bool:
    """Whether a member's assignment or target assignment holds a topic the principal may not
    DESCRIBE (topics deleted since are not named, so not checked)."""
    ids = {topic_id for m in group.members for assigned in (m.assignment, m.target_assignment)
           for topic_id, _ in assigned}
    names = {info.name for info in map(broker.engine.topic_by_id, ids) if info is not None}
    return any(not topic_allowed(ctx, Operation.DESCRIBE, name) for name in names)


def consumer_describe(broker: Broker, group_ids: list[str]) -> list[ConsumerGroupDescription]:
    """Each group described by its shard, in request order; a shard not served describes
    its groups with its error."""
    described: dict[str, ConsumerGroupDescription] = {}
    for ids in broker.groups.by_shard(group_ids).values():
        try:
            described.update((d.group_id, d)
                             for d in broker.groups.core(ids[0]).consumer_describe(ids))
        except CoordinatorError as exc:
            described.update((g, ConsumerGroupDescription(g, exc.error, None, "", -1, -1, "",
                                                          ())) for g in ids)
    return [described[g] for g in group_ids]
