"""KIP-848 consumer groups in the I/O-free coordinator: joins, epochs, fencing, revocation
before assignment, assignors, timeouts, offsets by member epoch and coexistence with classic."""

from __future__ import annotations

import uuid
from dataclasses import replace

from kio.schema.errors import ErrorCode

from strom.coordinator.group.assignors import range_, uniform
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import (
    CommitRequest,
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
    GroupConfig,
    JoinRequest,
    OffsetCommit,
    TopicMetadata,
    TopicPartitionIds,
)
from strom.coordinator.group.reconcile import MemberAssignment, MemberState, reconcile

T1 = uuid.UUID(int=1)
T2 = uuid.UUID(int=2)
TOPICS = (TopicMetadata("t1", T1, 6), TopicMetadata("t2", T2, 2))
CONFIG = GroupConfig(consumer_session_timeout_ms=45_000, consumer_heartbeat_interval_ms=5_000)


def beat(member: str, epoch: int, *, group: str = "g", topics: tuple[str, ...] | None = ("t1",),
         owned: TopicPartitionIds | None = (), assignor: str | None = None,
         regex: str | None = None, instance: str | None = None,
         cluster: tuple[TopicMetadata, ...] = TOPICS) -> ConsumerHeartbeatRequest:
    return ConsumerHeartbeatRequest(
        group_id=group, member_id=member, member_epoch=epoch, instance_id=instance,
        rack_id=None, rebalance_timeout_ms=30_000 if epoch == 0 else -1,
        subscribed_topic_names=topics, subscribed_topic_regex=regex, server_assignor=assignor,
        owned=owned, client_id="c", client_host="/h", topics=cluster)


def hb(coord: GroupCoordinator, req: ConsumerHeartbeatRequest,
       now_ms: int = 0) -> ConsumerHeartbeatResult:
    result = coord.consumer_heartbeat(req, now_ms).result
    assert result is not None
    return result


def parts(result: ConsumerHeartbeatResult) -> set[int]:
    assert result.assignment is not None
    return {p for _, ps in result.assignment for p in ps}


def test_first_member_gets_everything_and_epoch_one() -> None:
    coord = GroupCoordinator(CONFIG)
    r = hb(coord, beat("a", 0))
    assert r.error == ErrorCode.none
    assert r.member_epoch == 1
    assert r.heartbeat_interval_ms == 5_000
    assert parts(r) == set(range(6))
    again = hb(coord, beat("a", 1, owned=((T1, tuple(range(6))),)))
    assert again.member_epoch == 1 and again.assignment is None
    assert coord.consumer_describe(["g"])[0].state == "Stable"


def test_second_member_waits_for_revocation() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))
    b = hb(coord, beat("b", 0))
    assert b.member_epoch == 2
    assert parts(b) == set()  # a still owns everything
    a = hb(coord, beat("a", 1, owned=((T1, tuple(range(6))),)))
    assert a.member_epoch == 1  # revoking: epoch kept
    kept = parts(a)
    assert len(kept) == 3
    group = coord.consumer_group("g")
    assert group is not None and group.members["a"].assignment.state is \
        MemberState.UNREVOKED_PARTITIONS
    b = hb(coord, beat("b", 2, owned=()))
    assert parts(b) == set() if b.assignment is not None else True
    a = hb(coord, beat("a", 1, owned=((T1, tuple(sorted(kept))),)))
    assert a.member_epoch == 2
    b = hb(coord, beat("b", 2, owned=()))
    assert parts(b) == set(range(6)) - kept
    assert coord.consumer_describe(["g"])[0].state == "Stable"


def test_fencing_and_unknown_member() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))
    assert hb(coord, beat("a", 5)).error == ErrorCode.fenced_member_epoch
    assert hb(coord, beat("zz", 1)).error == ErrorCode.unknown_member_id
    assert hb(coord, beat("a", 1, group="other")).error == ErrorCode.unknown_member_id


