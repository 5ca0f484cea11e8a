"""KIP-890 part 1: is a partition in the producer's ongoing transaction? The transaction
coordinator answers, on this broker or on the one leading the transactional id's
`__transaction_state` partition.

A produce (or TxnOffsetCommit) takes the partition's verification guard first, then asks.
When this broker leads the coordinator's partition (or the topic does not exist yet: the
local coordinator answers COORDINATOR_NOT_AVAILABLE then, as before clusters) the answer is
synchronous, so a produce verifies and appends with no suspension in between. Otherwise the
leader gets an AddPartitionsToTxn request (v4+, one transaction, verify_only), as from
Kafka's AddPartitionsToTxnManager; the guard taken before it is what keeps a marker that
lands meanwhile from letting the append through. Both ways give the coordinator's error,
normalised to what the local coordinator answers: a shard not served (NOT_COORDINATOR), no
leader, or a leader that cannot be reached is COORDINATOR_NOT_AVAILABLE; a peer that refuses
the request (CLUSTER_AUTHORIZATION_FAILED) is INVALID_TXN_STATE, as Kafka's manager maps it.
`produce_error` then maps it for a Produce answer as Kafka's ReplicaManager does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from strom.broker.peers import Peers
from strom.broker.state import Broker
from strom.coordinator.internal_topics import TXN_TOPIC
from strom.protocol.client import PeerUnavailable
from strom.protocol.messages import ErrorCode, RequestBuilder
from strom.storage.api import UnknownTopic

log = logging.getLogger(__name__)

ADD_PARTITIONS_TO_TXN_KEY: Final = 24
VERIFY_VERSIONS: Final = (4, 5)  # AddPartitionsToTxn versions with verify_only
# Coordinator answers that mean "ask again later": a producer retries NOT_ENOUGH_REPLICAS.
UNAVAILABLE: Final = frozenset({
    ErrorCode.coordinator_not_available, ErrorCode.coordinator_load_in_progress,
    ErrorCode.concurrent_transactions, ErrorCode.not_coordinator})


def coordinator_node(broker: Broker, transactional_id: str) -> int | None:
    """The node whose transaction coordinator serves `transactional_id`: the leader of its
    `__transaction_state` partition (None while there is none); this broker before the topic
    exists."""
    partition = broker.transactions.partition_for(transactional_id)
    try:
        return broker.engine.leadership(TXN_TOPIC, partition).leader
    except UnknownTopic:
        return broker.node_id


async def verify_in_transaction(broker: Broker, transactional_id: str, producer_id: int,
                                producer_epoch: int, partitions: Sequence[tuple[str, int]],
                                ) -> int:
    """0 if every partition is in the producer's ongoing transaction, else the coordinator's
    error (normalised as the module says). Does not suspend when the coordinator is here."""
    node = coordinator_node(broker, transactional_id)
    if node == broker.node_id:
        return broker.transactions.verify(transactional_id, producer_id, producer_epoch,
                                          partitions)
    if node is None:
        return int(ErrorCode.coordinator_not_available)
    return await verify_remotely(broker.peers, node, transactional_id, producer_id,
                                 producer_epoch, partitions)


async def verify_remotely(peers: Peers, node_id: int, transactional_id: str, producer_id: int,
                          producer_epoch: int, partitions: Sequence[tuple[str, int]]) -> int:
    """AddPartitionsToTxn v4+ with verify_only to the coordinator on `node_id`."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)

    def build(b: RequestBuilder) -> Any:
        return b.make("AddPartitionsToTxnRequest", transactions=(b.make(
            "AddPartitionsToTxnTransaction", transactional_id=transactional_id,
            producer_id=producer_id, producer_epoch=producer_epoch, verify_only=True,
            topics=tuple(b.make("AddPartitionsToTxnTopic", name=topic, partitions=tuple(ps))
                         for topic, ps in by_topic.items())),))

    try:
        answer = await peers.send(node_id, ADD_PARTITIONS_TO_TXN_KEY, build,
                                  max_version=VERIFY_VERSIONS[1],
                                  min_version=VERIFY_VERSIONS[0])
    except PeerUnavailable as exc:
        log.info("cannot verify %s's transaction with its coordinator: %s", transactional_id,
                 exc)
        return int(ErrorCode.coordinator_not_available)
    return answer_error(answer, transactional_id, partitions)


def answer_error(answer: Any, transactional_id: str,
                 partitions: Sequence[tuple[str, int]]) -> int:
    """The verification's error from an AddPartitionsToTxn v4+ answer: its top-level error,
    else the first partition's; UNKNOWN_SERVER_ERROR if it leaves a partition out."""
    if answer.error_code == ErrorCode.cluster_authorization_failed:
        return int(ErrorCode.invalid_txn_state)
    if answer.error_code != ErrorCode.none:
        return _local_equivalent(int(answer.error_code))
    answered: dict[tuple[str, int], int] = {}
    for result in answer.results_by_transaction:
        if result.transactional_id == transactional_id:
            answered.update(((t.name, int(p.partition_index)), int(p.partition_error_code))
                            for t in result.topic_results for p in t.results_by_partition)
    for partition in partitions:
        error = answered.get(partition, ErrorCode.unknown_server_error)
        if error != ErrorCode.none:
            return _local_equivalent(error)
    return 0


def produce_error(error: int) -> ErrorCode:
    """A verification error as a Produce answer carries it (Kafka's ReplicaManager and
    AddPartitionsToTxnManager): a fenced producer is INVALID_PRODUCER_EPOCH, an unavailable
    coordinator the retriable NOT_ENOUGH_REPLICAS."""
    if error == ErrorCode.producer_fenced:
        return ErrorCode.invalid_producer_epoch
    if error in UNAVAILABLE:
        return ErrorCode.not_enough_replicas
    return ErrorCode(error)


def _local_equivalent(error: int) -> int:
    """A remote shard not served answers NOT_COORDINATOR; the local path says
    COORDINATOR_NOT_AVAILABLE for the same."""
    if error == ErrorCode.not_coordinator:
        return int(ErrorCode.coordinator_not_available)
    return error
