"""TxnOffsetCommit (28): a transactional producer commits a consumer group's offsets as part of
its transaction (KIP-98; the group member fields of v3+ are KIP-447's fencing).

Kafka's order of checks: WRITE on the transactional id (every partition
TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on the group (GROUP_AUTHORIZATION_FAILED), READ on
each topic (TOPIC_AUTHORIZATION_FAILED, before UNKNOWN_TOPIC_OR_PARTITION); then the group id,
then that the group's `__consumer_offsets` partition is in the producer's ongoing transaction
(AddOffsetsToTxn put it there), then the group member, then each offset's metadata size.
The offsets are written in the producer's transactional batch and count once its COMMIT
marker lands (GroupRuntime.complete_txn).
"""

from __future__ import annotations

from typing import Any

from strom.broker.authorize import group_allowed, transactional_id_allowed
from strom.broker.coordinator_runtime import CoordinatorError
from strom.broker.handlers.offsets import authorized_partition_error, offset_commit
from strom.broker.registry import api
from strom.broker.state import Broker, RequestContext
from strom.broker.txn_verification import verify_in_transaction
from strom.coordinator.group.model import CommitResult, OffsetCommit, TxnCommitRequest
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.protocol.messages import NO_THROTTLE, ErrorCode, ResponseBuilder
from strom.security.acl import Operation

Key = tuple[int, int]  # (topic index in the request, partition)


def txn_commit_response(b: ResponseBuilder, request: Any, errors: dict[Key, ErrorCode]) -> Any:
    topics = tuple(
        b.make("TxnOffsetCommitResponseTopic", name=t.name, partitions=tuple(
            b.make("TxnOffsetCommitResponsePartition", partition_index=p.partition_index,
                   error_code=errors[(ti, int(p.partition_index))])
            for p in t.partitions))
        for ti, t in enumerate(request.topics))
    return b.make("TxnOffsetCommitResponse", throttle_time=NO_THROTTLE, topics=topics)


def _refusal(ctx: RequestContext, request: Any) -> ErrorCode | None:
    """The error of every partition when the principal may not WRITE the transactional id or
    READ the group (Kafka checks them in this order)."""
    if not transactional_id_allowed(ctx, Operation.WRITE, request.transactional_id):
        return ErrorCode.transactional_id_authorization_failed
    if not group_allowed(ctx, Operation.READ, request.group_id):
        return ErrorCode.group_authorization_failed
    return None


def _offsets(broker: Broker, ctx: RequestContext, request: Any, errors: dict[Key, ErrorCode],
             ) -> list[tuple[Key, OffsetCommit]]:
    """The offsets of known partitions of topics the principal may READ; the others get
    TOPIC_AUTHORIZATION_FAILED or UNKNOWN_TOPIC_OR_PARTITION."""
    valid = []
    for ti, topic in enumerate(request.topics):
        for p in topic.partitions:
            key = (ti, int(p.partition_index))
            error = authorized_partition_error(broker, ctx, topic.name, int(p.partition_index))
            if error is not None:
                errors[key] = error
                continue
            valid.append((key, offset_commit(topic.name, p)))
    return valid


@api(28, "TxnOffsetCommit", (0, 4), "offsets pending until the transaction's marker; "
     "KIP-447 member checks (v3+); KIP-890 verification of the group's offsets partition")
async def handle_txn_offset_commit(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    refused = _refusal(ctx, request)
    if refused is not None:
        return txn_commit_response(b, request, {
            (ti, int(p.partition_index)): refused
            for ti, t in enumerate(request.topics) for p in t.partitions})
    errors: dict[Key, ErrorCode] = {}
    valid = _offsets(broker, ctx, request, errors)
    if not request.group_id:
        error = ErrorCode.invalid_group_id
    else:
        partition = broker.groups.partition_for(request.group_id)
        error = ErrorCode(await verify_in_transaction(
            broker, request.transactional_id, int(request.producer_id),
            int(request.producer_epoch), [(OFFSETS_TOPIC, partition)]))
    if error != ErrorCode.none:
        errors.update((key, error) for key, _ in valid)
        return txn_commit_response(b, request, errors)
    if valid:
        commit = TxnCommitRequest(
            transactional_id=request.transactional_id, group_id=request.group_id,
            producer_id=int(request.producer_id), producer_epoch=int(request.producer_epoch),
            generation_id=int(getattr(request, "generation_id", -1)),
            member_id=getattr(request, "member_id", ""),
            group_instance_id=getattr(request, "group_instance_id", None),
            offsets=tuple(c for _, c in valid))
        try:
            result = await broker.groups.write(
                commit.group_id, lambda core, now_ms: core.txn_commit_offsets(commit, now_ms))
        except CoordinatorError as exc:
            result = CommitResult(tuple((c.topic, c.partition, exc.error) for _, c in valid))
        outcome = {(t, p): ErrorCode(code) for t, p, code in result.partition_errors}
        for key, c in valid:
            errors[key] = outcome.get((c.topic, c.partition), ErrorCode.none)
    return txn_commit_response(b, request, errors)
