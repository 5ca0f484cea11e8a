"""The classic group coordinator core follows Kafka's GroupCoordinator rule by rule: joins,
rebalances, syncs, heartbeats, leaves, static membership, offsets, expiry, the
__consumer_offsets record formats and replay, all driven by plain calls and `now_ms`."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest
from kio.schema.errors import ErrorCode as E

from strom.coordinator.group import (
    CommitRequest,
    Completion,
    GroupConfig,
    GroupCoordinator,
    GroupLogRecord,
    HeartbeatRequest,
    JoinRequest,
    JoinResult,
    LeaveMember,
    LeaveRequest,
    OffsetCommit,
    Step,
    SyncRequest,
    SyncResult,
)
from strom.coordinator.group.log_format import (
    GroupMetadataKey,
    GroupMetadataValue,
    LogFormatError,
    MemberMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
    encode_offset_commit_value,
)

Protocols = tuple[tuple[str, bytes], ...]
RANGE: Protocols = (("range", b"sub"),)


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v1 (version, topics, user data, owned partitions)."""
    body = struct.pack(">hi", 1, len(topics))
    for topic in topics:
        body += struct.pack(">h", len(topic)) + topic.encode()
    return body + struct.pack(">ii", -1, 0)


class Harness:
    """One coordinator, a clock, and every completion and record it has emitted."""

    def __init__(self, **config: int) -> None:
        self.config = GroupConfig(**{"initial_rebalance_delay_ms": 0, **config})
        self.c = GroupCoordinator(self.config)
        self.now = 0
        self.completions: list[Completion] = []
        self.records: list[GroupLogRecord] = []
        # The latest answer per (kind, member id), whether immediate or a completion.
        self.answers: dict[tuple[str, str], JoinResult | SyncResult] = {}

    def take(self, step: Step[Any]) -> Step[Any]:
        self.completions.extend(step.completions)
        self.records.extend(step.records)
        for completion in step.completions:
            self.answers[(completion.kind, completion.member_id)] = completion.result
        return step

    def join(self, member_id: str = "", *, group: str = "g", instance: str | None = None,
             protocols: Protocols = RANGE, protocol_type: str = "consumer",
             session_ms: int = 10_000, rebalance_ms: int = 30_000, require: bool = False,
             skip: bool = False) -> Step[JoinResult]:
        req = JoinRequest(group, member_id, instance, "client", "/10.0.0.1", session_ms,
                          rebalance_ms, protocol_type, protocols, require, None, skip)
        step = self.c.join(req, self.now)
        self.take(step)
        if step.result is not None and step.result.error == E.none:
            self.answers[("join", step.result.member_id)] = step.result
        return step

    def sync(self, member_id: str, generation: int, assignments: dict[str, bytes] | None = None,
             *, group: str = "g", instance: str | None = None, protocol_type: str | None = None,
             protocol_name: str | None = None) -> Step[SyncResult]:
        req = SyncRequest(group, member_id, generation, instance, protocol_type, protocol_name,
                          tuple((assignments or {}).items()))
        step = self.c.sync(req, self.now)
        self.take(step)
        if step.result is not None:
            self.answers[("sync", member_id)] = step.result
        return step

    def heartbeat(self, member_id: str, generation: int, *, group: str = "g",
                  instance: str | None = None) -> int:
        step = self.c.heartbeat(HeartbeatRequest(group, member_id, generation, instance),
                                self.now)
        self.take(step)
        assert step.result is not None
        return step.result

    def commit(self, member_id: str, generation: int, *offsets: tuple[str, int, int],
               group: str = "g", instance: str | None = None,
               metadata: str | None = None) -> list[int]:
        req = CommitRequest(group, generation, member_id, instance, tuple(
            OffsetCommit(t, p, o, -1, metadata) for t, p, o in offsets))
        step = self.c.commit_offsets(req, self.now)
        self.take(step)
        assert step.result is not None
        return [error for _, _, error in step.result.partition_errors]

    def leave(self, *members: tuple[str, str | None], group: str = "g") -> tuple[int, list[int]]:
        step = self.c.leave(LeaveRequest(group, tuple(LeaveMember(m, i, None) for m, i in members)),
                            self.now)
        self.take(step)
        assert step.result is not None
        return step.result.error, [error for _, _, error in step.result.members]

    def advance(self, ms: int) -> None:
        """Moves the clock and ticks as a shell would: again while a deadline is due."""
        self.now += ms
        for _ in range(100):
            self.take(self.c.tick(self.now))
            deadline = self.c.next_deadline_ms()
            if deadline is None or deadline > self.now:
                return
        raise AssertionError("ticking does not settle")

    def answer(self, kind: str, member_id: str) -> JoinResult | SyncResult:
        """Pops the latest answer `member_id` got (a completion or an immediate result)."""
        assert (kind, member_id) in self.answers, (kind, member_id, self.answers)
        self.completions = [c for c in self.completions
                            if (c.kind, c.member_id) != (kind, member_id)]
        return self.answers.pop((kind, member_id))

    def joined(self, member_id: str) -> JoinResult:
        result = self.answer("join", member_id)
        assert isinstance(result, JoinResult)
        return result

    def synced(self, member_id: str) -> SyncResult:
        result = self.answer("sync", member_id)
        assert isinstance(result, SyncResult)
        return result

    def state(self, group: str = "g") -> str:
        return self.c.describe([group])[0].state

    def new_member(self, **kwargs: Any) -> str:
        """A member id parked in the group's current join."""
        step = self.join(**kwargs)
        assert step.pending_key is not None, step
        return step.pending_key[2]

    def stable_group(self, size: int, group: str = "g", instance: str | None = None,
                     **kwargs: Any) -> list[str]:
        """`size` members joined and synced at generation 1; the first is the leader."""
        members = [self.new_member(group=group, instance=instance, **kwargs)
                   for _ in range(size)]
        self.advance(0)
        leader = self.joined(members[0])
        assert leader.leader == members[0] and len(leader.members) == size
        for member in members[1:]:
            assert self.joined(member).members == ()
        for member in members[1:]:
            assert self.sync(member, 1, group=group, instance=instance).pending_key is not None
        step = self.sync(members[0], 1, {m: m.encode() for m in members}, group=group,
                         instance=instance)
        assert step.result is not None and step.result.assignment == members[0].encode()
        for member in members[1:]:
            assert self.synced(member).assignment == member.encode()
        self.answers.clear()
        assert self.state(group) == "Stable"
        return members