def test_previous_epoch_accepted_only_with_owned_subset() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))  # epoch 1
    hb(coord, beat("a", 1, topics=("t1", "t2"), owned=((T1, tuple(range(6))),)))  # epoch 2
    ok = hb(coord, beat("a", 1, topics=None, owned=((T1, (0, 1)),)))
    assert ok.error == ErrorCode.none and ok.member_epoch == 2
    assert hb(coord, beat("a", 1, topics=None, owned=None)).error == \
        ErrorCode.fenced_member_epoch


def test_validation_errors() -> None:
    coord = GroupCoordinator(CONFIG)
    assert hb(coord, beat("", 0)).error == ErrorCode.invalid_request
    assert hb(coord, beat("a", 0, topics=None)).error == ErrorCode.invalid_request
    assert hb(coord, replace(beat("a", 0), rebalance_timeout_ms=-1)).error == \
        ErrorCode.invalid_request
    assert hb(coord, beat("a", 0, owned=None)).error == ErrorCode.invalid_request
    assert hb(coord, beat("a", -2)).error == ErrorCode.invalid_request
    assert hb(coord, beat("a", 0, assignor="sticky")).error == ErrorCode.unsupported_assignor
    assert hb(coord, beat("a", 0, topics=None, regex="(")).error == \
        ErrorCode.invalid_regular_expression


def test_leave_moves_partitions() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))
    hb(coord, beat("b", 0))
    a = hb(coord, beat("a", 1, owned=((T1, tuple(range(6))),)))
    a = hb(coord, beat("a", 1, owned=((T1, tuple(sorted(parts(a)))),)))
    left = hb(coord, beat("a", -1))
    assert left.member_epoch == -1
    b = hb(coord, beat("b", 2, owned=()))
    assert parts(b) == set(range(6))
    assert b.member_epoch == 3


def test_session_expiry_fences_member() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0), now_ms=0)
    hb(coord, beat("b", 0), now_ms=0)
    for now in (10_000, 20_000, 30_000, 40_000, 50_000):
        hb(coord, beat("b", 2, owned=()), now_ms=now)
    coord.tick(46_000)
    group = coord.consumer_group("g")
    assert group is not None and set(group.members) == {"b"}
    b = hb(coord, beat("b", 2, owned=()), now_ms=60_000)
    assert parts(b) == set(range(6))
    assert hb(coord, beat("a", 1), now_ms=60_000).error == ErrorCode.unknown_member_id


def test_revocation_timeout_fences_slow_member() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0), now_ms=0)
    hb(coord, beat("b", 0), now_ms=0)
    hb(coord, beat("a", 1, owned=((T1, tuple(range(6))),)), now_ms=0)  # told to revoke
    hb(coord, beat("b", 2, owned=()), now_ms=20_000)
    coord.tick(30_001)
    group = coord.consumer_group("g")
    assert group is not None and set(group.members) == {"b"}


def test_new_partitions_picked_up() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))
    bigger = (TopicMetadata("t1", T1, 8), TopicMetadata("t2", T2, 2))
    r = hb(coord, beat("a", 1, owned=((T1, tuple(range(6))),), cluster=bigger))
    assert r.member_epoch == 2 and parts(r) == set(range(8))


def test_regex_subscription() -> None:
    coord = GroupCoordinator(CONFIG)
    r = hb(coord, beat("a", 0, topics=None, regex="t.*"))
    assert r.assignment is not None
    assert {t for t, _ in r.assignment} == {T1, T2}


def test_group_max_size() -> None:
    coord = GroupCoordinator(replace(CONFIG, max_group_size=1))
    hb(coord, beat("a", 0))
    assert hb(coord, beat("b", 0)).error == ErrorCode.group_max_size_reached


def test_static_member_temporary_leave_and_rejoin() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0, instance="i1"))
    left = hb(coord, beat("a", -2, instance="i1"))
    assert left.member_epoch == -2
    assert hb(coord, beat("a2", 0, instance="i1")).error == ErrorCode.none
    group = coord.consumer_group("g")
    assert group is not None and set(group.members) == {"a2"}
    hb(coord, beat("b", 0, instance="i2"))
    assert hb(coord, beat("b2", 0, instance="i2")).error == ErrorCode.unreleased_instance_id


