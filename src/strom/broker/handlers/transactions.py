"""Transactions: AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn (26), WriteTxnMarkers (27),
DescribeTransactions (65), ListTransactions (66); InitProducerId with a transactional id is in
producer_ids.py, TxnOffsetCommit in txn_offset_commit.py.

Each handler maps its request version onto the core (strom.coordinator.transaction) through
the TransactionRuntime, which appends the core's records to `__transaction_state` before the
answer and writes the markers after it. Clients older than KIP-588 (InitProducerId < v4,
AddPartitionsToTxn / AddOffsetsToTxn / EndTxn < v2) do not know PRODUCER_FENCED and get
INVALID_PRODUCER_EPOCH instead, as from Kafka.

Authorization, as Kafka's KafkaApis: AddPartitionsToTxn from clients (v3 and below) needs WRITE
on the transactional id and on each topic (an internal topic never: TOPIC_AUTHORIZATION_FAILED),
from brokers (v4+) CLUSTER_ACTION on the cluster; AddOffsetsToTxn WRITE on the transactional
id, then READ on the group; EndTxn WRITE on the transactional id; WriteTxnMarkers ALTER or
CLUSTER_ACTION on the cluster; DescribeTransactions DESCRIBE per transactional id (and only the
partitions of topics the principal may DESCRIBE); ListTransactions lists the ids the principal
may DESCRIBE.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final, TypeVar

from kio.serial.readers import tz_aware_from_i64
from kio.static.primitive import i64

from strom.broker.authorize import (
    cluster_allowed,
    group_allowed,
    topic_allowed,
    transactional_id_allowed,
)
from strom.broker.coordinator_runtime import CoordinatorError
from strom.broker.peers import peer_node_id
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.broker.txn_markers import WRITE_TXN_MARKERS_VERSIONS, TxnMarker, write_local_marker
from strom.broker.txn_runtime import TxnOp
from strom.coordinator.internal_topics import INTERNAL_TOPICS
from strom.coordinator.transaction import AddPartitionsResult, EndTxnResult
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation

T = TypeVar("T")

# EndTxn v5 is transaction version 2 (KIP-890 part 2): the end bumps the producer epoch.
END_TXN_BUMPS_FROM: Final = 5


def fenced_as(error: int, version: int, knows_fenced_from: int) -> ErrorCode:
    """PRODUCER_FENCED for clients that know it, INVALID_PRODUCER_EPOCH for older ones."""
    if error == ErrorCode.producer_fenced and version < knows_fenced_from:
        return ErrorCode.invalid_producer_epoch
    return ErrorCode(error)


async def call(broker: Broker, transactional_id: str, op: TxnOp[T],
               failed: Callable[[int], T]) -> T:
    """Runs a core call on the id's shard; `failed(error)` if the shard cannot serve it
    (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ...)."""
    try:
        return await broker.transactions.write(transactional_id, op)
    except CoordinatorError as exc:
        return failed(exc.error)


# -- AddPartitionsToTxn ---------------------------------------------------------------------

def refused_partitions(broker: Broker, ctx: RequestContext | None,
                       wanted: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The partitions that fail the request (Kafka's handleAddPartitionsToTransaction, in its
    order): TOPIC_AUTHORIZATION_FAILED for topics a client (`ctx`; None for a broker's v4+
    request) may not WRITE and for internal topics, then UNKNOWN_TOPIC_OR_PARTITION."""
    infos = broker.engine.topics()
    refused: dict[tuple[str, int], int] = {}
    for topic, partition in wanted:
        if ctx is not None and (topic in INTERNAL_TOPICS
                                or not topic_allowed(ctx, Operation.WRITE, topic)):
            refused[(topic, partition)] = ErrorCode.topic_authorization_failed
        elif topic not in infos or not 0 <= partition < infos[topic].partitions:
            refused[(topic, partition)] = ErrorCode.unknown_topic_or_partition
    return refused


