"""Produce (0): validate each partition's batch, append it, answer per acks.

Internal topics are written by their coordinators only: a client's batch for one is refused
with INVALID_TOPIC_EXCEPTION and no message, as Kafka's ReplicaManager.appendToLocalLog does.
A storage failure is answered KAFKA_STORAGE_ERROR with a fixed message, one for a full disk
(the partition takes writes again once space is freed) and one for other failures (offline
until restart); the detail (which names files) goes to the broker's log only. An acks=all
produce to a partition with fewer in-sync replicas than its min.insync.replicas is refused
with NOT_ENOUGH_REPLICAS (retriable) before anything is appended, as Kafka's
Partition.appendRecordsToLeader does (docs/cluster.md: which replicas are in sync).

With an authorizer, as Kafka's KafkaApis.handleProduceRequest: a request carrying
transactional batches needs WRITE on its transactional id (none, or not allowed: every
partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing is appended); each topic
needs WRITE (TOPIC_AUTHORIZATION_FAILED for its partitions, nothing appended to them), checked
before whether the topic exists. An idempotent producer's IDEMPOTENT_WRITE is checked by
InitProducerId only, as in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from kio.serial.readers import tz_aware_from_i64
from kio.static.primitive import i64

from strom.broker.authorize import topic_allowed, transactional_id_allowed
from strom.broker.errors import CloseConnection
from strom.broker.leadership import current_leader, leadership, node_endpoints, not_led_here
from strom.broker.placement import REQUEST_PLACED, Placements
from strom.broker.registry import api
from strom.broker.schema_catalog import (
    FETCH_KEY,
    FETCH_VERSIONS,
    SCHEMAS_TOPIC,
    LogSource,
    PeerSource,
    SchemaCatalog,
    fetch_request,
)
from strom.broker.schema_validation import SchemaValidator
from strom.broker.state import Broker, RequestContext
from strom.broker.txn_verification import produce_error, verify_in_transaction
from strom.config.topic import LogConfig
from strom.coordinator.internal_topics import is_internal
from strom.protocol.batch_header import (
    ATTRIBUTES_OFFSET,
    MAGIC_OFFSET,
    TRANSACTIONAL_MASK,
)
from strom.protocol.client import PeerUnavailable
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.protocol.records import RecordsError, ValidatedBatch, validate_produce_records
from strom.security.acl import Operation
from strom.storage.api import (
    AppendBatch,
    Duplicate,
    Leadership,
    LogDirFull,
    NotLeader,
    OutcomeUnknown,
    PartitionLog,
    Placed,
    ProduceOutcome,
    Rejected,
    StorageError,
    StorageUnavailable,
    UnknownTopic,
)
from strom.storage.producer_state import VerificationGuard

log = logging.getLogger(__name__)

VALID_ACKS: Final = (-1, 0, 1)
# Errors.KAFKA_STORAGE_ERROR's message, and what strom's LogDirFailure means for the client.
STORAGE_ERROR_MESSAGE: Final = ("Disk error when trying to access log file on the disk; the "
                                "partition is offline until the broker restarts.")
UNAVAILABLE_MESSAGE: Final = ("The storage did not answer (its database is down or "
                              "unreachable); nothing was appended: retry.")
# OutcomeUnknown: Kafka's answer for a write that may have been persisted, so that an
# idempotent producer retries the same sequence numbers instead of starting over.
UNKNOWN_OUTCOME_MESSAGE: Final = ("The storage lost the answer to this write: it may have "
                                  "been written; retry (a retry of a written batch is "
                                  "recognised as a duplicate).")
# LogDirFull: the same error code (retriable), but the partition recovers by itself.
NO_SPACE_MESSAGE: Final = ("The broker's disk is full; the partition takes writes again "
                           "once space is freed (retriable).")
# The topic validates records against the schema registry and `_schemas` could not be read.
SCHEMAS_UNREADABLE: Final = ("The schema registry's _schemas topic could not be read to "
                             "validate the records; nothing was appended: retry.")


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    error: ErrorCode
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    message: str | None = None
    record_errors: tuple[tuple[int, str], ...] = ()
    leader: Leadership | None = None  # NOT_LEADER_OR_FOLLOWER: who leads (KIP-951)


def leader_refusal(broker: Broker, topic: str, index: int, acks: int, min_insync: int
                   ) -> PartitionOutcome | None:
    """NOT_LEADER_OR_FOLLOWER (with the leader, KIP-951) if another broker leads the
    partition; then Partition.appendRecordsToLeader's check for acks=all: the in-sync
    replicas (those Metadata reports: the leader and the live brokers next in line, as many
    as the replication factor) must be at least min.insync.replicas."""
    elsewhere = not_led_here(broker, topic, index)
    if elsewhere is not None:
        return PartitionOutcome(ErrorCode.not_leader_or_follower, leader=elsewhere)
    found = leadership(broker, topic, index)
    if acks != -1 or found is None or len(found.replicas) >= min_insync:
        return None
    isr = ", ".join(str(n) for n in found.replicas)
    return PartitionOutcome(ErrorCode.not_enough_replicas, message=(
        f"The size of the current ISR Set({isr}) is insufficient to satisfy the min.isr "
        f"requirement of {min_insync} for partition {topic}-{index}"))


async def append_partition(broker: Broker, topic: str, index: int, records: bytes | None,
                           produce_version: int, transactional_id: str | None = None,
                           placed: Placed | None = None, acks: int = 1) -> PartitionOutcome:
    if is_internal(topic):
        return PartitionOutcome(ErrorCode.invalid_topic_exception)
    try:
        plog = broker.engine.partition(topic, index)
    except UnknownTopic:
        return PartitionOutcome(ErrorCode.unknown_topic_or_partition)
    cfg = broker.engine.log_config(topic)
    refused = leader_refusal(broker, topic, index, acks, cfg.min_insync_replicas)
    if refused is not None:
        return refused
    now_ms = int(time.time() * 1000)
    batches = await validated_batches(broker, topic, cfg, records, produce_version, now_ms)
    if isinstance(batches, PartitionOutcome):
        return batches
    appends = [AppendBatch(v.data, v.record_count, v.header.max_timestamp,
                           v.header.base_timestamp) for v in batches]
    verification, early = await verify_transaction(broker, transactional_id, plog, topic,
                                                   index, batches)
    if early is not None:
        return early
    try:
        outcome = await plog.produce(appends, verification, placed)
    except NotLeader:
        return PartitionOutcome(ErrorCode.not_leader_or_follower,
                                leader=leadership(broker, topic, index))
    except StorageError as exc:
        failure = storage_failure(exc, topic, index)
        if failure.error == ErrorCode.kafka_storage_error and broker.meter is not None:
            broker.meter.storage_error("append")
        return failure
    return answer_outcome(broker, topic, index, outcome,
                          now_ms if cfg.message_timestamp_type == "LogAppendTime" else -1)


async def validated_batches(broker: Broker, topic: str, cfg: LogConfig, records: bytes | None,
                            produce_version: int, now_ms: int
                            ) -> list[ValidatedBatch] | PartitionOutcome:
    """The partition's batch checked as Kafka's LogValidator does, then against the schema
    registry if the topic asks (confluent.key/value.schema.validation); or the refusal."""
    max_decompressed = broker.config.get_int("message.max.decompressed.bytes")
    try:
        batches = validate_produce_records(
            records or b"", max_message_bytes=cfg.max_message_bytes,
            timestamp_type=cfg.message_timestamp_type, now_ms=now_ms,
            timestamp_before_max_ms=cfg.message_timestamp_before_max_ms,
            timestamp_after_max_ms=cfg.message_timestamp_after_max_ms,
            max_decompressed_bytes=max_decompressed,
            require_keys="compact" in cfg.cleanup_policy,
            produce_version=produce_version,
        )
        if cfg.schema_validation:  # the one check a topic without validation pays
            refused = await schema_validator(broker).check(topic, cfg, batches,
                                                           max_decompressed)
            if refused is not None:
                raise refused
    except RecordsError as exc:
        return PartitionOutcome(ErrorCode(exc.error_code), message=exc.message,
                                record_errors=exc.record_errors)
    except StorageError as exc:  # `_schemas` could not be read for the first time
        log.debug("schema validation of %s: %s", topic, exc)
        return PartitionOutcome(ErrorCode.kafka_storage_error, message=SCHEMAS_UNREADABLE)
    return batches


def schema_validator(broker: Broker) -> SchemaValidator:
    """The broker's validator against the schema registry's `_schemas`, made on first use:
    `_schemas` is read from the engine, or on a cluster where the engine cannot read it here,
    from its leader."""
    validator = broker.schema_validator
    if validator is None:
        engine = broker.engine

        def leader() -> int | None:
            found = leadership(broker, SCHEMAS_TOPIC, 0)
            return None if found is None else found.leader

        async def fetch(node_id: int, offset: int) -> Any:
            try:
                return await broker.peers.send(node_id, FETCH_KEY,
                                               lambda b: fetch_request(b, offset),
                                               max_version=FETCH_VERSIONS[1],
                                               min_version=FETCH_VERSIONS[0])
            except PeerUnavailable as exc:
                raise StorageUnavailable(f"fetching {SCHEMAS_TOPIC}: {exc}") from None

        source = PeerSource(LogSource(lambda: engine.partition(SCHEMAS_TOPIC, 0)), leader, fetch)
        validator = broker.schema_validator = SchemaValidator(SchemaCatalog(source))
    return validator


def answer_outcome(broker: Broker, topic: str, index: int, outcome: ProduceOutcome,
                   append_time_ms: int) -> PartitionOutcome:
    """The partition's answer to the engine's outcome (`append_time_ms`: -1 unless the topic
    uses LogAppendTime)."""
    if isinstance(outcome, Rejected):
        return PartitionOutcome(ErrorCode(outcome.error_code), message=outcome.message)
    if isinstance(outcome, Duplicate):
        return PartitionOutcome(ErrorCode.none, outcome.base_offset,
                                outcome.timestamp if append_time_ms >= 0 else -1,
                                outcome.log_start_offset)
    return PartitionOutcome(ErrorCode.none, outcome.base_offset, append_time_ms,
                            outcome.log_start_offset)


def storage_failure(exc: StorageError, topic: str, index: int) -> PartitionOutcome:
    """The answer for an append the engine could not make."""
    if isinstance(exc, NotLeader):
        return PartitionOutcome(ErrorCode.not_leader_or_follower)
    if isinstance(exc, OutcomeUnknown):  # it may have been written: "possibly persisted"
        log.debug("append to %s-%d: outcome unknown: %s", topic, index, exc)
        return PartitionOutcome(ErrorCode.request_timed_out, message=UNKNOWN_OUTCOME_MESSAGE)
    if isinstance(exc, StorageUnavailable):  # logged once per outage by the engine
        log.debug("append to %s-%d refused: %s", topic, index, exc)
        return PartitionOutcome(ErrorCode.kafka_storage_error, message=UNAVAILABLE_MESSAGE)
    if isinstance(exc, LogDirFull):  # logged by the engine once per episode
        return PartitionOutcome(ErrorCode.kafka_storage_error, message=NO_SPACE_MESSAGE)
    log.error("append to %s-%d failed: %s", topic, index, exc)
    return PartitionOutcome(ErrorCode.kafka_storage_error, message=STORAGE_ERROR_MESSAGE)


async def verify_transaction(broker: Broker, transactional_id: str | None, plog: PartitionLog,
                             topic: str, index: int, batches: list[ValidatedBatch]
                             ) -> tuple[VerificationGuard | None, PartitionOutcome | None]:
    """KIP-890 part 1 for transactional batches: the partition's verification guard is taken
    first, then the transaction coordinator must confirm that the partition is in the
    producer's ongoing transaction, so that a late write of a transaction that already ended
    cannot land in the next one (a hanging transaction); the engine appends only if the
    guard is still current. A coordinator on this broker answers without suspending, one on
    another broker over the network (broker/txn_verification.py). Returns (guard, None), or
    (None, the refusal)."""
    guard = None
    for v in batches:
        h = v.header
        if not h.is_transactional:
            continue
        if transactional_id is None:
            return None, PartitionOutcome(
                ErrorCode.invalid_txn_state,
                message="a transactional batch in a produce request without a transactional id")
        guard = plog.producer_state.start_verification(h.producer_id)
        error = produce_error(await verify_in_transaction(
            broker, transactional_id, h.producer_id, h.producer_epoch, [(topic, index)]))
        if error:
            plog.producer_state.end_verification(h.producer_id, guard)
            return None, PartitionOutcome(
                error,
                message=f"{topic}-{index} is not part of an ongoing transaction of producer "
                        f"{h.producer_id} (epoch {h.producer_epoch}) for {transactional_id!r}")
    return guard, None


def partition_response(b: ResponseBuilder, index: int, outcome: PartitionOutcome) -> Any:
    append_time = (None if outcome.log_append_time_ms < 0
                   else tz_aware_from_i64(i64(outcome.log_append_time_ms)))
    return b.make("PartitionProduceResponse", index=index, error_code=outcome.error,
                  base_offset=outcome.base_offset, log_append_time=append_time,
                  log_start_offset=outcome.log_start_offset,
                  record_errors=tuple(
                      b.make("BatchIndexAndErrorMessage", batch_index=i,
                             batch_index_error_message=text)
                      for i, text in outcome.record_errors
                      if b.has_class("BatchIndexAndErrorMessage")),
                  error_message=outcome.message,
                  **({"current_leader": current_leader(b, outcome.leader)}
                     if outcome.leader is not None and b.has_class("LeaderIdAndEpoch")
                     else {}))


def first_batch_transactional(records: bytes | None) -> bool:
    """Whether a partition's first batch is a transactional v2 batch (Kafka's
    RequestUtils.hasTransactionalRecords looks at each partition's first batch)."""
    if not records or len(records) <= ATTRIBUTES_OFFSET + 1 or records[MAGIC_OFFSET] != 2:
        return False
    return bool(records[ATTRIBUTES_OFFSET + 1] & TRANSACTIONAL_MASK)