def test_commit_checks_member_epoch() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0))

    def commit(member: str, epoch: int) -> int:
        req = CommitRequest("g", epoch, member, None, (OffsetCommit("t1", 0, 5, -1, None),))
        result = coord.commit_offsets(req, 0).result
        assert result is not None
        return result.partition_errors[0][2]

    assert commit("a", 1) == ErrorCode.none
    assert commit("a", 0) == ErrorCode.stale_member_epoch
    assert commit("x", 1) == ErrorCode.unknown_member_id
    assert commit("", -1) == ErrorCode.unknown_member_id  # the group has members
    assert coord.fetch_offsets("g", [("t1", 0)])[1][("t1", 0)].offset == 5
    assert coord.validate_offset_fetch("g", "a", 0) == ErrorCode.stale_member_epoch
    assert coord.validate_offset_fetch("g", None, -1) is None


def test_coexistence_with_classic() -> None:
    coord = GroupCoordinator(replace(CONFIG, initial_rebalance_delay_ms=0))
    join = JoinRequest("cg", "", None, "c", "/h", 10_000, 10_000, "consumer",
                       (("range", b""),), False)
    coord.join(join, 0)
    coord.tick(0)
    r = hb(coord, beat("a", 0, group="cg"))
    assert r.error == ErrorCode.group_id_not_found
    assert r.error_message == "Group cg is not a consumer group."
    hb(coord, beat("a", 0))
    joined = coord.join(replace(join, group_id="g"), 0).result
    assert joined is not None and joined.error == ErrorCode.inconsistent_group_protocol
    listed = {(g.group_id, g.group_type) for g in coord.list_groups()}
    assert ("g", "consumer") in listed and ("cg", "classic") in listed
    assert [g.group_id for g in coord.list_groups(types=["consumer"])] == ["g"]
    deleted = coord.delete_groups(["g"], 0).result
    assert deleted == [("g", ErrorCode.non_empty_group)]
    hb(coord, beat("a", -1))
    assert coord.delete_groups(["g"], 0).result == [("g", ErrorCode.none)]
    assert coord.consumer_describe(["g"])[0].error == ErrorCode.group_id_not_found


def test_describe() -> None:
    coord = GroupCoordinator(CONFIG)
    hb(coord, beat("a", 0, assignor="range"))
    d = coord.consumer_describe(["g"])[0]
    assert (d.state, d.group_epoch, d.assignment_epoch, d.assignor_name) == \
        ("Stable", 1, 1, "range")
    assert d.members[0].assignment == ((T1, tuple(range(6))),)
    assert d.members[0].target_assignment == ((T1, tuple(range(6))),)


def test_uniform_is_balanced_and_sticky() -> None:
    subs = {m: frozenset({T1, T2}) for m in ("a", "b", "c")}
    counts = {T1: 6, T2: 2}
    first = uniform(subs, counts, {})
    sizes = sorted(sum(len(ps) for ps in a.values()) for a in first.values())
    assert sizes[-1] - sizes[0] <= 1 and sum(sizes) == 8
    del subs["c"]
    second = uniform(subs, counts, first)
    for member in ("a", "b"):
        for topic, ps in first[member].items():
            assert ps <= second[member].get(topic, frozenset())


def test_range_matches_client_range() -> None:
    subs = {m: frozenset({T1}) for m in ("b", "a", "c", "d")}
    out = range_(subs, {T1: 6}, {})
    assert out["a"][T1] == {0, 1} and out["b"][T1] == {2, 3}
    assert out["c"][T1] == {4} and out["d"][T1] == {5}


def test_reconcile_withholds_partitions_owned_elsewhere() -> None:
    member = MemberAssignment(1, 0, MemberState.STABLE, {T1: frozenset({0})})
    out = reconcile(member, 2, {T1: frozenset({0, 1})}, {T1: frozenset({0})},
                    lambda t, p: 1 if p == 1 else -1)
    assert out.state is MemberState.UNRELEASED_PARTITIONS
    assert out.member_epoch == 2 and out.assigned == {T1: frozenset({0})}