async def add_partitions(broker: Broker, transactional_id: str, producer_id: int,
                         producer_epoch: int, topics: Any, verify_only: bool,
                         ctx: RequestContext | None = None) -> AddPartitionsResult:
    """Refused partitions (`refused_partitions`) fail the request: their error for them,
    OPERATION_NOT_ATTEMPTED for the rest. `verify_only` (v4+) changes nothing: each partition
    is NONE if it is in the ongoing transaction, else INVALID_TXN_STATE (or the producer's
    error); a shard not served here answers NOT_COORDINATOR (or LOAD_IN_PROGRESS /
    COORDINATOR_NOT_AVAILABLE)."""
    wanted = [(str(t.name), int(p)) for t in topics for p in t.partitions]
    refused = refused_partitions(broker, ctx, wanted)
    if refused:
        error = next(iter(refused.values()))
        return AddPartitionsResult(error, tuple(
            (t, p, refused.get((t, p), ErrorCode.operation_not_attempted))
            for t, p in dict.fromkeys(wanted)))

    def failed(error: int) -> AddPartitionsResult:
        return AddPartitionsResult(error, tuple((t, p, error) for t, p in dict.fromkeys(wanted)))

    if verify_only:  # a partition leader's KIP-890 check (broker/txn_verification.py)
        try:
            return broker.transactions.verify_partitions(transactional_id, producer_id,
                                                         producer_epoch, wanted)
        except CoordinatorError as exc:
            return failed(exc.error)
    return await call(broker, transactional_id, lambda core, now_ms: core.add_partitions(
        transactional_id, producer_id, producer_epoch, wanted, now_ms, verify_only), failed)


def refused_transaction(topics: Any, error: ErrorCode) -> AddPartitionsResult:
    """Kafka's errorResponseForTransaction: every partition asked with `error`."""
    return AddPartitionsResult(error, tuple(dict.fromkeys(
        (str(t.name), int(p), error) for t in topics for p in t.partitions)))


def topic_results(b: ResponseBuilder, result: AddPartitionsResult, version: int) -> Any:
    by_topic: dict[str, list[Any]] = {}
    for topic, partition, error in result.partition_errors:
        by_topic.setdefault(topic, []).append(b.make(
            "AddPartitionsToTxnPartitionResult", partition_index=partition,
            partition_error_code=fenced_as(error, version, 2)))
    return tuple(b.make("AddPartitionsToTxnTopicResult", name=name,
                        results_by_partition=tuple(parts))
                 for name, parts in by_topic.items())


@api(24, "AddPartitionsToTxn", (0, 5),
     "partitions join the producer's transaction; v4+ batches transactions and verify_only "
     "(KIP-890 part 1)")
