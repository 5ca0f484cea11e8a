"""KIP-848 consumer groups (`group.protocol=consumer`): the state of a group and its members.
The heartbeat lives in `consumer_heartbeat`, the persisted records in `consumer_group_log`.

Kafka's GroupMetadataManager.consumerGroupHeartbeat without I/O. The group epoch moves when
members or subscriptions (or the partition counts of subscribed topics) change; the target
assignment is recomputed by the group's server-side assignor when the group epoch passes the
target's epoch; each member then walks to its target through `reconcile` (revoke first, then
receive partitions nobody else owns). `partition_owners` is what the coordinator has told the
members they may hold: it never names two members for one partition.

Persistence: with an `emit` sink, `ConsumerGroups` (consumer_heartbeat.py) writes Kafka's
KIP-848 records (types 3-8 of `consumer_log_format`: group epoch, subscribed topic metadata,
member metadata, target assignment epoch and members, current member assignments) whenever
they change, and tombstones
when a member leaves or is fenced and when the group is deleted. It diffs the group's persisted
view (`persisted_view`) against what it last wrote, so every mutation path is covered. Replay
(`replay.py`) rebuilds the groups with their epochs and assignments, so after a restart members
keep heartbeating with their epochs and keep their partitions; their sessions start at load.
Committed offsets are persisted as for classic groups.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from strom.coordinator.group.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, Assignment
from strom.coordinator.group.model import (
    ConsumerMemberDescription,
    TopicMetadata,
    TopicPartitionIds,
)
from strom.coordinator.group.reconcile import (
    NO_OWNER_EPOCH,
    MemberAssignment,
    MemberState,
)
from strom.coordinator.group.topic_regex import matches

TopicId = uuid.UUID
JOIN_EPOCH: Final = 0
LEAVE_EPOCH: Final = -1
STATIC_LEAVE_EPOCH: Final = -2
REGEX_MAX_CHARS: Final = 1000


class ConsumerGroupState(enum.StrEnum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"


class HeartbeatError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConsumerMember:
    __slots__ = ("assignment", "client_host", "client_id", "instance_id", "member_id",
                 "rack_id", "rebalance_timeout_ms", "server_assignor", "subscribed_regex",
                 "subscribed_topic_names")

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.rebalance_timeout_ms = 0
        self.subscribed_topic_names: tuple[str, ...] = ()
        self.subscribed_regex: str | None = None
        self.server_assignor: str | None = None
        self.assignment = MemberAssignment(JOIN_EPOCH, NO_OWNER_EPOCH)

    @property
    def member_epoch(self) -> int:
        return self.assignment.member_epoch

    def subscribed(self, topics: Mapping[str, TopicMetadata]) -> set[str]:
        names = {n for n in self.subscribed_topic_names if n in topics}
        if self.subscribed_regex is not None:
            regex = self.subscribed_regex
            names |= {n for n, t in topics.items() if not t.internal and matches(regex, n)}
        return names


class ConsumerGroup:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.rebalances = 0  # group epochs bumped here (not replayed), for the metrics
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        self.partition_owners: dict[tuple[TopicId, int], tuple[str, int]] = {}
        # name -> (topic id, partitions) of the subscribed topics as of the group epoch
        self.subscription_metadata: dict[str, tuple[TopicId, int]] = {}
        self.topic_names: dict[TopicId, str] = {}
        # what changed since the records were last written (see ConsumerGroups.sync)
        self.dirty: set[str] = set()  # member ids
        self.targets_dirty = False

    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch != self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(m.member_epoch != self.assignment_epoch
               or m.assignment.state is not MemberState.STABLE for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def assignor_name(self) -> str:
        """Kafka's preferred server assignor: the one most members name, else the default."""
        votes = Counter(m.server_assignor for m in self.members.values() if m.server_assignor)
        if not votes:
            return DEFAULT_ASSIGNOR
        return min(votes, key=lambda name: (-votes[name], name))

    def set_assignment(self, member: ConsumerMember, new: MemberAssignment) -> None:
        """Replaces what `member` was told, keeping `partition_owners` exact."""
        for topic, partitions in member.assignment.owned().items():
            for p in partitions:
                owner = self.partition_owners.pop((topic, p), None)
                assert owner is not None and owner[0] == member.member_id, "owner map drifted"
        for topic, partitions in new.owned().items():
            for p in partitions:
                other = self.partition_owners.get((topic, p))
                assert other is None, f"{topic}-{p} given to {member.member_id} owned by {other}"
                self.partition_owners[(topic, p)] = (member.member_id, new.member_epoch)
        member.assignment = new
        self.dirty.add(member.member_id)

    def owner_epoch(self, member_id: str) -> Callable[[TopicId, int], int]:
        def epoch(topic: TopicId, partition: int) -> int:
            owner = self.partition_owners.get((topic, partition))
            return NO_OWNER_EPOCH if owner is None or owner[0] == member_id else owner[1]
        return epoch

    def remove(self, member_id: str) -> None:
        member = self.members[member_id]
        self.set_assignment(member, MemberAssignment(LEAVE_EPOCH, member.member_epoch))
        del self.members[member_id]
        self.target.pop(member_id, None)
        self.dirty.add(member_id)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == \
                member_id:
            del self.static_members[member.instance_id]

    def refresh_metadata(self, topics: Mapping[str, TopicMetadata]) -> bool:
        """Recomputes the subscribed topics' metadata; True if it changed."""
        names: set[str] = set()
        for member in self.members.values():
            names |= member.subscribed(topics)
        metadata = {n: (topics[n].topic_id, topics[n].partitions) for n in sorted(names)}
        for name, (topic_id, _) in metadata.items():
            self.topic_names[topic_id] = name
        changed = metadata != self.subscription_metadata
        self.subscription_metadata = metadata
        return changed

    def compute_target(self, topics: Mapping[str, TopicMetadata]) -> None:
        subscriptions = {
            m.member_id: frozenset(self.subscription_metadata[n][0] for n in m.subscribed(topics)
                                   if n in self.subscription_metadata)
            for m in self.members.values()}
        counts = {tid: count for tid, count in self.subscription_metadata.values()}
        assignor = ASSIGNORS[self.assignor_name()]
        self.target = assignor(subscriptions, counts, self.target)
        self.assignment_epoch = self.group_epoch
        self.targets_dirty = True

    def describe_member(self, member: ConsumerMember) -> ConsumerMemberDescription:
        return ConsumerMemberDescription(
            member.member_id, member.instance_id, member.rack_id, member.member_epoch,
            member.client_id, member.client_host, member.subscribed_topic_names,
            member.subscribed_regex, to_ids(member.assignment.assigned),
            to_ids(self.target.get(member.member_id, {})))


def to_ids(assignment: Mapping[TopicId, frozenset[int]]) -> TopicPartitionIds:
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(assignment.items(), key=_by_str)
                 if ps)


def _by_str(item: tuple[TopicId, frozenset[int]]) -> str:
    return str(item[0])


def from_ids(ids: Iterable[tuple[TopicId, Iterable[int]]]) -> dict[TopicId, frozenset[int]]:
    out: dict[TopicId, frozenset[int]] = {}
    for topic, partitions in ids:
        out[topic] = out.get(topic, frozenset()) | frozenset(partitions)
    return {t: ps for t, ps in out.items() if ps}