# -- JoinGroup ---------------------------------------------------------------------------------


def test_member_id_required_then_pending_member_expires() -> None:
    h = Harness()
    step = h.join(require=True)
    assert step.result is not None and step.result.error == E.member_id_required
    member_id = step.result.member_id
    assert member_id.startswith("client-") and len(member_id) == len("client-") + 36
    h.advance(9_999)
    assert h.join(member_id, require=True).pending_key == ("join", "g", member_id)
    h.advance(1)  # the initial delay (0) completes the join
    assert h.joined(member_id).generation_id == 1

    other = h.join(require=True).result
    assert other is not None and other.error == E.member_id_required
    h.advance(10_000)  # never came back: the pending member is gone
    result = h.join(other.member_id).result
    assert result is not None and result.error == E.unknown_member_id


def test_join_validation_errors() -> None:
    h = Harness()
    assert h.c.join(JoinRequest("", "", None, "c", "h", 10_000, 10_000, "consumer", RANGE,
                                False), 0).result == JoinResult(E.invalid_group_id, -1, None,
                                                                None, "", "", ())
    for session_ms in (5_999, 1_800_001):
        result = h.join(session_ms=session_ms).result
        assert result is not None and result.error == E.invalid_session_timeout
    result = h.join("someone").result  # a member id for a group that does not exist
    assert result is not None and result.error == E.unknown_member_id
    cases: list[dict[str, Any]] = [{"protocol_type": ""}, {"protocols": ()}]
    for kwargs in cases:
        result = h.join(**kwargs).result
        assert result is not None and result.error == E.inconsistent_group_protocol
    first = h.new_member()
    cases = [{"protocol_type": "connect"}, {"protocols": (("roundrobin", b""),)}]
    for kwargs in cases:
        result = h.join(**kwargs).result
        assert result is not None and result.error == E.inconsistent_group_protocol
    result = h.join("stranger").result
    assert result is not None and result.error == E.unknown_member_id
    assert h.state() == "PreparingRebalance" and first


def test_initial_rebalance_delay_extends_while_members_join() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    a = h.new_member(rebalance_ms=10_000)
    h.advance(2_000)
    b = h.new_member(rebalance_ms=10_000)
    h.advance(1_000)  # 3 s: b joined during the delay, so it is extended by another 3 s
    assert h.completions == [] and h.c.next_deadline_ms() == 6_000
    h.advance(2_999)
    assert h.completions == []
    h.advance(1)
    assert h.joined(a).members and h.joined(b).members == ()


def test_initial_delay_is_capped_by_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    h.new_member(rebalance_ms=4_000)  # remaining after the first delay: 1 s
    h.advance(1_000)
    h.new_member(rebalance_ms=4_000)
    h.advance(2_000)
    assert h.c.next_deadline_ms() == 4_000  # min(delay, remaining)
    h.advance(1_000)
    assert len(h.completions) == 2