def topic_refusals(ctx: RequestContext, request: Any, names: list[str | None]
                   ) -> list[ErrorCode | None] | None:
    """Per topic of the request, the error its partitions get instead of an append, or None
    when nothing is refused (no authorizer: no work at all). A topic unknown by id is left to
    the append (UNKNOWN_TOPIC_ID)."""
    if ctx.authorizer is None:
        return None
    if any(first_batch_transactional(p.records)
           for t in request.topic_data for p in t.partition_data):
        txn_id = request.transactional_id
        if txn_id is None or not transactional_id_allowed(ctx, Operation.WRITE, txn_id):
            return [ErrorCode.transactional_id_authorization_failed] * len(names)
    return [None if name is None or topic_allowed(ctx, Operation.WRITE, name)
            else ErrorCode.topic_authorization_failed for name in names]


async def partition_outcome(broker: Broker, b: ResponseBuilder, name: str | None, part: Any,
                            acks: int, transactional_id: str | None,
                            placed: Placed | None, refused: ErrorCode | None = None
                            ) -> PartitionOutcome:
    try:
        if refused is not None:
            return PartitionOutcome(refused)
        if acks not in VALID_ACKS:
            return PartitionOutcome(ErrorCode.invalid_required_acks)
        if name is None:
            return PartitionOutcome(ErrorCode.unknown_topic_id)
        return await append_partition(broker, name, part.index, part.records, b.version,
                                      transactional_id, placed, acks)
    finally:
        if placed is not None:
            placed()  # nothing placed, or already: done either way


