"""CreateTopics (19), DeleteTopics (20) and CreatePartitions (37), with the checks, order of
checks, error codes and messages of Kafka's KRaft controller (ControllerApis and
ReplicationControlManager) for a cluster of one broker.

Internal topics belong to their coordinators: clients cannot create, delete or grow them
(coordinator/internal_topics.py). Each topic's check and change run under its lock
(broker/topic_locks.py), so concurrent requests on one topic each get their own answer.

With an authorizer, as Kafka's ControllerApis: CreateTopics needs CREATE on the cluster or on
each topic (else TOPIC_AUTHORIZATION_FAILED, "Authorization failed.", and the topic is not
created), and answers a created topic's configs, partition count and replication factor only
to a principal with DESCRIBE_CONFIGS on it (else topic_config_error_code
TOPIC_AUTHORIZATION_FAILED); DeleteTopics needs DELETE on the cluster or on each topic, and a
topic the principal may not DESCRIBE is refused before anything tells whether it exists (by
id: without its name); CreatePartitions needs ALTER on each topic.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from strom.broker.authorize import cluster_allowed, topic_allowed
from strom.broker.errors import ApiError, unexpected
from strom.broker.handlers.configs import topic_config_views
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext, topic_name_error
from strom.config.topic import ConfigError, validate_topic_configs
from strom.coordinator.internal_topics import (
    CLUSTER_METADATA_TOPIC,
    creation_refusal,
    deletion_refusal,
    growth_refusal,
)
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation
from strom.storage.api import StorageError, TopicExists, TopicInfo, UnknownTopic

ZERO_UUID: Final = uuid.UUID(int=0)
# ReplicationControlManager.MAX_PARTITIONS_PER_BATCH: more in one request is a policy violation.
MAX_PARTITIONS_PER_BATCH: Final = 10_000
DUPLICATE_NAME: Final = "Duplicate topic name."
# KIP-599: the versions that know THROTTLING_QUOTA_EXCEEDED (older ones are only throttled).
STRICT_MUTATIONS: Final = {19: 6, 20: 5, 37: 3}
THROTTLED: Final = "The throttling quota has been exceeded."
# What a client is told when the broker's files fail it; the detail goes to the broker's log.
STORAGE_FAILURE: Final = "The broker could not write the topic's files; see the broker's log."
# ControllerApis' messages for a topic the principal may not create, or delete (the latter is
# Errors.TOPIC_AUTHORIZATION_FAILED's own message); CreatePartitions' refusal has none.
CREATE_REFUSED: Final = "Authorization failed."
TOPIC_REFUSED: Final = "Topic authorization failed."

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    name: str | None
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    topic_id: uuid.UUID = ZERO_UUID
    partitions: int = -1
    replication: int = -1
    overrides: dict[str, str] = field(default_factory=dict)
    config_error: ErrorCode = ErrorCode.none  # the principal may not see the configs

    def hide_configs(self) -> None:
        """A created topic whose configs the principal may not DESCRIBE_CONFIGS: no configs,
        partition count or replication factor, as ReplicationControlManager answers."""
        self.partitions = self.replication = -1
        self.overrides = {}
        self.config_error = ErrorCode.topic_authorization_failed


def _collides(a: str, b: str) -> bool:
    return a != b and a.replace(".", "_") == b.replace(".", "_")


def duplicates(names: Iterable[str | None]) -> set[str]:
    return {n for n, count in Counter(names).items() if count > 1 and n is not None}


# --- manual replica assignments --------------------------------------------------------------


async def live_node_ids(broker: Broker) -> set[int]:
    """The live brokers' node ids, this one's always among them (it is answering)."""
    return {broker.node_id} | {r.node_id for r in await broker.engine.brokers()}


def check_replicas(live: Collection[int], replicas: Iterable[int], replication: int | None
                   ) -> None:
    """ReplicationControlManager.validateManualPartitionAssignment over the live brokers."""
    ids = sorted(int(r) for r in replicas)
    if not ids:
        raise ApiError(ErrorCode.invalid_replica_assignment,
                      "The manual partition assignment includes an empty replica list.")
    previous = None
    for broker_id in ids:
        if broker_id not in live:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                          f"The manual partition assignment includes broker {broker_id}, "
                          "but no such broker is registered.")
        if broker_id == previous:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                          f"The manual partition assignment includes the broker {previous} "
                          "more than once.")
        previous = broker_id
    if replication is not None and len(ids) != replication:
        raise ApiError(ErrorCode.invalid_replica_assignment,
                      f"The manual partition assignment includes a partition with {len(ids)} "
                      "replica(s), but this is not consistent with previous partitions, which "
                      f"have {replication} replica(s).")


def assigned_layout(live: Collection[int], topic: Any) -> tuple[int, int]:
    """(partitions, replication factor) of a topic created with manual assignments."""
    if int(topic.replication_factor) != -1:
        raise ApiError(ErrorCode.invalid_request, "A manual partition assignment was specified, "
                      "but replication factor was not set to -1.")
    if int(topic.num_partitions) != -1:
        raise ApiError(ErrorCode.invalid_request, "A manual partition assignment was specified, "
                      "but numPartitions was not set to -1.")
    seen: set[int] = set()
    replication: int | None = None
    for assignment in topic.assignments:
        index = int(assignment.partition_index)
        if index in seen:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                          f"Found multiple manual partition assignments for partition {index}")
        check_replicas(live, assignment.broker_ids, replication)
        replication = len(assignment.broker_ids)
        seen.add(index)
    if seen != set(range(len(seen))):
        raise ApiError(ErrorCode.invalid_replica_assignment,
                      "partitions should be a consecutive 0-based integer sequence")
    return len(seen), replication or 1


def default_layout(broker: Broker, topic: Any, live: Collection[int]) -> tuple[int, int]:
    requested_rf = int(topic.replication_factor)
    requested_partitions = int(topic.num_partitions)
    if requested_rf < -1 or requested_rf == 0:
        raise ApiError(ErrorCode.invalid_replication_factor,
                      "Replication factor must be larger than 0, or -1 to use the default value.")
    if requested_partitions < -1 or requested_partitions == 0:
        raise ApiError(ErrorCode.invalid_partitions,
                      "Number of partitions was set to an invalid non-positive value.")
    partitions = (broker.config.get_int("num.partitions") if requested_partitions == -1
                  else requested_partitions)
    replication = (broker.config.get_int("default.replication.factor") if requested_rf == -1
                   else requested_rf)
    if replication > len(live):
        raise ApiError(ErrorCode.invalid_replication_factor,
                      f"Unable to replicate the partition {replication} time(s): The target "
                      f"replication factor of {replication} cannot be reached because only "
                      f"{len(live)} broker(s) are registered.")
    return partitions, replication


# --- CreateTopics ----------------------------------------------------------------------------


def requested_partition_total(broker: Broker, topics: Iterable[Any]) -> int:
    total = 0
    for topic in topics:
        if topic.assignments:
            total += len(topic.assignments)
        elif int(topic.num_partitions) == -1:
            total += broker.config.get_int("num.partitions")
        elif int(topic.num_partitions) > 0:
            total += int(topic.num_partitions)
    return total


def check_new_name(broker: Broker, name: str) -> None:
    existing = broker.engine.topics()
    if name in existing:
        raise ApiError(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.")
    error = topic_name_error(name)
    if error is not None:
        raise ApiError(ErrorCode.invalid_topic_exception, error)
    if "." in name or "_" in name:
        for other in existing:
            if _collides(name, other):
                raise ApiError(ErrorCode.invalid_topic_exception,
                              f"Topic '{name}' collides with existing topic: {other}")


def requested_configs(topic: Any) -> dict[str, str]:
    nulls = [c.name for c in topic.configs if c.value is None]
    if nulls:
        raise ApiError(ErrorCode.invalid_config,
                      "Null value not supported for topic configs: " + ",".join(nulls))
    try:
        return validate_topic_configs({c.name: c.value for c in topic.configs})
    except ConfigError as exc:
        raise ApiError(ErrorCode.invalid_config, str(exc)) from None


async def create_one(broker: Broker, topic: Any, validate_only: bool) -> Outcome:
    async with broker.topic_locks.hold(str(topic.name)):
        return await _create_one(broker, topic, validate_only)


async def _create_one(broker: Broker, topic: Any, validate_only: bool) -> Outcome:
    name = str(topic.name)
    check_new_name(broker, name)
    refusal = creation_refusal(name)
    if refusal is not None:
        raise ApiError(ErrorCode.invalid_request, refusal)
    overrides = requested_configs(topic)
    live = await live_node_ids(broker)
    if topic.assignments:
        partitions, replication = assigned_layout(live, topic)
    else:
        partitions, replication = default_layout(broker, topic, live)
    outcome = Outcome(name, topic_id=uuid.uuid4(), partitions=partitions,
                      replication=replication, overrides=overrides)
    if validate_only:
        return outcome  # Kafka answers validate-only with the id it would have used
    try:
        info = await broker.engine.create_topic(name, partitions, overrides, replication)
        await assign(broker, name, 0, topic.assignments or ())
    except TopicExists:
        raise ApiError(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.") from None
    except ValueError as exc:  # a count the engine cannot name directories for
        raise ApiError(ErrorCode.invalid_partitions, str(exc)) from None
    except (StorageError, OSError):
        log.exception("creating topic %s failed", name)
        raise ApiError(ErrorCode.unknown_server_error, STORAGE_FAILURE) from None
    outcome.topic_id = info.topic_id
    return outcome


async def assign(broker: Broker, name: str, first: int, assignments: Iterable[Any]) -> None:
    """Manual assignments: each partition's lease goes to its first listed broker (its
    preferred leader), then the next."""
    for offset, assignment in enumerate(assignments):
        await broker.engine.reassign(name, first + offset,
                                     [int(n) for n in assignment.broker_ids])


def created_result(broker: Broker, b: ResponseBuilder, outcome: Outcome) -> Any:
    configs: tuple[Any, ...] = ()
    if (outcome.error == ErrorCode.none and outcome.config_error == ErrorCode.none
            and b.has("CreatableTopicResult", "configs")):
        configs = tuple(
            b.make("CreatableTopicConfigs", name=view.name, value=view.value, read_only=False,
                   config_source=view.source, is_sensitive=False)
            for view in topic_config_views(broker.config, outcome.overrides)
        )
    return b.make("CreatableTopicResult", name=outcome.name, topic_id=outcome.topic_id,
                  error_code=outcome.error, error_message=outcome.message,
                  topic_config_error_code=outcome.config_error,
                  num_partitions=outcome.partitions,
                  replication_factor=outcome.replication, configs=configs)


def refused_creations(ctx: RequestContext, topics: Iterable[Any]) -> list[str]:
    """The topics the principal may not create (CREATE on the cluster allows all), in request
    order; the cluster metadata topic is refused anyway, so not asked about."""
    if ctx.authorizer is None or cluster_allowed(ctx, Operation.CREATE):
        return []
    return [str(t.name) for t in topics if t.name != CLUSTER_METADATA_TOPIC
            and not topic_allowed(ctx, Operation.CREATE, str(t.name))]


async def create_allowed(broker: Broker, ctx: RequestContext, topics: Iterable[Any],
                         validate_only: bool) -> list[Outcome]:
    outcomes = []
    budget = broker.quotas.mutations(ctx.session, ctx.client_id or "",
                                     strict=ctx.api_version >= STRICT_MUTATIONS[19])
    for topic in topics:
        if topic.name == CLUSTER_METADATA_TOPIC:
            continue
        if budget.exceeded():
            outcomes.append(Outcome(topic.name, ErrorCode.throttling_quota_exceeded,
                                    THROTTLED))
            continue
        try:
            outcome = await create_one(broker, topic, validate_only)
            if outcome.error == ErrorCode.none and not validate_only:
                created = broker.engine.topics().get(str(topic.name))
                budget.record(0 if created is None else created.partitions)
        except ApiError as refusal:
            outcome = Outcome(topic.name, refusal.code, refusal.message)
        except Exception:
            outcome = Outcome(topic.name, unexpected(f"creating topic {topic.name}").code)
        if outcome.error == ErrorCode.none and not topic_allowed(
                ctx, Operation.DESCRIBE_CONFIGS, str(topic.name)):
            outcome.hide_configs()
        outcomes.append(outcome)
    return outcomes


async def create_all(broker: Broker, ctx: RequestContext, request: Any) -> list[Outcome]:
    topics = list(request.topics)
    dups = duplicates(t.name for t in topics)
    unique = [t for t in topics if t.name not in dups]
    refused = refused_creations(ctx, unique)
    allowed = [t for t in unique if t.name not in refused]
    if requested_partition_total(broker, allowed) > MAX_PARTITIONS_PER_BATCH:
        return [Outcome(t.name, ErrorCode.policy_violation,
                        "Excessively large number of partitions per request.") for t in topics]
    outcomes = await create_allowed(broker, ctx, allowed, bool(request.validate_only))
    outcomes.extend(Outcome(name, ErrorCode.invalid_request, DUPLICATE_NAME)
                    for name in sorted(dups))
    outcomes.extend(Outcome(name, ErrorCode.topic_authorization_failed, CREATE_REFUSED)
                    for name in refused)
    if any(t.name == CLUSTER_METADATA_TOPIC for t in unique):
        outcomes.append(Outcome(CLUSTER_METADATA_TOPIC, ErrorCode.invalid_request,
                                f"Creation of internal topic {CLUSTER_METADATA_TOPIC} is "
                                "prohibited."))
    return outcomes


@api(19, "CreateTopics", (2, 7),
     "validate_only, manual assignments on this broker, topic configs; v5+ returns configs; "
     "internal topics are created by their coordinators only")
async def handle_create_topics(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    outcomes = await create_all(broker, ctx, request)
    return b.make("CreateTopicsResponse", throttle_time=NO_THROTTLE,
                  topics=tuple(created_result(broker, b, o) for o in outcomes))


# --- DeleteTopics ----------------------------------------------------------------------------


def delete_targets(request: Any) -> list[tuple[str | None, uuid.UUID]]:
    if getattr(request, "topics", None) is not None:
        return [(t.name, t.topic_id or ZERO_UUID) for t in request.topics]
    return [(name, ZERO_UUID) for name in request.topic_names]


class DeleteAccess:
    """Which topics the principal may describe and delete (ControllerApis.deleteTopics): all
    of them with DELETE on the cluster."""

    __slots__ = ("cluster", "ctx")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.cluster = ctx.authorizer is None or cluster_allowed(ctx, Operation.DELETE)

    def describable(self, name: str) -> bool:
        return self.cluster or topic_allowed(self.ctx, Operation.DESCRIBE, name)

    def deletable(self, name: str) -> bool:
        return self.cluster or topic_allowed(self.ctx, Operation.DELETE, name)


def resolve_target(broker: Broker, access: DeleteAccess, name: str | None, topic_id: uuid.UUID,
                   dup_names: set[str], dup_ids: set[uuid.UUID]) -> Outcome:
    if name is None and topic_id == ZERO_UUID:
        return Outcome(None, ErrorCode.invalid_request,
                       "Neither topic name nor id were specified.")
    if name is not None and topic_id != ZERO_UUID:
        return Outcome(name, ErrorCode.invalid_request,
                       "You may not specify both topic name and topic id.", topic_id)
    if name is not None:
        return resolve_name(broker, access, name, dup_names)
    return resolve_id(broker, access, topic_id, dup_ids)


def resolve_name(broker: Broker, access: DeleteAccess, name: str, dup_names: set[str]
                 ) -> Outcome:
    if name in dup_names:
        return Outcome(name, ErrorCode.invalid_request, DUPLICATE_NAME)
    if not access.describable(name):  # whether it exists is not told
        return Outcome(name, ErrorCode.topic_authorization_failed, TOPIC_REFUSED)
    info = broker.engine.topics().get(name)
    if info is None:
        return Outcome(name, ErrorCode.unknown_topic_or_partition,
                       "This server does not host this topic-partition.")
    if not access.deletable(name):
        return Outcome(name, ErrorCode.topic_authorization_failed, TOPIC_REFUSED)
    return refused_deletion(Outcome(name, topic_id=info.topic_id))


def resolve_id(broker: Broker, access: DeleteAccess, topic_id: uuid.UUID,
               dup_ids: set[uuid.UUID]) -> Outcome:
    if topic_id in dup_ids:
        return Outcome(None, ErrorCode.invalid_request, "Duplicate topic id.", topic_id)
    found = broker.engine.topic_by_id(topic_id)
    if found is None:
        return Outcome(None, ErrorCode.unknown_topic_id, "This server does not host this topic ID.",
                       topic_id)
    if not access.deletable(found.name):  # the name only to who may describe the topic
        return Outcome(found.name if access.describable(found.name) else None,
                       ErrorCode.topic_authorization_failed, TOPIC_REFUSED, topic_id)
    return refused_deletion(Outcome(found.name, topic_id=topic_id))


def refused_deletion(outcome: Outcome) -> Outcome:
    """The outcome with INVALID_TOPIC_EXCEPTION if its topic is internal."""
    refusal = None if outcome.name is None else deletion_refusal(outcome.name)
    if refusal is not None:
        outcome.error, outcome.message = ErrorCode.invalid_topic_exception, refusal
    return outcome


async def delete_resolved(broker: Broker, outcome: Outcome) -> None:
    assert outcome.name is not None
    try:
        async with broker.topic_locks.hold(outcome.name):
            await broker.engine.delete_topic(outcome.name)
    except UnknownTopic:
        outcome.error = ErrorCode.unknown_topic_or_partition
        outcome.message = "This server does not host this topic-partition."
    except (StorageError, OSError):
        log.exception("deleting topic %s failed", outcome.name)
        outcome.error, outcome.message = ErrorCode.unknown_server_error, STORAGE_FAILURE
    except Exception:
        outcome.error = unexpected(f"deleting topic {outcome.name}").code


async def delete_all(broker: Broker, ctx: RequestContext, request: Any) -> list[Outcome]:
    targets = delete_targets(request)
    dup_names = duplicates(name for name, tid in targets if tid == ZERO_UUID)
    dup_ids = {tid for tid, n in Counter(t for name, t in targets if name is None).items()
               if n > 1 and tid != ZERO_UUID}
    access = DeleteAccess(ctx)
    outcomes: list[Outcome] = []
    reported: set[tuple[str | None, uuid.UUID]] = set()
    for name, topic_id in targets:
        if (name, topic_id) in reported and (name in dup_names or topic_id in dup_ids):
            continue  # one answer per duplicated name or id, as Kafka
        reported.add((name, topic_id))
        outcomes.append(resolve_target(broker, access, name, topic_id, dup_names, dup_ids))
    # A name and an id that resolve to the same topic: Kafka refuses the name.
    by_id: dict[uuid.UUID, Outcome] = {}
    for outcome in outcomes:
        if outcome.error != ErrorCode.none:
            continue
        if outcome.topic_id in by_id:
            outcome.error = ErrorCode.invalid_request
            outcome.message = "The provided topic name maps to an ID that was already supplied."
            by_id[outcome.topic_id].error = ErrorCode.invalid_request
            by_id[outcome.topic_id].message = outcome.message
            continue
        by_id[outcome.topic_id] = outcome
    budget = broker.quotas.mutations(ctx.session, ctx.client_id or "",
                                     strict=ctx.api_version >= STRICT_MUTATIONS[20])
    for outcome in by_id.values():
        if outcome.error == ErrorCode.none:
            if budget.exceeded():
                outcome.error, outcome.message = ErrorCode.throttling_quota_exceeded, THROTTLED
                continue
            doomed = broker.engine.topics().get(outcome.name or "")
            await delete_resolved(broker, outcome)
            if outcome.error == ErrorCode.none and doomed is not None:
                budget.record(doomed.partitions)
    return outcomes


@api(20, "DeleteTopics", (1, 6), "by name, or by topic id (v6); internal topics refused")
async def handle_delete_topics(broker: Broker, ctx: RequestContext, request: Any,
                               b: ResponseBuilder) -> Any:
    outcomes = await delete_all(broker, ctx, request)
    responses = tuple(
        b.make("DeletableTopicResult", name=o.name, topic_id=o.topic_id, error_code=o.error,
               error_message=o.message)
        for o in outcomes
    )
    return b.make("DeleteTopicsResponse", throttle_time=NO_THROTTLE, responses=responses)


# --- CreatePartitions ------------------------------------------------------------------------


def check_growth(broker: Broker, topic: Any, live: Collection[int]) -> TopicInfo:
    """ReplicationControlManager.createPartitions' checks; the topic as it is now."""
    name = str(topic.name)
    info = broker.engine.topics().get(name)
    if info is None:
        raise ApiError(ErrorCode.unknown_topic_or_partition,
                      "This server does not host this topic-partition.")
    refusal = growth_refusal(name)
    if refusal is not None:
        raise ApiError(ErrorCode.invalid_partitions, refusal)
    count = int(topic.count)
    if count == info.partitions:
        raise ApiError(ErrorCode.invalid_partitions,
                      f"Topic already has {info.partitions} partition(s).")
    if count < info.partitions:
        raise ApiError(ErrorCode.invalid_partitions,
                      f"The topic {name} currently has {info.partitions} partition(s); {count} "
                      "would not be an increase.")
    additional = count - info.partitions
    if topic.assignments is not None:
        if len(topic.assignments) != additional:
            raise ApiError(ErrorCode.invalid_replica_assignment,
                          f"Attempted to add {additional} additional partition(s), but only "
                          f"{len(topic.assignments)} assignment(s) were specified.")
        for assignment in topic.assignments:
            check_replicas(live, assignment.broker_ids, info.replication_factor)
    if additional > MAX_PARTITIONS_PER_BATCH:
        raise ApiError(ErrorCode.policy_violation,
                      "Excessively large number of partitions per request.")
    return info