def test_protocol_is_chosen_by_vote_among_protocols_all_support() -> None:
    h = Harness()
    a = h.new_member(protocols=(("x", b"ax"), ("y", b"ay")))
    h.new_member(protocols=(("y", b"by"), ("x", b"bx")))
    h.new_member(protocols=(("y", b"cy"), ("z", b"cz")))
    h.advance(0)
    result = h.joined(a)
    assert result.protocol_name == "y" and [m.metadata for m in result.members] == [
        b"ay", b"by", b"cy"]

    h2 = Harness()
    first = h2.new_member(protocols=(("x", b""), ("y", b"")))
    h2.new_member(protocols=(("y", b""), ("x", b"")))
    h2.advance(0)
    assert h2.joined(first).protocol_name == "x"  # a tie goes to the earliest member's vote


def test_rebalance_completes_when_all_rejoin_and_generation_increments() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    c = h.new_member()
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(a, 1) == E.rebalance_in_progress
    sync = h.sync(b, 1).result
    assert sync is not None and sync.error == E.rebalance_in_progress
    assert h.join(a).pending_key is not None
    step = h.join(b)  # the last one in: everybody's join completes now
    assert step.result is not None and step.result.generation_id == 2
    assert h.joined(a).leader == a and h.joined(c).generation_id == 2
    assert h.state() == "CompletingRebalance"


def test_members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed() -> None:
    h = Harness()
    a, b = h.stable_group(2, rebalance_ms=20_000)
    unchanged = h.join(b).result  # a follower with unchanged metadata: nothing to do
    assert unchanged is not None and unchanged.generation_id == 1 and h.state() == "Stable"
    assert h.join(b, protocols=(("range", b"new"),)).pending_key is not None  # changed
    h.advance(5_000)
    assert h.heartbeat(a, 1) == E.rebalance_in_progress  # a stays alive but never rejoins
    h.advance(5_000)
    assert h.heartbeat(a, 1) == E.rebalance_in_progress
    h.advance(9_999)
    assert h.completions == []
    h.advance(1)
    result = h.joined(b)
    assert result.leader == b and [m.member_id for m in result.members] == [b]
    assert result.members[0].metadata == b"new"
    assert h.heartbeat(a, 2) == E.unknown_member_id


def test_sync_waits_for_the_leader_and_stores_the_group() -> None:
    h = Harness()
    a = h.new_member()
    b = h.new_member()
    h.advance(0)
    h.joined(a), h.joined(b)
    assert h.heartbeat(b, 1) == E.none  # CompletingRebalance: heartbeats are fine
    assert h.sync(b, 1).pending_key == ("sync", "g", b)
    h.records.clear()
    step = h.sync(a, 1, {a: b"A"}, protocol_type="consumer", protocol_name="range")
    assert step.result == SyncResult(E.none, "consumer", "range", b"A")
    assert h.synced(b) == SyncResult(E.none, "consumer", "range", b"")  # missing: empty
    assert len(h.records) == 1 and decode_key(h.records[0].key) == GroupMetadataKey("g")
    assert h.records[0].value is not None
    value = decode_group_metadata_value(h.records[0].value)
    assert (value.generation_id, value.protocol_name, value.leader_id) == (1, "range", a)
    assert [(m.member_id, m.assignment) for m in value.members] == [(a, b"A"), (b, b"")]
    stable = h.sync(b, 1).result  # Stable: the current assignment right away
    assert stable is not None and stable.error == E.none and h.state() == "Stable"


def test_sync_errors() -> None:
    h = Harness()
    a, _ = h.stable_group(2)
    cases: list[tuple[dict[str, Any], int]] = [
        (dict(member_id="nobody", generation=1), E.unknown_member_id),
        (dict(member_id=a, generation=7), E.illegal_generation),
        (dict(member_id=a, generation=1, protocol_type="connect"), E.inconsistent_group_protocol),
        (dict(member_id=a, generation=1, protocol_name="sticky"), E.inconsistent_group_protocol),
        (dict(member_id=a, generation=1, group="other"), E.unknown_member_id),
        (dict(member_id=a, generation=1, group=""), E.invalid_group_id),
    ]
    for kwargs, error in cases:
        result = h.sync(**kwargs).result
        assert result is not None and result.error == error, kwargs


def test_heartbeat_by_state() -> None:
    h = Harness()
    assert h.heartbeat("x", 0) == E.unknown_member_id  # no such group
    assert h.heartbeat("x", 0, group="") == E.invalid_group_id
    h.commit("", -1, ("t", 0, 1), group="simple")
    assert h.heartbeat("x", 0, group="simple") == E.unknown_member_id  # Empty
    a, _ = h.stable_group(2)
    assert h.heartbeat(a, 1) == E.none
    assert h.heartbeat(a, 0) == E.illegal_generation
    assert h.heartbeat("who", 1) == E.unknown_member_id


