"""The coordinator's state and the effects of the call in progress, shared by its modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from strom.coordinator.group.group import ClassicGroup, Member
from strom.coordinator.group.log_format import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
    encode_offset_commit_value,
)
from strom.coordinator.group.model import (
    CommittedOffset,
    Completion,
    GroupConfig,
    GroupLogRecord,
    JoinResult,
    SyncResult,
    TopicPartition,
)
from strom.coordinator.group.timers import TimerQueue
from strom.coordinator.group.txn_pending import PendingTxnOffsets
from strom.coordinator.hashing import partition_for

TimerKind = Literal["session", "pending", "join", "initial_join", "sync", "retention"]


@dataclass(frozen=True, slots=True)
class Timer:
    """What a due deadline means: Kafka's DelayedHeartbeat, DelayedJoin, DelayedSync, ..."""

    kind: TimerKind
    group_id: str = ""
    member_id: str = ""
    generation_id: int = 0
    delay_ms: int = 0  # initial_join: this delay; remaining_ms: what is left after it
    remaining_ms: int = 0


def member_key(group_id: str, member_id: str) -> tuple[str, str, str]:
    return ("member", group_id, member_id)


def join_key(group_id: str) -> tuple[str, str]:
    return ("join", group_id)


def sync_key(group_id: str) -> tuple[str, str]:
    return ("sync", group_id)


RETENTION_KEY = ("retention",)


class Context:
    def __init__(self, config: GroupConfig) -> None:
        self.config = config
        self.groups: dict[str, ClassicGroup] = {}
        self.timers: TimerQueue[Timer] = TimerQueue()
        self.now_ms = 0
        self.completions: list[Completion] = []
        self.records: list[GroupLogRecord] = []
        self.txn = PendingTxnOffsets()  # TxnOffsetCommit offsets of open transactions

    def begin(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.completions = []
        self.records = []

    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.config.offsets_topic_partitions)

    # -- answers to parked requests -------------------------------------------------------

    def maybe_answer_join(self, group: ClassicGroup, member: Member, result: JoinResult) -> None:
        if member.awaiting_join:
            group.set_awaiting_join(member, False)
            self.completions.append(Completion("join", group.group_id, member.member_id, result))

    def maybe_answer_sync(self, group: ClassicGroup, member: Member, result: SyncResult) -> bool:
        if not member.awaiting_sync:
            return False
        member.awaiting_sync = False
        self.completions.append(Completion("sync", group.group_id, member.member_id, result))
        return True

    # -- __consumer_offsets records -------------------------------------------------------

    def store_group(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        """Kafka's `storeGroup`: the group's metadata with these assignments, as one record."""
        members: tuple[MemberMetadataValue, ...] = ()
        if group.members:
            assert group.protocol_name is not None, "non-empty group without a protocol"
            name = group.protocol_name
            members = tuple(
                MemberMetadataValue(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                    m.rebalance_timeout_ms, m.session_timeout_ms,
                                    m.metadata(name), assignment.get(m.member_id, b""))
                for m in group.members.values())
        value = GroupMetadataValue(
            group.protocol_type or "", group.generation_id, group.protocol_name, group.leader_id,
            -1 if group.state_timestamp_ms is None else group.state_timestamp_ms, members)
        self.records.append(GroupLogRecord(
            self.partition_for(group.group_id),
            encode_group_metadata_key(GroupMetadataKey(group.group_id)),
            encode_group_metadata_value(value)))

    def group_tombstone(self, group_id: str) -> None:
        self.records.append(GroupLogRecord(
            self.partition_for(group_id), encode_group_metadata_key(GroupMetadataKey(group_id)),
            None))

    def offset_record(self, group_id: str, tp: TopicPartition,
                      committed: CommittedOffset | None,
                      producer: tuple[int, int] | None = None) -> None:
        """An OffsetCommit record; with `producer` (id, epoch), one of its transaction."""
        key = encode_offset_commit_key(OffsetCommitKey(group_id, tp[0], tp[1]))
        value = None
        if committed is not None:
            value = encode_offset_commit_value(OffsetCommitValue(
                committed.offset, committed.leader_epoch, committed.metadata or "",
                committed.commit_timestamp_ms))
        producer_id, producer_epoch = (-1, -1) if producer is None else producer
        self.records.append(GroupLogRecord(self.partition_for(group_id), key, value,
                                           producer_id, producer_epoch))
