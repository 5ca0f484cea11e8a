"""One transaction marker (COMMIT or ABORT) to one partition, here or on its leader.

The transaction coordinator writes a marker itself when this broker leads the partition, and
otherwise sends it to the leader in a WriteTxnMarkers request, whose handler writes it with
the same `write_local_marker`: append the control batch, then (for `__consumer_offsets`) let
the group coordinator complete the producer's pending offset commits.

What the coordinator does with a partition's answer follows Kafka's
TransactionMarkerRequestCompletionHandler, with one exception:

- NONE: written.
- UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
  REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR, and a peer that cannot be reached: retried (the
  leader is asked again; a deleted topic then drops the marker).
- UNSUPPORTED_FOR_MESSAGE_FORMAT, UNSUPPORTED_VERSION: dropped, the partition counts as done.
- TRANSACTION_COORDINATOR_FENCED: a coordinator with a newer epoch owns the transaction; this
  one stops writing its markers and does not complete it (the new owner does).
- INVALID_PRODUCER_EPOCH: dropped, the partition counts as done (the partition knows a newer
  epoch of the producer, so the transaction is over there). Kafka stops the transaction's
  markers instead, which leaves it in Prepare* until the coordinator moves (the hanging
  transactions of KAFKA-19999); strom's local writes always dropped it, so both paths agree.
- Anything else (CORRUPT_MESSAGE, CLUSTER_AUTHORIZATION_FAILED from a peer that refuses
  markers, ...): Kafka throws, which strands the transaction; strom logs an error and retries
  with the longest backoff, so the transaction completes once the cause is fixed.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any, Final

from strom.broker.group_runtime import GroupRuntime
from strom.broker.peers import Peers
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.protocol.messages import ErrorCode, RequestBuilder
from strom.storage.api import (
    InvalidProducerEpoch,
    NotLeader,
    StorageEngine,
    StorageError,
    UnknownTopic,
)

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS_KEY: Final = 27
WRITE_TXN_MARKERS_VERSIONS: Final = (1, 2)  # what this broker sends and serves (kio's)

RETRIABLE: Final = frozenset({
    ErrorCode.unknown_topic_or_partition, ErrorCode.not_leader_or_follower,
    ErrorCode.not_enough_replicas, ErrorCode.not_enough_replicas_after_append,
    ErrorCode.request_timed_out, ErrorCode.kafka_storage_error})
DROPPED: Final = frozenset({
    ErrorCode.unsupported_for_message_format, ErrorCode.unsupported_version,
    ErrorCode.invalid_producer_epoch})
STOPS: Final = frozenset({ErrorCode.transaction_coordinator_fenced})


class MarkerOutcome(enum.Enum):
    DONE = "done"  # written, or dropped: the partition needs nothing more
    RETRY = "retry"  # try again after a backoff (the leader may have moved)
    RETRY_SLOWLY = "retry slowly"  # an unexpected error: retry after the longest backoff
    STOP = "stop"  # stop writing this transaction's markers; do not complete it


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """A marker for one producer's transaction, as the coordinator at `coordinator_epoch`
    (its `__transaction_state` partition's leader epoch) writes it."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int

    def describe(self) -> str:
        kind = "COMMIT" if self.commit else "ABORT"
        return f"{kind} marker of producer {self.producer_id} (epoch {self.producer_epoch})"


def marker_outcome(error: int) -> MarkerOutcome:
    """What the coordinator does with a partition's answer (see the module's docstring)."""
    if error == ErrorCode.none or error in DROPPED:
        return MarkerOutcome.DONE
    if error in RETRIABLE:
        return MarkerOutcome.RETRY
    if error in STOPS:
        return MarkerOutcome.STOP
    return MarkerOutcome.RETRY_SLOWLY


def answered(transactional_id: str, node_id: int, marker: TxnMarker, topic: str,
             partition: int, error: int) -> MarkerOutcome:
    """The outcome of a partition's answer, logged unless it is NONE."""
    outcome = marker_outcome(error)
    if error == ErrorCode.none:
        return outcome
    what = (f"transaction {transactional_id}: node {node_id} answered the {marker.describe()} "
            f"for {topic}-{partition} with {error_name(error)}")
    if outcome is MarkerOutcome.RETRY_SLOWLY:
        log.error("%s; retrying", what)
    elif outcome is MarkerOutcome.STOP:
        log.info("%s: a newer coordinator owns the transaction", what)
    else:
        log.info("%s (%s)", what, outcome.value)
    return outcome


def error_name(error: int) -> str:
    try:
        return ErrorCode(error).name
    except ValueError:
        return f"error {error}"


async def write_local_marker(engine: StorageEngine, groups: GroupRuntime, node_id: int,
                             marker: TxnMarker, topic: str, partition: int) -> ErrorCode:
    """Appends the marker to a partition this broker leads (NOT_LEADER_OR_FOLLOWER if it
    does not) and completes the producer's pending offsets on a `__consumer_offsets`
    partition; the error code a WriteTxnMarkers answer carries for it."""
    try:
        if engine.leadership(topic, partition).leader != node_id:
            return ErrorCode.not_leader_or_follower
        plog = engine.partition(topic, partition)
        await plog.append_marker(marker.producer_id, marker.producer_epoch, marker.commit,
                                 marker.coordinator_epoch)
    except UnknownTopic:
        return ErrorCode.unknown_topic_or_partition
    except InvalidProducerEpoch as exc:
        log.warning("%s for %s-%d not written: %s", marker.describe(), topic, partition, exc)
        return ErrorCode.invalid_producer_epoch
    except NotLeader:
        return ErrorCode.not_leader_or_follower
    except (StorageError, OSError) as exc:
        log.error("writing the %s to %s-%d failed: %s", marker.describe(), topic, partition,
                  exc)
        return ErrorCode.kafka_storage_error
    if topic == OFFSETS_TOPIC:
        await groups.complete_txn(partition, marker.producer_id, marker.commit)
    return ErrorCode.none


async def send_marker(peers: Peers, node_id: int, marker: TxnMarker, topic: str,
                      partition: int) -> int:
    """WriteTxnMarkers with this one marker for this one partition, to `node_id`; the error
    code its answer carries for the partition. Raises PeerUnavailable."""

    def build(b: RequestBuilder) -> Any:
        return b.make("WriteTxnMarkersRequest", markers=(b.make(
            "WritableTxnMarker", producer_id=marker.producer_id,
            producer_epoch=marker.producer_epoch, transaction_result=marker.commit,
            coordinator_epoch=marker.coordinator_epoch,
            topics=(b.make("WritableTxnMarkerTopic", name=topic,
                           partition_indexes=(partition,)),)),))

    answer = await peers.send(node_id, WRITE_TXN_MARKERS_KEY, build,
                              max_version=WRITE_TXN_MARKERS_VERSIONS[1],
                              min_version=WRITE_TXN_MARKERS_VERSIONS[0])
    return partition_error(answer, marker.producer_id, topic, partition)


def partition_error(answer: Any, producer_id: int, topic: str, partition: int) -> int:
    """The error a WriteTxnMarkers answer gives the partition; UNKNOWN_SERVER_ERROR if the
    answer leaves it out (a peer that answered something else: retried, slowly)."""
    for result in answer.markers:
        if int(result.producer_id) != producer_id:
            continue
        for topic_result in result.topics:
            if topic_result.name != topic:
                continue
            for p in topic_result.partitions:
                if int(p.partition_index) == partition:
                    return int(p.error_code)
    return int(ErrorCode.unknown_server_error)