def test_session_timeout_removes_member_and_rebalances() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    h.advance(9_000)
    assert h.heartbeat(a, 1) == E.none  # a heartbeats; b has gone quiet
    h.advance(999)
    assert h.state() == "Stable"
    h.advance(1)
    assert h.state() == "PreparingRebalance"  # b expired 10 s after its sync
    assert h.heartbeat(b, 1) == E.unknown_member_id
    assert h.heartbeat(a, 1) == E.rebalance_in_progress
    assert h.join(a).result is not None  # a is the only member left: completes at once
    assert h.state() == "CompletingRebalance"


def test_leave_group() -> None:
    h = Harness()
    a, b, c = h.stable_group(3)
    error, errors = h.leave((b, None), ("ghost", None), ("", None))
    assert error == E.none and errors == [E.none, E.unknown_member_id, E.unknown_member_id]
    assert h.state() == "PreparingRebalance"
    h.join(a)
    assert h.completions == []
    h.leave((c, None))  # the last member that had not rejoined leaves: the join completes
    result = h.joined(a)
    assert result.generation_id == 2 and len(result.members) == 1
    assert h.leave(("x", None), group="nope") == (E.none, [E.unknown_member_id])
    assert h.leave(("x", None), group="") == (E.invalid_group_id, [])


def test_leaving_member_with_parked_join_is_answered() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    h.join(b, protocols=(("range", b"new"),))
    h.leave((b, None))
    assert h.joined(b).error == E.unknown_member_id
    h.join(a)
    assert h.joined(a).generation_id == 2


def test_last_member_leaving_empties_the_group_and_stores_it() -> None:
    h = Harness()
    (a,) = h.stable_group(1)
    h.records.clear()
    h.leave((a, None))
    assert h.state() == "Empty" and len(h.records) == 1  # join completed with nobody
    assert h.records[0].value is not None
    value = decode_group_metadata_value(h.records[0].value)
    assert (value.generation_id, value.members, value.leader_id) == (2, (), None)


def test_group_max_size() -> None:
    h = Harness(max_group_size=2)
    h.stable_group(2)
    result = h.join().result
    assert result is not None and result.error == E.group_max_size_reached
    assert result.member_id == ""


def test_a_repeated_join_or_sync_replaces_the_parked_one() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    h.join(b, protocols=(("range", b"new"),))
    step = h.join(b)  # same key: the shell's new waiter replaces the old one
    assert step.pending_key == ("join", "g", b) and step.completions == ()
    h.join(a)
    assert [c.member_id for c in h.completions] == [b] and h.joined(b).generation_id == 2
    assert h.sync(b, 2).pending_key == ("sync", "g", b)
    assert h.sync(b, 2).completions == ()
    h.sync(a, 2, {a: b"a", b: b"b"})
    assert [c.member_id for c in h.completions] == [b] and h.synced(b).assignment == b"b"


def test_rejoin_with_same_metadata_in_completing_and_stable() -> None:
    h = Harness()
    a = h.new_member()
    b = h.new_member()
    h.advance(0)
    h.joined(a), h.joined(b)
    again = h.join(a).result  # CompletingRebalance, same metadata: the current generation
    assert again is not None and again.generation_id == 1 and len(again.members) == 2
    h.sync(a, 1, {a: b"1", b: b"2"})
    h.sync(b, 1)
    follower = h.join(b).result  # Stable follower, same metadata: nothing changes
    assert follower is not None and follower.generation_id == 1 and follower.members == ()
    assert h.state() == "Stable"
    assert h.join(a).pending_key is not None  # the leader's join forces a rebalance
    assert h.state() == "PreparingRebalance"


def test_new_member_join_times_out_after_five_minutes() -> None:
    h = Harness()
    (a,) = h.stable_group(1, rebalance_ms=600_000)
    late = h.new_member(rebalance_ms=600_000)  # a must rejoin; it has 10 minutes
    for _ in range(33):
        h.advance(9_000)
        assert h.heartbeat(a, 1) == E.rebalance_in_progress
    assert ("join", late) not in h.answers
    h.advance(3_000)  # 300 s after it joined
    assert h.joined(late).error == E.unknown_member_id
    assert h.join(a).result is not None  # a alone completes the rebalance


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    a = h.new_member(rebalance_ms=20_000)
    b = h.new_member(rebalance_ms=20_000)
    h.advance(0)
    h.joined(a), h.joined(b)
    h.sync(a, 1, {a: b"1", b: b"2"})
    h.advance(9_000)
    h.heartbeat(a, 1)
    h.heartbeat(b, 1)  # heartbeats, but never syncs
    h.advance(9_000)
    h.heartbeat(a, 1)
    h.advance(2_000)
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(b, 1) == E.unknown_member_id


# -- static membership (KIP-345) --------------------------------------------------------------


