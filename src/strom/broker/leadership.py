"""Who leads a partition, as handlers answer it: leader epochs checked against the request's
(KIP-320), and the new leader named when this broker is not it (KIP-951).

A request for a partition this broker does not lead gets NOT_LEADER_OR_FOLLOWER; from Produce
v10 and Fetch v12 the answer also carries the partition's current leader and epoch, and (Produce
v10, Fetch v16) the leader's endpoint, so that clients go there without a Metadata round trip.
A request naming a leader epoch older than the partition's gets FENCED_LEADER_EPOCH (the client
has stale metadata), a newer one UNKNOWN_LEADER_EPOCH (this broker has not caught up yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from strom.broker.state import Broker
from strom.protocol.messages import ErrorCode, ResponseBuilder
from strom.storage.api import BrokerRegistration, Leadership, NotLeader, StorageError, UnknownTopic


def leadership(broker: Broker, topic: str, index: int) -> Leadership | None:
    """None for a partition that does not exist."""
    try:
        return broker.engine.leadership(topic, index)
    except UnknownTopic:
        return None


def leader_epoch_error(requested: int, current: int) -> ErrorCode | None:
    """The error for a request's current_leader_epoch (-1: the client does not say)."""
    if requested < 0 or requested == current:
        return None
    if requested > current:
        return ErrorCode.unknown_leader_epoch
    return ErrorCode.fenced_leader_epoch


def leader_check(broker: Broker, topic: str, index: int, requested_epoch: int
                 ) -> tuple[ErrorCode | None, Leadership]:
    """(the error, if any, for a request about the partition naming `requested_epoch` as its
    current leader epoch, and the partition's leadership), in Kafka's order: the epoch is
    checked first, then whether this broker leads. Raises UnknownTopic."""
    found = broker.engine.leadership(topic, index)
    error = leader_epoch_error(requested_epoch, found.epoch)
    if error is None and found.leader != broker.node_id:
        error = ErrorCode.not_leader_or_follower
    return error, found


def not_led_here(broker: Broker, topic: str, index: int) -> Leadership | None:
    """The partition's leadership if another broker (or none) leads it, None if this one
    does (or the partition does not exist)."""
    found = leadership(broker, topic, index)
    if found is None or found.leader == broker.node_id:
        return None
    return found


def current_leader(b: ResponseBuilder, found: Leadership | None) -> Any:
    """The LeaderIdAndEpoch of a partition's answer (-1/-1 when not known)."""
    leader = -1 if found is None or found.leader is None else found.leader
    epoch = -1 if found is None else found.epoch
    return b.make("LeaderIdAndEpoch", leader_id=leader, leader_epoch=epoch)


async def node_endpoints(broker: Broker, b: ResponseBuilder, nodes: Iterable[int],
                         listener: str) -> tuple[Any, ...]:
    """The NodeEndpoint of each live broker among `nodes` on `listener` (KIP-951)."""
    wanted = set(nodes)
    if not wanted:
        return ()
    endpoints = []
    for r in await broker.engine.brokers():
        if r.node_id in wanted:
            host, port = r.endpoint(listener)
            endpoints.append(b.make("NodeEndpoint", node_id=r.node_id, host=host, port=port,
                                    rack=r.rack))
    return tuple(endpoints)


def storage_error(exc: StorageError) -> ErrorCode:
    """The answer for a partition whose read failed: deleted, moved, or storage trouble."""
    if isinstance(exc, UnknownTopic):
        return ErrorCode.unknown_topic_or_partition
    if isinstance(exc, NotLeader):
        return ErrorCode.not_leader_or_follower
    return ErrorCode.kafka_storage_error


def controller_id(broker: Broker, live: Sequence[BrokerRegistration]) -> int:
    """The cluster has no controller (the database decides): the lowest live node id is
    named, so that admin clients that send requests "to the controller" reach a broker."""
    return min((r.node_id for r in live), default=broker.node_id)


def partition_fields(broker: Broker, topic: str, index: int) -> dict[str, Any]:
    """A partition's entry in Metadata and DescribeTopicPartitions: its leader (the broker
    holding its lease; -1 and LEADER_NOT_AVAILABLE while none does), leader epoch, and
    replicas: the leader, then the brokers next in line for its lease, all in sync (the
    storage replicates; docs/cluster.md)."""
    found = leadership(broker, topic, index)
    if found is None:  # deleted meanwhile
        return dict(error_code=ErrorCode.unknown_topic_or_partition, partition_index=index,
                    leader_id=-1, leader_epoch=-1, replica_nodes=(), isr_nodes=(),
                    offline_replicas=())
    return dict(error_code=(ErrorCode.none if found.leader is not None
                            else ErrorCode.leader_not_available),
                partition_index=index, leader_id=-1 if found.leader is None else found.leader,
                leader_epoch=found.epoch, replica_nodes=found.replicas,
                isr_nodes=found.replicas, offline_replicas=())