async def produce_all(broker: Broker, ctx: RequestContext, b: ResponseBuilder, request: Any,
                      acks: int) -> tuple[tuple[Any, ...], set[int]]:
    """Every partition's append, started in request order and awaited together, so that a
    request's partitions wait for their writes (a PostgreSQL commit, an fsync) at once, not
    one after another. Each append is ordered in its partition before the next starts: an
    engine's produce takes its offsets before its first wait. Returns the topics' answers and
    the leaders named in them (KIP-951)."""
    names = [broker.resolve_topic(getattr(t, "name", None), getattr(t, "topic_id", None))
             for t in request.topic_data]
    refusals = topic_refusals(ctx, request, names) or [None] * len(names)
    parts = [(name, part, refused)
             for name, t, refused in zip(names, request.topic_data, refusals, strict=True)
             for part in t.partition_data]
    request_placed = REQUEST_PLACED.get()
    placements = None if request_placed is None else Placements(len(parts), request_placed)
    work = [partition_outcome(broker, b, name, part, acks, request.transactional_id,
                              None if placements is None else placements.one(), refused)
            for name, part, refused in parts]
    results = [await work[0]] if len(work) == 1 else await asyncio.gather(*work)
    outcomes = iter(results)
    topics = tuple(
        b.make("TopicProduceResponse", name=name or "", topic_id=getattr(t, "topic_id", None),
               partition_responses=tuple(partition_response(b, part.index, next(outcomes))
                                         for part in t.partition_data))
        for name, t in zip(names, request.topic_data, strict=True))
    leaders = {o.leader.leader for o in results
               if o.leader is not None and o.leader.leader is not None}
    return topics, leaders