def test_static_member_restart_in_stable_group_keeps_assignment_without_rebalance() -> None:
    h = Harness()
    a, b = h.stable_group(2, instance=None)
    s = h.new_member(instance="i-1")
    h.join(a), h.join(b)
    for member in (a, b, s):
        assert h.joined(member).generation_id == 2
    h.sync(a, 2, {a: b"A", b: b"B", s: b"S"})
    h.sync(b, 2), h.sync(s, 2, instance="i-1")
    h.records.clear()
    step = h.join(instance="i-1")  # the instance restarts: no member id
    result = step.result
    assert result is not None and result.error == E.none and result.generation_id == 2
    assert result.member_id != s and result.member_id.startswith("i-1-")
    assert result.leader == a and result.members == () and not result.skip_assignment
    assert h.state() == "Stable" and len(step.records) == 1  # the new member id is stored
    assert h.heartbeat(s, 2, instance="i-1") == E.fenced_instance_id
    synced = h.sync(result.member_id, 2, instance="i-1").result
    assert synced is not None and synced.assignment == b"S"


def test_static_leader_restart_with_and_without_skip_assignment() -> None:
    h = Harness()
    (old,) = h.stable_group(1, instance="lead")
    old_answer = h.join(instance="lead").result  # JoinGroup < v9: the old leader id
    assert old_answer is not None and old_answer.leader == old
    new = old_answer.member_id
    skip = h.join(instance="lead", skip=True).result  # v9+: leader, but skip the assignor
    assert skip is not None and skip.skip_assignment and skip.leader == skip.member_id
    assert [m.member_id for m in skip.members] == [skip.member_id] and new != skip.member_id
    assert h.state() == "Stable"


def test_static_rejoin_rebalances_only_if_the_selected_protocol_changes() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    s = h.new_member(instance="i")
    h.join(a), h.join(b)
    h.sync(a, 2, {a: b"a", b: b"b", s: b"s"})
    wider = h.join(instance="i", protocols=(("rr", b""), ("range", b"x"))).result
    assert wider is not None and wider.generation_id == 2  # a and b only do range: no change
    assert h.state() == "Stable"

    h2 = Harness()
    h2.stable_group(1, instance="i")
    same = h2.join(instance="i", protocols=(("range", b"new"),)).result
    assert same is not None and same.generation_id == 1 and h2.state() == "Stable"
    changed = h2.join(instance="i", protocols=(("rr", b""), ("range", b""))).result
    assert changed is not None and changed.generation_id == 2  # rebalanced (alone: at once)
    assert changed.protocol_name == "rr" and h2.state() == "CompletingRebalance"


def test_static_member_rejoining_in_completing_rebalance_fences_the_old_id() -> None:
    h = Harness()
    a = h.new_member(instance="i-a")
    b = h.new_member(instance="i-b")
    h.advance(0)
    h.joined(a), h.joined(b)
    h.sync(b, 1, instance="i-b")  # parked, waiting for the leader
    step = h.join(instance="i-b")
    assert h.synced(b).error == E.fenced_instance_id
    assert step.pending_key is not None and h.state() == "PreparingRebalance"
    result = h.join(a, instance="i-a")
    assert result.result is not None and result.result.generation_id == 2


def test_static_members_not_rejoining_stay_and_expire_by_session() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    s = h.new_member(instance="s", session_ms=60_000)
    h.join(a), h.join(b)
    for member in (a, b, s):
        assert h.joined(member).generation_id == 2
    h.sync(a, 2, {a: b"a", b: b"b", s: b"s"})
    h.sync(b, 2), h.sync(s, 2, instance="s")
    h.join(a)  # the leader forces a rebalance; the static member s does not rejoin
    h.join(b)
    for _ in range(3):
        h.advance(10_000)  # a and b are parked in the join: their sessions do not run
    result = h.joined(a)  # rebalance timeout: s stays (static), the join completes without it
    assert s in [m.member_id for m in result.members] and result.generation_id == 3
    assert ("join", s) not in h.answers
    h.sync(a, 3, {a: b"a", b: b"b", s: b"s"})
    h.sync(b, 3), h.sync(s, 3, instance="s")
    for _ in range(6):
        h.advance(9_000)
        h.heartbeat(a, 3), h.heartbeat(b, 3)
    assert h.state() == "Stable"
    h.advance(9_000)  # 63 s after s's last sync: its session is over
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(s, 3, instance="s") == E.unknown_member_id


def test_leave_by_instance_id_and_fencing() -> None:
    h = Harness()
    a, b = h.stable_group(2, instance=None)
    s = h.new_member(instance="s")
    h.join(a), h.join(b)
    h.advance(0)
    assert h.leave(("wrong-id", "s"), ("", "unknown")) == (
        E.none, [E.fenced_instance_id, E.unknown_member_id])
    assert h.leave(("", "s")) == (E.none, [E.none])
    assert h.heartbeat(s, 2, instance="s") == E.unknown_member_id


