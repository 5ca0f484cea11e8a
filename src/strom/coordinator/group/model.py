"""The group coordinator's requests, answers and effects: frozen values, no behaviour.

The core takes one of these requests and `now_ms` and returns a `Step`: the answer (or a
`pending_key` when the answer comes later as a `Completion`), answers it owes to *other*
waiting requests, and records for `__consumer_offsets`. A shell delivers a step in this order:
append `records`, deliver `completions`, then return `result` or wait on `pending_key`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

TopicPartition = tuple[str, int]
PendingKey = tuple[str, str, str]

NO_GENERATION = -1
UNKNOWN_MEMBER_ID = ""


@dataclass(frozen=True, slots=True)
class GroupConfig:
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3000
    max_group_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_topic_partitions: int = 50
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    # Kafka's GroupCoordinator.NewMemberJoinTimeoutMs: a new member's JoinGroup is dropped after it.
    new_member_join_timeout_ms: int = 300_000
    # KIP-848 consumer groups: group.consumer.session.timeout.ms, .heartbeat.interval.ms
    consumer_session_timeout_ms: int = 45_000
    consumer_heartbeat_interval_ms: int = 5_000


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    require_known_member_id: bool
    reason: str | None = None
    # JoinGroup v9+ (KIP-814): a rejoining static leader of a Stable group skips assignment.
    supports_skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class JoinedMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: int
    generation_id: int
    protocol_type: str | None
    protocol_name: str | None
    leader: str
    member_id: str
    members: tuple[JoinedMember, ...]
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True)
class SyncRequest:
    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None
    protocol_type: str | None
    protocol_name: str | None
    assignments: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: int
    protocol_type: str | None
    protocol_name: str | None
    assignment: bytes


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None


@dataclass(frozen=True, slots=True)
class LeaveMember:
    member_id: str
    group_instance_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LeaveRequest:
    group_id: str
    members: tuple[LeaveMember, ...]


@dataclass(frozen=True, slots=True)
class LeaveResult:
    error: int
    members: tuple[tuple[str, str | None, int], ...]  # (member_id, group_instance_id, error)


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str | None


@dataclass(frozen=True, slots=True)
class CommitRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None
    offsets: tuple[OffsetCommit, ...]


@dataclass(frozen=True, slots=True)
class TxnCommitRequest:
    """TxnOffsetCommit (KIP-98; member fields from v3, KIP-447): offsets a transactional
    producer commits for a group; they count once its transaction commits."""

    transactional_id: str
    group_id: str
    producer_id: int
    producer_epoch: int
    generation_id: int  # a KIP-848 member's member epoch
    member_id: str
    group_instance_id: str | None
    offsets: tuple[OffsetCommit, ...]


@dataclass(frozen=True, slots=True)
class CommitResult:
    partition_errors: tuple[tuple[str, int, int], ...]  # (topic, partition, error)
    error: int = 0


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_timestamp_ms: int
    # Only from OffsetCommitValue v1 records (old per-commit retention); None otherwise.
    expire_timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    error: int
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


@dataclass(frozen=True, slots=True)
class GroupLogRecord:
    """A record for `__consumer_offsets` partition `partition`; `value` None is a tombstone.
    A transactional producer's records (`producer_id` >= 0) go into a transactional batch of
    that producer and count once a COMMIT marker of that producer follows them."""

    partition: int
    key: bytes
    value: bytes | None
    producer_id: int = -1
    producer_epoch: int = -1


@dataclass(frozen=True, slots=True)
class Completion:
    kind: Literal["join", "sync"]
    group_id: str
    member_id: str
    result: JoinResult | SyncResult

    @property
    def key(self) -> PendingKey:
        return (self.kind, self.group_id, self.member_id)


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    result: T | None
    pending_key: PendingKey | None = None
    completions: tuple[Completion, ...] = ()
    records: tuple[GroupLogRecord, ...] = ()


def join_error(member_id: str, error: int) -> JoinResult:
    """Kafka's `JoinGroupResult(memberId, error)`."""
    return JoinResult(error, NO_GENERATION, None, None, UNKNOWN_MEMBER_ID, member_id, ())


def sync_error(error: int) -> SyncResult:
    return SyncResult(error, None, None, b"")


# -- KIP-848 consumer groups ---------------------------------------------------------------

TopicPartitionIds = tuple[tuple[uuid.UUID, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    """A topic as the coordinator sees it when it computes assignments."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    internal: bool = False


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeatRequest:
    """ConsumerGroupHeartbeat; None fields did not change since the member's last heartbeat."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int  # -1: unchanged
    subscribed_topic_names: tuple[str, ...] | None
    subscribed_topic_regex: str | None
    server_assignor: str | None
    owned: TopicPartitionIds | None
    client_id: str
    client_host: str
    topics: tuple[TopicMetadata, ...]  # the cluster's topics at the time of the request


@dataclass(frozen=True, slots=True)
class ConsumerHeartbeatResult:
    error: int
    error_message: str | None
    member_id: str | None
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: TopicPartitionIds | None = None


@dataclass(frozen=True, slots=True)
class ConsumerMemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    assignment: TopicPartitionIds
    target_assignment: TopicPartitionIds


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    group_id: str
    error: int
    error_message: str | None
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor_name: str
    members: tuple[ConsumerMemberDescription, ...]
