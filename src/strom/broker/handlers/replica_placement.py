"""ElectLeaders (43), AlterPartitionReassignments (45), ListPartitionReassignments (46) and
AlterReplicaLogDirs (34): where replicas live and which one leads, with the answers, order of
checks, error codes and messages of Kafka (the KRaft controller's ReplicationControlManager for
the first three, ReplicaManager.alterReplicaLogDirs for the last).

A partition is led by the broker holding its lease; where the lease belongs (the engine's
`assignment`) is Kafka's preferred leader: the first broker a reassignment pinned it to, else
the one the balanced placement gives it (docs/cluster.md). An election moves the lease there
now instead of at the holder's next heartbeat; a reassignment pins it and completes as soon as
the lease moves (the storage holds the data: nothing is copied), so it is listed as in
progress only until then. On one broker every partition has one replica, this broker, which
is its preferred leader and its leader: an election is never needed, the only valid
reassignment is to that broker (a no-op, as in Kafka), and a replica can only "move" to the
directory it is already in.

With an authorizer, as Kafka: ElectLeaders, AlterPartitionReassignments and AlterReplicaLogDirs
need ALTER on the cluster, ListPartitionReassignments DESCRIBE; a request refused changes
nothing and is answered CLUSTER_AUTHORIZATION_FAILED the way the request's getErrorResponse
answers (at the top and on every partition it names, where the response has room for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from strom.broker.authorize import cluster_allowed
from strom.broker.errors import ApiError
from strom.broker.handlers.topics import check_replicas, live_node_ids
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import StorageError, UnknownTopic

ELECTION_PREFERRED: Final = 0
ELECTION_UNCLEAN: Final = 1
NO_REASSIGNMENT: Final = "No partition reassignment is in progress."
# Errors' default messages, which Kafka's `new ApiError(error)` puts on the partition's row.
PREFERRED_UNAVAILABLE: Final = "The preferred leader was not available."
ELIGIBLE_UNAVAILABLE: Final = "Eligible topic partition leaders are not available."
# UnifiedLog.logFutureDirName: "<topic>-<partition>.<32 hex digits>-future" must fit a file name.
FUTURE_DIR_NAME_MAX: Final = 255
FUTURE_DIR_SUFFIX_LENGTH: Final = len(".") + 32 + len("-future")


def cluster_refusal(ctx: RequestContext, operation: Operation, api_name: str) -> str | None:
    """The message of a request refused for want of `operation` on the cluster (Kafka's
    ClusterAuthorizationException from authorizeClusterOperation), or None if allowed."""
    if cluster_allowed(ctx, operation):
        return None
    return f"Request {api_name} from {ctx.session.principal} is not authorized."


def partition_count(broker: Broker, topic: str) -> int | None:
    info = broker.engine.topics().get(topic)
    return None if info is None else info.partitions


# --- ElectLeaders ----------------------------------------------------------------------------


def election_result(broker: Broker, topic: str, partition: int, election: int
                    ) -> tuple[ErrorCode, str | None]:
    """ReplicationControlManager.electLeader for one partition: NONE when the lease has to
    move (the caller then wakes the brokers to move it), ELECTION_NOT_NEEDED when the
    preferred broker already leads (PREFERRED) or any broker does (UNCLEAN)."""
    count = partition_count(broker, topic)
    if count is None:
        return ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"
    if not 0 <= partition < count:
        return ErrorCode.unknown_topic_or_partition, f"No such partition as {topic}-{partition}"
    try:
        leader = broker.engine.leadership(topic, partition).leader
        placed = broker.engine.assignment(topic, partition)
    except UnknownTopic:  # deleted meanwhile
        return ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"
    if election == ELECTION_PREFERRED:
        if leader is not None and leader == placed.preferred:
            return ErrorCode.election_not_needed, None
        if placed.preferred is None or placed.preferred != placed.target:  # not live
            return ErrorCode.preferred_leader_not_available, PREFERRED_UNAVAILABLE
        return ErrorCode.none, None
    if leader is not None:
        return ErrorCode.election_not_needed, None
    if placed.target is None:
        return ErrorCode.eligible_leaders_not_available, ELIGIBLE_UNAVAILABLE
    return ErrorCode.none, None


def requested_elections(broker: Broker, request: Any) -> list[tuple[str, list[int], bool]]:
    """(topic, partitions, whether partitions that need no election are left out): every
    partition of every topic for null topic_partitions (leaving those out, as Kafka does)."""
    if request.topic_partitions is None:
        topics = broker.engine.topics()
        return [(name, list(range(topics[name].partitions)), True) for name in sorted(topics)]
    return [(str(t.topic), [int(p) for p in t.partitions], False)
            for t in request.topic_partitions]


def election_results(broker: Broker, b: ResponseBuilder, request: Any, election: int
                     ) -> tuple[tuple[Any, ...], bool]:
    """The answer's results, and whether any lease has to move."""
    results, moves = [], False
    for topic, indexes, only_needed in requested_elections(broker, request):
        partitions = []
        for index in indexes:
            error, message = election_result(broker, topic, index, election)
            moves |= error == ErrorCode.none
            if only_needed and error == ErrorCode.election_not_needed:
                continue
            partitions.append(b.make("PartitionResult", partition_id=index, error_code=error,
                                     error_message=message))
        results.append(b.make("ReplicaElectionResult", topic=topic,
                              partition_result=tuple(partitions)))
    return tuple(results), moves