# -- offsets ----------------------------------------------------------------------------------


def test_simple_commit_creates_an_empty_group_and_fetch() -> None:
    h = Harness()
    assert h.commit("", -1, ("t", 0, 5), ("t", 1, 7), group="simple") == [E.none, E.none]
    assert h.state("simple") == "Empty"
    error, offsets = h.c.fetch_offsets("simple", [("t", 0), ("t", 9)])
    assert error == E.none and list(offsets) == [("t", 0)] and offsets[("t", 0)].offset == 5
    assert len(h.c.fetch_offsets("simple", None)[1]) == 2
    assert h.c.fetch_offsets("unknown", None) == (E.none, {})
    assert h.commit("m", 3, ("t", 0, 1), group="nope") == [E.illegal_generation]
    assert len(h.records) == 2
    key = decode_key(h.records[0].key)
    assert key == OffsetCommitKey("simple", "t", 0) and h.records[0].value is not None
    assert decode_offset_commit_value(h.records[0].value) == OffsetCommitValue(5, -1, "", 0)


def test_commit_rules_by_state_and_member() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    assert h.commit(a, 1, ("t", 0, 1)) == [E.none]
    assert h.commit(a, 0, ("t", 0, 1)) == [E.illegal_generation]
    assert h.commit("who", 1, ("t", 0, 1)) == [E.unknown_member_id]
    assert h.commit("", -1, ("t", 0, 1)) == [E.unknown_member_id]  # the group has members
    h.join(a)
    assert h.state() == "PreparingRebalance"
    assert h.commit(b, 1, ("t", 0, 2)) == [E.none]  # still allowed while preparing
    h.join(b)
    assert h.state() == "CompletingRebalance"
    assert h.commit(b, 2, ("t", 0, 3)) == [E.rebalance_in_progress]
    too_long = "x" * 4097
    assert h.commit("", -1, ("u", 0, 1), group="s", metadata=too_long) == [
        E.offset_metadata_too_large]
    assert h.commit("", -1, ("u", 0, 1), group="s", metadata="x" * 4096) == [E.none]


def test_commit_fenced_static_member() -> None:
    h = Harness()
    h.stable_group(1, instance="i")
    assert h.commit("other", 1, ("t", 0, 1), instance="i") == [E.fenced_instance_id]


def test_offsets_of_an_empty_group_expire_after_retention() -> None:
    h = Harness(offsets_retention_ms=100_000, offsets_retention_check_interval_ms=10_000)
    (a,) = h.stable_group(1)
    h.commit(a, 1, ("t", 0, 1))
    h.advance(200_000 - h.now)
    h.heartbeat(a, 1)
    assert h.c.fetch_offsets("g", None)[1]  # Stable and subscribed (unparseable): kept
    h.leave((a, None))  # Empty from now on
    emptied_at = h.now
    h.records.clear()
    h.advance(99_000)
    assert h.c.fetch_offsets("g", None)[1]
    h.advance(emptied_at + 110_000 - h.now)
    assert h.c.fetch_offsets("g", None)[1] == {}
    assert [(decode_key(r.key), r.value) for r in h.records] == [
        (OffsetCommitKey("g", "t", 0), None), (GroupMetadataKey("g"), None)]
    assert h.c.describe(["g"])[0].error == E.group_id_not_found


def test_empty_group_without_offsets_is_removed_at_the_next_retention_check() -> None:
    h = Harness(offsets_retention_check_interval_ms=60_000)
    (a,) = h.stable_group(1)
    h.leave((a, None))
    h.records.clear()
    h.advance(59_999)
    assert h.state() == "Empty"
    h.advance(1)
    assert h.c.list_groups() == [] and h.c.next_deadline_ms() is None
    assert [(decode_key(r.key), r.value) for r in h.records] == [(GroupMetadataKey("g"), None)]


def test_pending_member_rejoining_with_an_instance_id_is_refused() -> None:
    h = Harness()
    result = h.join(require=True).result
    assert result is not None
    refused = h.join(result.member_id, instance="i").result  # Kafka: IllegalStateException
    assert refused is not None and refused.error == E.unknown_server_error


def test_simple_group_offsets_expire_per_commit() -> None:
    h = Harness(offsets_retention_ms=50_000, offsets_retention_check_interval_ms=1_000)
    h.commit("", -1, ("t", 0, 1), group="s")
    h.advance(30_000)
    h.commit("", -1, ("t", 1, 1), group="s")
    h.advance(21_000)
    assert list(h.c.fetch_offsets("s", None)[1]) == [("t", 1)]
    h.records.clear()
    h.advance(30_000)
    assert h.c.list_groups() == []  # gone, with no metadata tombstone (never had one)
    assert [decode_key(r.key) for r in h.records] == [OffsetCommitKey("s", "t", 1)]


