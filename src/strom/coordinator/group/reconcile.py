"""Kafka's CurrentAssignmentBuilder: one member's step from its current assignment to its target.

A member first revokes what its target no longer holds (UNREVOKED_PARTITIONS, epoch kept, until
it heartbeats without those partitions), and only then gets the target's epoch and the
partitions nobody else still owns; partitions another member still owns (or is revoking) are
withheld (UNRELEASED_PARTITIONS) until released. Hence no partition is ever given to a member
while the coordinator has told another member it may keep it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

TopicId = uuid.UUID
Assignment = Mapping[TopicId, frozenset[int]]

NO_OWNER_EPOCH = -1


class MemberState(enum.StrEnum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass(frozen=True, slots=True)
class MemberAssignment:
    """What the coordinator has told a member: its epochs, state, partitions it may use and
    partitions it must give up."""

    member_epoch: int
    previous_member_epoch: int
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def owned(self) -> Assignment:
        """Partitions the member may still hold: assigned plus pending revocation."""
        return merge(self.assigned, self.pending_revocation)


def merge(a: Assignment, b: Assignment) -> dict[TopicId, frozenset[int]]:
    out = dict(a)
    for topic, partitions in b.items():
        out[topic] = out.get(topic, frozenset()) | partitions
    return {t: ps for t, ps in out.items() if ps}


def _owns_any(owned: Assignment | None, partitions: Assignment) -> bool:
    """Kafka's ownsRevokedPartitions: without a reported owned list, assume it still owns."""
    if owned is None:
        return True
    return any(owned.get(t, frozenset()) & ps for t, ps in partitions.items())


def reconcile(member: MemberAssignment, target_epoch: int, target: Assignment,
              owned: Assignment | None,
              owner_epoch: Callable[[TopicId, int], int]) -> MemberAssignment:
    """The member's next state. `owned` is what the member reported owning in this heartbeat
    (None: not reported); `owner_epoch(t, p)` is the epoch of the member that owns t-p, or
    NO_OWNER_EPOCH (the member's own partitions must not be reported as owned)."""
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
    elif member.state is MemberState.STABLE and member.member_epoch == target_epoch:
        return member
    return _next(member, target_epoch, target, owned, owner_epoch)


def _next(member: MemberAssignment, target_epoch: int, target: Assignment,
          owned: Assignment | None,
          owner_epoch: Callable[[TopicId, int], int]) -> MemberAssignment:
    current = member.assigned
    assigned: dict[TopicId, frozenset[int]] = {}
    revoking: dict[TopicId, frozenset[int]] = {}
    unreleased = False
    for topic in sorted(set(target) | set(current), key=str):
        want = target.get(topic, frozenset())
        have = current.get(topic, frozenset())
        keep = set(have & want)
        if have - want:
            revoking[topic] = have - want
        for p in sorted(want - have):
            if owner_epoch(topic, p) == NO_OWNER_EPOCH:
                keep.add(p)
            else:
                unreleased = True
        if keep:
            assigned[topic] = frozenset(keep)
    if revoking and _owns_any(owned, revoking):
        # Revoke first; the epoch does not move until the member acknowledges the revocation.
        return MemberAssignment(member.member_epoch, member.member_epoch,
                                MemberState.UNREVOKED_PARTITIONS, assigned, revoking)
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return MemberAssignment(target_epoch, member.member_epoch, state, assigned, {})