async def grow_topic(broker: Broker, topic: Any, validate_only: bool) -> None:
    async with broker.topic_locks.hold(str(topic.name)):
        info = check_growth(broker, topic, await live_node_ids(broker))
        if validate_only:
            return
        try:
            await broker.engine.create_partitions(info.name, int(topic.count))
            await assign(broker, info.name, info.partitions, topic.assignments or ())
        except UnknownTopic:
            raise ApiError(ErrorCode.unknown_topic_or_partition,
                          "This server does not host this topic-partition.") from None
        except ValueError as exc:
            raise ApiError(ErrorCode.invalid_partitions, str(exc)) from None
        except (StorageError, OSError):
            log.exception("adding partitions to topic %s failed", info.name)
            raise ApiError(ErrorCode.unknown_server_error, STORAGE_FAILURE) from None


@api(37, "CreatePartitions", (0, 3), "grows a topic; validate_only; assignments on this broker; "
     "internal topics refused")
async def handle_create_partitions(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    topics = list(request.topics)
    dups = duplicates(t.name for t in topics)
    results = [b.make("CreatePartitionsTopicResult", name=name,
                      error_code=ErrorCode.invalid_request, error_message=DUPLICATE_NAME)
               for name in sorted(dups)]
    budget = broker.quotas.mutations(ctx.session, ctx.client_id or "",
                                     strict=ctx.api_version >= STRICT_MUTATIONS[37])
    for topic in topics:
        if topic.name in dups:
            continue
        error, message = ErrorCode.none, None
        try:
            if not topic_allowed(ctx, Operation.ALTER, str(topic.name)):
                raise ApiError(ErrorCode.topic_authorization_failed, None)
            if budget.exceeded():
                raise ApiError(ErrorCode.throttling_quota_exceeded, THROTTLED)
            before = broker.engine.topics().get(str(topic.name))
            await grow_topic(broker, topic, bool(request.validate_only))
            if before is not None and not request.validate_only:
                budget.record(int(topic.count) - before.partitions)
        except ApiError as refusal:
            error, message = refusal.code, refusal.message
        except Exception:
            error = unexpected(f"adding partitions to {topic.name}").code
        results.append(b.make("CreatePartitionsTopicResult", name=topic.name, error_code=error,
                              error_message=message))
    return b.make("CreatePartitionsResponse", throttle_time=NO_THROTTLE, results=tuple(results))