def test_stable_consumer_group_expires_offsets_of_unsubscribed_topics() -> None:
    h = Harness(offsets_retention_ms=50_000, offsets_retention_check_interval_ms=1_000)
    (a,) = h.stable_group(1, protocols=(("range", subscription("keep")),))
    h.commit(a, 1, ("keep", 0, 1), ("gone", 0, 1))
    for _ in range(6):
        h.advance(9_000)
        h.heartbeat(a, 1)
    assert list(h.c.fetch_offsets("g", None)[1]) == [("keep", 0)]


def test_delete_offsets() -> None:
    h = Harness()
    assert h.c.delete_offsets("nope", [("t", 0)], 0).result == (E.group_id_not_found, ())
    (a,) = h.stable_group(1, protocols=(("range", subscription("sub")),))
    h.commit(a, 1, ("sub", 0, 1), ("free", 0, 1))
    step = h.c.delete_offsets("g", [("sub", 0), ("free", 0), ("free", 5)], h.now)
    assert step.result == (E.none, (("sub", 0, E.group_subscribed_to_topic),
                                    ("free", 0, E.none), ("free", 5, E.none)))
    assert [(decode_key(r.key), r.value) for r in step.records] == [
        (OffsetCommitKey("g", "free", 0), None)]
    h.stable_group(1, group="connect", protocol_type="connect")
    assert h.c.delete_offsets("connect", [("t", 0)], h.now).result == (E.non_empty_group, ())
    h.commit("", -1, ("t", 0, 1), group="s")
    step = h.c.delete_offsets("s", [("t", 0)], h.now)
    assert step.result == (E.none, (("t", 0, E.none),)) and h.c.list_groups(["Empty"]) == []


def test_delete_groups() -> None:
    h = Harness()
    h.stable_group(1)
    h.commit("", -1, ("t", 0, 1), group="s")
    step = h.c.delete_groups(["g", "s", "nope", "s"], h.now)
    assert step.result == [("g", E.non_empty_group), ("s", E.none),
                           ("nope", E.group_id_not_found)]
    assert [(decode_key(r.key), r.value) for r in step.records] == [
        (OffsetCommitKey("s", "t", 0), None)]  # "s" never had a generation: no group tombstone
    h.leave((h.c.describe(["g"])[0].members[0].member_id, None))
    h.commit("", -1, ("t", 0, 1))
    step = h.c.delete_groups(["g"], h.now)
    assert [(decode_key(r.key), r.value) for r in step.records] == [
        (OffsetCommitKey("g", "t", 0), None), (GroupMetadataKey("g"), None)]


# -- describe, list, partition_for -----------------------------------------------------------


def test_describe_and_list_groups() -> None:
    h = Harness()
    (a,) = h.stable_group(1)
    h.new_member(group="p")
    h.commit("", -1, ("t", 0, 1), group="s")
    (described,) = h.c.describe(["g"])
    assert (described.state, described.protocol_type, described.protocol) == (
        "Stable", "consumer", "range")
    assert described.members[0].member_id == a and described.members[0].assignment == a.encode()
    (preparing,) = h.c.describe(["p"])
    assert preparing.protocol == "" and preparing.members[0].metadata == b""
    assert {g.group_id for g in h.c.list_groups()} == {"g", "p", "s"}
    assert [g.group_id for g in h.c.list_groups(["stable", "EMPTY"])] == ["g", "s"]
    assert h.c.list_groups(types=["consumer"]) == []
    assert len(h.c.list_groups(types=["Classic"])) == 3
    assert h.c.list_groups(["Empty"])[0].protocol_type == ""


def test_partition_for_matches_java_string_hash_code() -> None:
    c = GroupCoordinator(GroupConfig())
    assert c.partition_for("g") == 103 % 50
    assert c.partition_for("hello") == 99162322 % 50
    assert c.partition_for("polygenelubricants") == 0  # hashCode is Integer.MIN_VALUE
    assert c.partition_for("\U0001f600") == (0xD83D * 31 + 0xDE00) % 50  # UTF-16 units
    assert c.partition_for("console-consumer-12345") == (
        abs(_java_hash("console-consumer-12345")) & 0x7FFFFFFF) % 50


def _java_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


# -- record formats and replay ---------------------------------------------------------------


