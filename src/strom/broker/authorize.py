"""What handlers ask the authorizer, in Kafka's words (KafkaApis' authHelper): may this
request's principal do an operation on a topic, a group, a transactional id or the cluster;
and the authorized_operations bit field a describe answer carries.

Without an authorizer every check passes and authorized_operations is everything the resource
supports (strom.broker.operations), as Kafka answers without one.
"""

from __future__ import annotations

from strom.broker.state import RequestContext
from strom.security.acl import CLUSTER_NAME, Operation, ResourceType


def topic_allowed(ctx: RequestContext, operation: Operation, topic: str) -> bool:
    return ctx.allowed(operation, ResourceType.TOPIC, topic)


def group_allowed(ctx: RequestContext, operation: Operation, group: str) -> bool:
    return ctx.allowed(operation, ResourceType.GROUP, group)


def transactional_id_allowed(ctx: RequestContext, operation: Operation, txn_id: str) -> bool:
    return ctx.allowed(operation, ResourceType.TRANSACTIONAL_ID, txn_id)


def cluster_allowed(ctx: RequestContext, operation: Operation) -> bool:
    return ctx.allowed(operation, ResourceType.CLUSTER, CLUSTER_NAME)


def operations_or(ctx: RequestContext, resource_type: ResourceType, name: str,
                  everything: int) -> int:
    """The resource's authorized_operations: the authorizer's, or `everything` (the bit set
    a broker without an authorizer answers) when there is none."""
    found = ctx.operations(resource_type, name)
    return everything if found is None else found