@api(0, "Produce", (3, 12),
     "acks 0/1/-1 (-1: NOT_ENOUGH_REPLICAS below min.insync.replicas in-sync replicas); "
     "one v2 batch per partition; idempotent and transactional batches "
     "(partition verified in the transaction, KIP-890 part 1); v0-v2 advertised but refused "
     "(KAFKA-18659); internal topics refused (INVALID_TOPIC_EXCEPTION)",
     advertised_min_version=0)
async def handle_produce(broker: Broker, ctx: RequestContext, request: Any,
                         b: ResponseBuilder) -> Any:
    acks = int(request.acks)
    topics, leaders = await produce_all(broker, ctx, b, request, acks)
    if acks == 0:
        failed = [p.error_code for t in topics for p in t.partition_responses if p.error_code]
        if failed:
            # The client waits for no answer, so Kafka closes the connection to make it
            # refresh its metadata and notice (KafkaApis.handleProduceRequest).
            raise CloseConnection(f"Produce with acks=0 failed: {ErrorCode(failed[0]).name}")
        return None
    endpoints = (await node_endpoints(broker, b, leaders, ctx.session.listener)
                 if b.has("ProduceResponse", "node_endpoints") else ())
    return b.make("ProduceResponse", responses=topics, throttle_time=NO_THROTTLE,
                  node_endpoints=endpoints)