def test_record_formats_are_kafkas_bytes() -> None:
    assert encode_offset_commit_key(OffsetCommitKey("g", "t", 2)) == (
        b"\x00\x01" b"\x00\x01g" b"\x00\x01t" b"\x00\x00\x00\x02")
    assert encode_group_metadata_key(GroupMetadataKey("g")) == b"\x00\x02\x00\x01g"
    assert encode_offset_commit_value(OffsetCommitValue(7, 3, "m", 9)) == (
        b"\x00\x03" + struct.pack(">qi", 7, 3) + b"\x00\x01m" + struct.pack(">q", 9))
    member = MemberMetadataValue("m", None, "c", "h", 5, 6, b"S", b"A")
    value = GroupMetadataValue("consumer", 4, "range", "m", 11, (member,))
    raw = encode_group_metadata_value(value)
    assert raw == (b"\x00\x03\x00\x08consumer" + struct.pack(">i", 4) + b"\x00\x05range"
                   b"\x00\x01m" + struct.pack(">qi", 11, 1) + b"\x00\x01m\xff\xff\x00\x01c"
                   b"\x00\x01h" + struct.pack(">ii", 5, 6) + b"\x00\x00\x00\x01S"
                   b"\x00\x00\x00\x01A")
    assert decode_group_metadata_value(raw) == value


def test_old_value_versions_decode() -> None:
    v0 = b"\x00\x00" + struct.pack(">q", 5) + b"\x00\x00" + struct.pack(">q", 9)
    assert decode_offset_commit_value(v0) == OffsetCommitValue(5, -1, "", 9)
    v1 = b"\x00\x01" + struct.pack(">q", 5) + b"\x00\x00" + struct.pack(">qq", 9, 99)
    assert decode_offset_commit_value(v1) == OffsetCommitValue(5, -1, "", 9, 99)
    v4 = b"\x00\x04" + struct.pack(">qi", 5, 1) + b"\x02m" + struct.pack(">q", 9) + b"\x00"
    assert decode_offset_commit_value(v4) == OffsetCommitValue(5, 1, "m", 9)
    g0 = (b"\x00\x00\x00\x01c" + struct.pack(">i", 2) + b"\xff\xff\xff\xff"
          + struct.pack(">i", 1) + b"\x00\x01m\x00\x01c\x00\x01h" + struct.pack(">i", 7)
          + b"\x00\x00\x00\x00\x00\x00\x00\x00")
    decoded = decode_group_metadata_value(g0)
    assert decoded.members[0].rebalance_timeout_ms == 7 and decoded.current_state_timestamp_ms == -1


@pytest.mark.parametrize("raw", [
    b"", b"\x00", b"\x00\x09\x00\x01g", b"\x00\x02\x00\x05g", b"\x00\x02\x00\x01g!",
    b"\x00\x01\x00\x01g\xff\xff\x00\x00\x00\x00", b"\x00\x02\x00\x02\xff\xfe",
])
def test_bad_keys_raise_log_format_error(raw: bytes) -> None:
    with pytest.raises(LogFormatError):
        decode_key(raw)


def test_bad_values_raise_log_format_error() -> None:
    good = encode_group_metadata_value(GroupMetadataValue(
        "consumer", 1, "r", "m", 0, (MemberMetadataValue("m", "i", "c", "h", 1, 1, b"", b""),)))
    for cut in range(len(good)):
        with pytest.raises(LogFormatError):
            decode_group_metadata_value(good[:cut])
    huge_count = good[:good.index(b"\x00\x00\x00\x01\x00\x01m")] + b"\x7f\xff\xff\xff"
    with pytest.raises(LogFormatError, match="array count"):
        decode_group_metadata_value(huge_count)
    with pytest.raises(LogFormatError, match="version"):
        decode_offset_commit_value(b"\x00\x07" + b"\x00" * 30)


def test_replay_rebuilds_groups_and_offsets(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    a, b = h.stable_group(2)
    h.commit(a, 1, ("t", 0, 10), ("t", 1, 11))
    h.commit("", -1, ("u", 0, 3), group="simple")
    h.take(h.c.delete_offsets("simple", [("u", 0)], h.now))
    h.commit("", -1, ("u", 1, 4), group="simple")
    fresh = GroupCoordinator(h.config)
    with caplog.at_level(logging.WARNING):
        fresh.replay(GroupLogRecord(0, b"\x00\x09junk", b""))
        for record in h.records:
            fresh.replay(record)
    assert "skipping unreadable" in caplog.text
    assert fresh.fetch_offsets("g", None) == h.c.fetch_offsets("g", None)
    assert fresh.fetch_offsets("simple", None) == h.c.fetch_offsets("simple", None)
    assert fresh.describe(["g", "simple"]) == h.c.describe(["g", "simple"])
    assert fresh.next_deadline_ms() == 0  # loaded members' sessions start on the first tick
    fresh.tick(h.now)
    assert fresh.heartbeat(HeartbeatRequest("g", b, 1, None), h.now + 5_000).result == E.none
    fresh.tick(h.now + 10_000)  # a never heartbeats: its session ends
    assert fresh.describe(["g"])[0].state == "PreparingRebalance"