def failed_election(b: ResponseBuilder, request: Any, error: ErrorCode, message: str) -> Any:
    """ElectLeadersRequest.getErrorResponse: every requested partition carries the error."""
    results = tuple(
        b.make("ReplicaElectionResult", topic=topic.topic, partition_result=tuple(
            b.make("PartitionResult", partition_id=p, error_code=error, error_message=message)
            for p in topic.partitions))
        for topic in request.topic_partitions or ())
    return b.make("ElectLeadersResponse", throttle_time=NO_THROTTLE, error_code=error,
                  replica_election_results=results)


@api(43, "ElectLeaders", (0, 2), "preferred: the lease moves to where it belongs (the first "
     "broker of a pin, else the balanced one), ELECTION_NOT_NEEDED if it is there, "
     "PREFERRED_LEADER_NOT_AVAILABLE if that broker is down; unclean: ELECTION_NOT_NEEDED "
     "while any broker leads; null partitions elect all and list those that needed it")
async def handle_elect_leaders(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    refused = cluster_refusal(ctx, Operation.ALTER, "ElectLeaders")
    if refused is not None:
        return failed_election(b, request, ErrorCode.cluster_authorization_failed, refused)
    election = int(getattr(request, "election_type", ELECTION_PREFERRED))
    if election not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
        return failed_election(b, request, ErrorCode.invalid_request,
                               f"Unknown election type {election}")
    results, moves = election_results(broker, b, request, election)
    if moves:  # the election is decided; the leases move at once, not at the next heartbeat
        await broker.engine.rebalance()
    return b.make("ElectLeadersResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                  replica_election_results=results)


# --- AlterPartitionReassignments, ListPartitionReassignments ---------------------------------


async def cancellation_error(broker: Broker, topic: str, index: int
                             ) -> tuple[ErrorCode, str | None]:
    """A cancellation (null replicas) gives a pinned partition back to the balanced
    placement, whether its lease has reached the pin's broker yet or not."""
    if broker.engine.assignment(topic, index).pinned is None:
        return ErrorCode.no_reassignment_in_progress, NO_REASSIGNMENT
    await broker.engine.reassign(topic, index, None)
    return ErrorCode.none, None


async def reassignment_error(broker: Broker, topic: str, target: Any
                             ) -> tuple[ErrorCode, str | None]:
    """ReplicationControlManager.alterPartitionReassignment for one partition: a valid
    target pins the partition's lease to its first live broker (then the next), which takes
    it within a heartbeat; nothing is copied (the storage holds the data)."""
    count = partition_count(broker, topic)
    index = int(target.partition_index)
    if count is None:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {topic}."
    if not 0 <= index < count:
        return (ErrorCode.unknown_topic_or_partition,
                f"Unable to find partition {topic}:{index}.")
    try:
        if target.replicas is None:
            return await cancellation_error(broker, topic, index)
        check_replicas(await live_node_ids(broker), target.replicas, None)
        await broker.engine.reassign(topic, index, [int(n) for n in target.replicas])
    except ApiError as refused:
        return refused.code, refused.message
    except ValueError as exc:  # a broker left meanwhile
        return ErrorCode.invalid_replica_assignment, str(exc)
    except UnknownTopic:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {topic}."
    except StorageError as exc:
        return ErrorCode.unknown_server_error, str(exc)
    return ErrorCode.none, None


@api(45, "AlterPartitionReassignments", (0, 1), "pins a partition's lease to the first live "
     "broker of the target, which takes it within a heartbeat (no data is copied); "
     "cancelling gives a pinned partition back to the balanced placement, else "
     "NO_REASSIGNMENT_IN_PROGRESS; brokers not live INVALID_REPLICA_ASSIGNMENT")
async def handle_alter_partition_reassignments(broker: Broker, ctx: RequestContext,
                                               request: Any, b: ResponseBuilder) -> Any:
    refused = cluster_refusal(ctx, Operation.ALTER, "AlterPartitionReassignments")
    responses = []
    for topic in request.topics:
        partitions = []
        for target in topic.partitions:
            error: ErrorCode
            message: str | None
            if refused is not None:  # AlterPartitionReassignmentsRequest.getErrorResponse
                error, message = ErrorCode.cluster_authorization_failed, refused
            else:
                error, message = await reassignment_error(broker, str(topic.name), target)
            partitions.append(b.make("ReassignablePartitionResponse",
                                     partition_index=target.partition_index,
                                     error_code=error, error_message=message))
        responses.append(b.make("ReassignableTopicResponse", name=topic.name,
                                partitions=tuple(partitions)))
    return b.make("AlterPartitionReassignmentsResponse", throttle_time=NO_THROTTLE,
                  allow_replication_factor_change=getattr(
                      request, "allow_replication_factor_change", True),
                  error_code=(ErrorCode.none if refused is None
                              else ErrorCode.cluster_authorization_failed),
                  error_message=refused, responses=tuple(responses))


def ongoing_reassignment(broker: Broker, b: ResponseBuilder, topic: str, index: int
                         ) -> Any | None:
    """A pinned partition whose lease has not reached the pin's first live broker yet (or
    none of whose pinned brokers is live), with Kafka's fields: the target replicas then the
    current ones leaving, those being added and those being removed
    (ReplicationControlManager.getOngoingPartitionReassignment)."""
    try:
        placed = broker.engine.assignment(topic, index)
        found = broker.engine.leadership(topic, index)
    except UnknownTopic:
        return None
    if placed.pinned is None:
        return None
    if found.leader is not None and found.leader == placed.target \
            and placed.target in placed.pinned:
        return None
    target, current = list(placed.pinned), list(found.replicas)
    return b.make("OngoingPartitionReassignment", partition_index=index,
                  replicas=tuple(target + [n for n in current if n not in target]),
                  adding_replicas=tuple(n for n in target if n not in current),
                  removing_replicas=tuple(n for n in current if n not in target))


def requested_listings(broker: Broker, request: Any) -> list[tuple[str, list[int]]]:
    """Every partition of every topic for null topics; unknown topics are skipped."""
    topics = broker.engine.topics()
    if request.topics is None:
        return [(name, list(range(topics[name].partitions))) for name in sorted(topics)]
    return [(str(t.name), [int(p) for p in t.partition_indexes])
            for t in request.topics if str(t.name) in topics]


@api(46, "ListPartitionReassignments", (0, 0), "pinned partitions whose lease has not "
     "reached the pin's broker yet (a reassignment completes as the lease moves)")
async def handle_list_partition_reassignments(broker: Broker, ctx: RequestContext,
                                              request: Any, b: ResponseBuilder) -> Any:
    refused = cluster_refusal(ctx, Operation.DESCRIBE, "ListPartitionReassignments")
    if refused is not None:
        return b.make("ListPartitionReassignmentsResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.cluster_authorization_failed, error_message=refused,
                      topics=())
    topics = []
    for topic, indexes in requested_listings(broker, request):
        ongoing = [found for index in indexes
                   if (found := ongoing_reassignment(broker, b, topic, index)) is not None]
        if ongoing:  # Kafka lists only topics with a reassignment in progress
            topics.append(b.make("OngoingTopicReassignment", name=topic,
                                 partitions=tuple(ongoing)))
    return b.make("ListPartitionReassignmentsResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, error_message=None, topics=tuple(topics))


# --- AlterReplicaLogDirs ---------------------------------------------------------------------


def requested_moves(request: Any) -> dict[tuple[str, int], str]:
    """AlterReplicaLogDirsRequest.partitionDirs: a partition named twice goes to the last dir."""
    moves: dict[tuple[str, int], str] = {}
    for target in request.dirs:
        for topic in target.topics:
            for partition in topic.partitions:
                moves[(str(topic.name), int(partition))] = str(target.path)
    return moves


def move_error(broker: Broker, topic: str, partition: int, path: str) -> ErrorCode:
    """ReplicaManager.alterReplicaLogDirs for one partition."""
    if len(f"{topic}-{partition}") + FUTURE_DIR_SUFFIX_LENGTH > FUTURE_DIR_NAME_MAX:
        return ErrorCode.invalid_topic_exception
    if path != broker.config.log_dir:
        return ErrorCode.log_dir_not_found
    count = partition_count(broker, topic)
    if count is None or not 0 <= partition < count:
        return ErrorCode.replica_not_available  # Kafka keeps this code for compatibility
    return ErrorCode.none  # already in that directory


def by_topic(moves: dict[tuple[str, int], str]) -> Iterator[tuple[str, list[tuple[int, str]]]]:
    topics: dict[str, list[tuple[int, str]]] = {}
    for (topic, partition), path in moves.items():
        topics.setdefault(topic, []).append((partition, path))
    yield from topics.items()


def refused_moves(b: ResponseBuilder, request: Any) -> tuple[Any, ...]:
    """AlterReplicaLogDirsRequest.getErrorResponse: CLUSTER_AUTHORIZATION_FAILED on every
    partition, per directory and topic as the request names them."""
    return tuple(
        b.make("AlterReplicaLogDirTopicResult", topic_name=topic.name, partitions=tuple(
            b.make("AlterReplicaLogDirPartitionResult", partition_index=partition,
                   error_code=ErrorCode.cluster_authorization_failed)
            for partition in topic.partitions))
        for target in request.dirs for topic in target.topics)


@api(34, "AlterReplicaLogDirs", (1, 2), "one log directory: a replica is already in it; "
     "any other path is LOG_DIR_NOT_FOUND, an unknown partition REPLICA_NOT_AVAILABLE")
async def handle_alter_replica_log_dirs(broker: Broker, ctx: RequestContext, request: Any,
                                        b: ResponseBuilder) -> Any:
    if not cluster_allowed(ctx, Operation.ALTER):
        return b.make("AlterReplicaLogDirsResponse", throttle_time=NO_THROTTLE,
                      results=refused_moves(b, request))
    results = tuple(
        b.make("AlterReplicaLogDirTopicResult", topic_name=topic, partitions=tuple(
            b.make("AlterReplicaLogDirPartitionResult", partition_index=partition,
                   error_code=move_error(broker, topic, partition, path))
            for partition, path in partitions))
        for topic, partitions in by_topic(requested_moves(request)))
    return b.make("AlterReplicaLogDirsResponse", throttle_time=NO_THROTTLE, results=results)