async def handle_add_partitions_to_txn(broker: Broker, ctx: RequestContext, request: Any,
                                       b: ResponseBuilder) -> Any:
    if b.version <= 3:
        transactional_id = request.v3_and_below_transactional_id
        if transactional_id_allowed(ctx, Operation.WRITE, transactional_id):
            result = await add_partitions(
                broker, transactional_id, int(request.v3_and_below_producer_id),
                int(request.v3_and_below_producer_epoch), request.v3_and_below_topics,
                verify_only=False, ctx=ctx)
        else:
            result = refused_transaction(request.v3_and_below_topics,
                                         ErrorCode.transactional_id_authorization_failed)
        return b.make("AddPartitionsToTxnResponse", throttle_time=NO_THROTTLE,
                      results_by_topic_v3_and_below=topic_results(b, result, b.version))
    if not cluster_allowed(ctx, Operation.CLUSTER_ACTION):  # only brokers send v4+
        return b.make("AddPartitionsToTxnResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.cluster_authorization_failed,
                      results_by_transaction=())
    results = []
    for txn in request.transactions:
        result = await add_partitions(broker, txn.transactional_id, int(txn.producer_id),
                                      int(txn.producer_epoch), txn.topics,
                                      bool(txn.verify_only))
        results.append(b.make("AddPartitionsToTxnResult", transactional_id=txn.transactional_id,
                              topic_results=topic_results(b, result, b.version)))
    return b.make("AddPartitionsToTxnResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, results_by_transaction=tuple(results))


# -- AddOffsetsToTxn ------------------------------------------------------------------------

@api(25, "AddOffsetsToTxn", (0, 4),
     "the group's __consumer_offsets partition joins the transaction")
async def handle_add_offsets_to_txn(broker: Broker, ctx: RequestContext, request: Any,
                                    b: ResponseBuilder) -> Any:
    error: int
    if not transactional_id_allowed(ctx, Operation.WRITE, request.transactional_id):
        error = ErrorCode.transactional_id_authorization_failed
    elif not group_allowed(ctx, Operation.READ, request.group_id):
        error = ErrorCode.group_authorization_failed
    elif not request.group_id:
        error = ErrorCode.invalid_group_id
    else:
        error = await call(broker, request.transactional_id, lambda core, now_ms: (
            core.add_offsets(request.transactional_id, int(request.producer_id),
                             int(request.producer_epoch), request.group_id, now_ms)),
            lambda code: code)
    return b.make("AddOffsetsToTxnResponse", throttle_time=NO_THROTTLE,
                  error_code=fenced_as(error, b.version, 2))


# -- EndTxn ---------------------------------------------------------------------------------

@api(26, "EndTxn", (0, 5),
     "commit/abort: markers to every partition of the transaction; v5 (transaction version "
     "2) bumps the producer epoch and returns it")
async def handle_end_txn(broker: Broker, ctx: RequestContext, request: Any,
                         b: ResponseBuilder) -> Any:
    if not transactional_id_allowed(ctx, Operation.WRITE, request.transactional_id):
        return b.make("EndTxnResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode.transactional_id_authorization_failed,
                      producer_id=-1, producer_epoch=-1)
    result = await call(broker, request.transactional_id, lambda core, now_ms: core.end_txn(
        request.transactional_id, int(request.producer_id), int(request.producer_epoch),
        bool(request.committed), now_ms, bump_epoch=b.version >= END_TXN_BUMPS_FROM),
        EndTxnResult)
    return b.make("EndTxnResponse", throttle_time=NO_THROTTLE,
                  error_code=fenced_as(result.error, b.version, 2),
                  producer_id=result.producer_id, producer_epoch=result.producer_epoch)


# -- admin ----------------------------------------------------------------------------------

def timestamp(ms: int) -> Any:
    """A time for the wire; -1 (no transaction started) is sent as -1, as Kafka does."""
    return tz_aware_from_i64(i64(ms if ms >= 0 else -1))


@api(65, "DescribeTransactions", (0, 0),
     "state, timeout, start time, producer id/epoch and partitions of transactional ids")
async def handle_describe_transactions(broker: Broker, ctx: RequestContext, request: Any,
                                       b: ResponseBuilder) -> Any:
    states = []
    for transactional_id in request.transactional_ids:
        if not transactional_id_allowed(ctx, Operation.DESCRIBE, transactional_id):
            states.append(undescribed(b, transactional_id,
                                      ErrorCode.transactional_id_authorization_failed))
            continue
        try:
            d = await broker.transactions.describe(transactional_id)
        except CoordinatorError as exc:
            states.append(undescribed(b, transactional_id, ErrorCode(exc.error)))
            continue
        topics = tuple(b.make("TopicData", topic=t, partitions=ps) for t, ps in d.topics
                       if topic_allowed(ctx, Operation.DESCRIBE, t))  # only topics it may see
        states.append(b.make(
            "TransactionState", error_code=ErrorCode(d.error),
            transactional_id=d.transactional_id, transaction_state=d.state,
            transaction_timeout=timedelta(milliseconds=d.txn_timeout_ms),
            transaction_start_time=timestamp(d.txn_start_timestamp_ms),
            producer_id=d.producer_id, producer_epoch=d.producer_epoch, topics=topics))
    return b.make("DescribeTransactionsResponse", throttle_time=NO_THROTTLE,
                  transaction_states=tuple(states))


def undescribed(b: ResponseBuilder, transactional_id: str, error: ErrorCode) -> Any:
    return b.make("TransactionState", error_code=error, transactional_id=transactional_id,
                  transaction_state="", transaction_timeout=timedelta(0),
                  transaction_start_time=timestamp(-1), producer_id=-1, producer_epoch=-1,
                  topics=())


@api(66, "ListTransactions", (0, 1),
     "filters by state and producer id; v1 by running time (KIP-994)")
async def handle_list_transactions(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    duration_ms = int(getattr(request, "duration_filter", -1))
    try:
        unknown, listings = await broker.transactions.list_transactions(
            request.state_filters, [int(p) for p in request.producer_id_filters], duration_ms)
    except CoordinatorError as exc:
        return b.make("ListTransactionsResponse", throttle_time=NO_THROTTLE,
                      error_code=ErrorCode(exc.error), unknown_state_filters=(),
                      transaction_states=())
    return b.make("ListTransactionsResponse", throttle_time=NO_THROTTLE,
                  error_code=ErrorCode.none, unknown_state_filters=unknown,
                  transaction_states=tuple(
                      b.make("TransactionState", transactional_id=t.transactional_id,
                             producer_id=t.producer_id, transaction_state=t.state)
                      for t in listings
                      if transactional_id_allowed(ctx, Operation.DESCRIBE, t.transactional_id)))


# -- WriteTxnMarkers ------------------------------------------------------------------------

@api(27, "WriteTxnMarkers", WRITE_TXN_MARKERS_VERSIONS,
     "inter-broker: a transaction coordinator's markers for the partitions this broker leads "
     "(pending offsets on __consumer_offsets complete); refused with "
     "CLUSTER_AUTHORIZATION_FAILED unless the client id is a peer broker's")
async def handle_write_txn_markers(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    """Kafka's coordinators send this to partition leaders, and only a principal with ALTER
    or CLUSTER_ACTION on the cluster may; with an authorizer, so does strom (the brokers'
    own principal, that of the inter-broker listener, needs it: a super user, as in Kafka).
    Without one the client id stands in for the principal: only a request from
    `strom-broker-<node id>` (strom.broker.peers) is served; any other client is refused as
    Kafka refuses one without that permission, so that a tool cannot end a transaction
    behind its coordinator's back. (Not a security boundary: a client can claim a peer's
    client id, as any client can do anything on a Kafka cluster without an authorizer.)"""
    allowed = markers_allowed(ctx)
    results = []
    for m in request.markers:
        marker = TxnMarker(int(m.producer_id), int(m.producer_epoch),
                           bool(m.transaction_result), int(m.coordinator_epoch))
        topics = []
        for t in m.topics:
            partitions = []
            for p in t.partition_indexes:
                error = (await write_local_marker(broker.engine, broker.groups, broker.node_id,
                                                  marker, t.name, int(p))
                         if allowed else ErrorCode.cluster_authorization_failed)
                partitions.append(b.make("WritableTxnMarkerPartitionResult",
                                         partition_index=p, error_code=error))
            topics.append(b.make("WritableTxnMarkerTopicResult", name=t.name,
                                 partitions=tuple(partitions)))
        results.append(b.make("WritableTxnMarkerResult", producer_id=m.producer_id,
                              topics=tuple(topics)))
    return b.make("WriteTxnMarkersResponse", markers=tuple(results))


def markers_allowed(ctx: RequestContext) -> bool:
    if ctx.authorizer is None:
        return peer_node_id(ctx.client_id) is not None
    return (cluster_allowed(ctx, Operation.ALTER)
            or cluster_allowed(ctx, Operation.CLUSTER_ACTION))
