"""ElectLeaders (43), AlterPartitionReassignments (45), ListPartitionReassignments (46) and
AlterReplicaLogDirs (34): where replicas live and which one leads, with the answers, order of
checks, error codes and messages of Kafka (the KRaft controller's ReplicationControlManager for
the first three, ReplicaManager.alterReplicaLogDirs for the last) on a cluster of one broker.

On one broker every partition has one replica, this broker, which is its preferred leader and
its leader, in the one log directory: an election is never needed, the only valid reassignment
is to the current replica set (a no-op, as in Kafka), so no reassignment is ever in progress,
and a replica can only "move" to the directory it is already in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from strom.broker.errors import ApiError
from strom.broker.handlers.topics import check_replicas, live_node_ids
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.storage.api import StorageError, UnknownTopic

ELECTION_PREFERRED: Final = 0
ELECTION_UNCLEAN: Final = 1
NO_REASSIGNMENT: Final = "No partition reassignment is in progress."
# UnifiedLog.logFutureDirName: "<topic>-<partition>.<32 hex digits>-future" must fit a file name.
FUTURE_DIR_NAME_MAX: Final = 255
FUTURE_DIR_SUFFIX_LENGTH: Final = len(".") + 32 + len("-future")


def partition_count(broker: Broker, topic: str) -> int | None:
    info = broker.engine.topics().get(topic)
    return None if info is None else info.partitions


# --- ElectLeaders ----------------------------------------------------------------------------


def election_result(broker: Broker, topic: str, partition: int) -> tuple[ErrorCode, str | None]:
    """ReplicationControlManager.electLeader: the preferred replica (the only one) already
    leads, and the partition has a leader, so neither election is needed."""
    count = partition_count(broker, topic)
    if count is None:
        return ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"
    if not 0 <= partition < count:
        return ErrorCode.unknown_topic_or_partition, f"No such partition as {topic}-{partition}"
    return ErrorCode.election_not_needed, None


def election_results(broker: Broker, b: ResponseBuilder, request: Any) -> tuple[Any, ...]:
    if request.topic_partitions is None:
        # Every partition of every topic; those that need no election are left out.
        return tuple(b.make("ReplicaElectionResult", topic=name, partition_result=())
                     for name in sorted(broker.engine.topics()))
    results = []
    for topic in request.topic_partitions:
        partitions = []
        for partition in topic.partitions:
            error, message = election_result(broker, str(topic.topic), int(partition))
            partitions.append(b.make("PartitionResult", partition_id=partition,
                                     error_code=error, error_message=message))
        results.append(b.make("ReplicaElectionResult", topic=topic.topic,
                              partition_result=tuple(partitions)))
    return tuple(results)


def failed_election(b: ResponseBuilder, request: Any, error: ErrorCode, message: str) -> Any:
    """ElectLeadersRequest.getErrorResponse: every requested partition carries the error."""
    results = tuple(
        b.make("ReplicaElectionResult", topic=topic.topic, partition_result=tuple(
            b.make("PartitionResult", partition_id=p, error_code=error, error_message=message)
            for p in topic.partitions))
        for topic in request.topic_partitions or ())
    return b.make("ElectLeadersResponse", throttle_time=NO_THROTTLE, error_code=error,
                  replica_election_results=results)


@api(43, "ElectLeaders", (0, 2), "preferred and unclean elections: every partition's one "
     "replica already leads (ELECTION_NOT_NEEDED); null partitions elect all and list none")
async def handle_elect_leaders(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    election = int(getattr(request, "election_type", ELECTION_PREFERRED))
    if election not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
        return failed_election(b, request, ErrorCode.invalid_request,
                               f"Unknown election type {election}")
    return b.make("ElectLeadersResponse", throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                  replica_election_results=election_results(broker, b, request))


# --- AlterPartitionReassignments, ListPartitionReassignments ---------------------------------


async def reassignment_error(broker: Broker, topic: str, target: Any
                             ) -> tuple[ErrorCode, str | None]:
    """ReplicationControlManager.alterPartitionReassignment for one partition: a valid
    target pins the partition's lease to its first live broker (then the next), which takes
    it within a heartbeat; nothing is copied (the storage holds the data), so no
    reassignment stays in progress."""
    count = partition_count(broker, topic)
    index = int(target.partition_index)
    if count is None:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {topic}."
    if not 0 <= index < count:
        return (ErrorCode.unknown_topic_or_partition,
                f"Unable to find partition {topic}:{index}.")
    if target.replicas is None:  # a cancellation
        return ErrorCode.no_reassignment_in_progress, NO_REASSIGNMENT
    try:
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


@api(45, "AlterPartitionReassignments", (0, 1), "moves a partition's lease to the first live "
     "broker of the target (at once: no data is copied); cancelling answers "
     "NO_REASSIGNMENT_IN_PROGRESS; brokers not live INVALID_REPLICA_ASSIGNMENT")
async def handle_alter_partition_reassignments(broker: Broker, ctx: RequestContext,
                                               request: Any, b: ResponseBuilder) -> Any:
    responses = []
    for topic in request.topics:
        partitions = []
        for target in topic.partitions:
            error, message = await reassignment_error(broker, str(topic.name), target)
            partitions.append(b.make("ReassignablePartitionResponse",
                                     partition_index=target.partition_index,
                                     error_code=error, error_message=message))
        responses.append(b.make("ReassignableTopicResponse", name=topic.name,
                                partitions=tuple(partitions)))
    return b.make("AlterPartitionReassignmentsResponse", throttle_time=NO_THROTTLE,
                  allow_replication_factor_change=getattr(
                      request, "allow_replication_factor_change", True),
                  error_code=ErrorCode.none, error_message=None, responses=tuple(responses))


@api(46, "ListPartitionReassignments", (0, 0),
     "no reassignment is ever in progress: an empty list")
async def handle_list_partition_reassignments(broker: Broker, ctx: RequestContext,
                                              request: Any, b: ResponseBuilder) -> Any:
    # Kafka lists only partitions with a reassignment in progress and skips unknown topics;
    # AlterPartitionReassignments never starts one here.
    return b.make("ListPartitionReassignmentsResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, error_message=None, topics=())


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


@api(34, "AlterReplicaLogDirs", (1, 2), "one log directory: a replica is already in it; "
     "any other path is LOG_DIR_NOT_FOUND, an unknown partition REPLICA_NOT_AVAILABLE")
async def handle_alter_replica_log_dirs(broker: Broker, ctx: RequestContext, request: Any,
                                        b: ResponseBuilder) -> Any:
    results = tuple(
        b.make("AlterReplicaLogDirTopicResult", topic_name=topic, partitions=tuple(
            b.make("AlterReplicaLogDirPartitionResult", partition_index=partition,
                   error_code=move_error(broker, topic, partition, path))
            for partition, path in partitions))
        for topic, partitions in by_topic(requested_moves(request)))
    return b.make("AlterReplicaLogDirsResponse", throttle_time=NO_THROTTLE, results=results)
