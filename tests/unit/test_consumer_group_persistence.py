"""KIP-848 consumer groups in `__consumer_offsets`: record types 3-8 round trip, a coordinator
driven through joins, reconciliation, leaves and expiry emits records whose replay into a fresh
coordinator reproduces the groups, and unreadable records are skipped."""

from __future__ import annotations

import struct
import uuid

import pytest
from kio.schema.errors import ErrorCode

from strom.coordinator.group import consumer_log_format as clf
from strom.coordinator.group.consumer_group import ConsumerGroup, to_ids
from strom.coordinator.group.consumer_group_log import persisted_view
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import (
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
    GroupConfig,
    GroupLogRecord,
    TopicMetadata,
    TopicPartitionIds,
)
from strom.coordinator.log_codec import LogFormatError

T1 = uuid.UUID(int=1)
T2 = uuid.UUID(int=2)
TOPICS = (TopicMetadata("t1", T1, 6), TopicMetadata("t2", T2, 2))
CONFIG = GroupConfig(consumer_session_timeout_ms=45_000, consumer_heartbeat_interval_ms=5_000)

VALUES: list[tuple[clf.ConsumerKey, clf.ConsumerValue]] = [
    (clf.ConsumerKey(clf.GROUP_METADATA, "g"), clf.GroupEpochValue(7)),
    (clf.ConsumerKey(clf.PARTITION_METADATA, "g"), clf.PartitionMetadataValue((
        clf.TopicMetadataValue(T1, "t1", 6), clf.TopicMetadataValue(T2, "tö", 2)))),
    (clf.ConsumerKey(clf.PARTITION_METADATA, "g"), clf.PartitionMetadataValue(())),
    (clf.ConsumerKey(clf.MEMBER_METADATA, "g", "m1"), clf.MemberMetadataValue(
        "inst", "rack", "client", "/10.0.0.1", ("t1", "t2"), "t.*", "uniform", 30_000)),
    (clf.ConsumerKey(clf.MEMBER_METADATA, "g", "m2"), clf.MemberMetadataValue(
        None, None, "", "", (), None, None, -1)),
    (clf.ConsumerKey(clf.TARGET_ASSIGNMENT_METADATA, "g"), clf.AssignmentEpochValue(6)),
    (clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, "g", "m1"),
     clf.TargetMemberValue(((T1, (0, 1, 2)), (T2, (1,))))),
    (clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, "g", "m2"), clf.TargetMemberValue(())),
    (clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, "g", "m1"), clf.CurrentAssignmentValue(
        6, 5, clf.STATE_UNREVOKED_PARTITIONS, ((T1, (0, 1)),), ((T2, (0,)),))),
]


@pytest.mark.parametrize(("key", "value"), VALUES)
def test_round_trip(key: clf.ConsumerKey, value: clf.ConsumerValue) -> None:
    raw_key = clf.encode_key(key)
    assert clf.key_version(raw_key) == key.kind
    assert clf.decode_key(raw_key) == key
    assert clf.kind_of(value) == key.kind
    assert clf.decode_value(key.kind, clf.encode_value(value)) == value


def test_kafka_layouts() -> None:
    """Keys: int16 type, int16-length strings; values: int16 version 0, then flexible fields."""
    key = clf.encode_key(clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, "g", "m"))
    assert key == b"\x00\x08\x00\x01g\x00\x01m"
    assert clf.encode_key(clf.ConsumerKey(clf.GROUP_METADATA, "g")) == b"\x00\x03\x00\x01g"
    assert clf.encode_value(clf.GroupEpochValue(5)) == b"\x00\x00\x00\x00\x00\x05\x00"
    current = clf.encode_value(clf.CurrentAssignmentValue(3, 2, 0, ((T1, (4,)),), ()))
    assert current == (b"\x00\x00" + struct.pack(">iib", 3, 2, 0) + b"\x02" + T1.bytes
                       + b"\x02\x00\x00\x00\x04\x00" + b"\x01" + b"\x00")


@pytest.mark.parametrize(("key", "value"), VALUES)
def test_truncated_and_trailing_bytes_rejected(key: clf.ConsumerKey,
                                               value: clf.ConsumerValue) -> None:
    raw = clf.encode_value(value)
    for cut in range(len(raw)):
        with pytest.raises(LogFormatError):
            clf.decode_value(key.kind, raw[:cut])
    with pytest.raises(LogFormatError):
        clf.decode_value(key.kind, raw + b"\x00")
    raw_key = clf.encode_key(key)
    for cut in range(len(raw_key)):
        with pytest.raises(LogFormatError):
            clf.decode_key(raw_key[:cut])


def test_bad_versions_rejected() -> None:
    with pytest.raises(LogFormatError):
        clf.decode_value(clf.GROUP_METADATA, b"\x00\x01\x00\x00\x00\x05\x00")
    with pytest.raises(LogFormatError):
        clf.decode_key(b"\x00\x09\x00\x01g")
    with pytest.raises(LogFormatError):
        clf.encode_key(clf.ConsumerKey(clf.MEMBER_METADATA, "g"))


# -- a coordinator's records, replayed ------------------------------------------------------


def beat(member: str, epoch: int, *, owned: TopicPartitionIds | None = (),
         topics: tuple[str, ...] | None = ("t1",), instance: str | None = None,
         group: str = "g") -> ConsumerHeartbeatRequest:
    return ConsumerHeartbeatRequest(
        group_id=group, member_id=member, member_epoch=epoch, instance_id=instance,
        rack_id="r1" if member == "a" else None,
        rebalance_timeout_ms=30_000 if epoch == 0 else -1, subscribed_topic_names=topics,
        subscribed_topic_regex=None, server_assignor=None, owned=owned, client_id="c",
        client_host="/h", topics=TOPICS)


class Driver:
    """A coordinator whose emitted records are kept, in order, as the log would."""

    def __init__(self) -> None:
        self.coord = GroupCoordinator(CONFIG)
        self.log: list[GroupLogRecord] = []

    def hb(self, req: ConsumerHeartbeatRequest, now_ms: int = 0) -> ConsumerHeartbeatResult:
        step = self.coord.consumer_heartbeat(req, now_ms)
        self.log += step.records
        self.check(req.group_id)
        assert step.result is not None
        return step.result

    def tick(self, now_ms: int) -> None:
        self.log += self.coord.tick(now_ms).records
        self.check("g")

    def check(self, group_id: str) -> None:
        """The log, compacted, holds exactly the group's full view (the incremental writes
        miss nothing)."""
        folded: dict[clf.ConsumerKey, clf.ConsumerValue] = {}
        for record in self.log:
            key = clf.decode_key(record.key)
            if key.group_id != group_id:
                continue
            if record.value is None:
                assert key in folded, f"tombstone of a key never written: {key}"
                del folded[key]
            else:
                folded[key] = clf.decode_value(key.kind, record.value)
        group = self.coord.consumer_group(group_id)
        assert folded == ({} if group is None else persisted_view(group))

    def replayed(self, now_ms: int = 0) -> GroupCoordinator:
        fresh = GroupCoordinator(CONFIG)
        for record in self.log:
            fresh.replay(record)
        fresh.tick(now_ms)  # the first call after replay loads the groups
        return fresh


def owned(result: ConsumerHeartbeatResult) -> TopicPartitionIds:
    assert result.assignment is not None
    return result.assignment


def snapshot(group: ConsumerGroup | None) -> object:
    assert group is not None
    return (group.group_epoch, group.assignment_epoch, group.state(),
            {m.member_id: (m.assignment, m.instance_id, m.rack_id, m.subscribed_topic_names,
                           m.rebalance_timeout_ms) for m in group.members.values()},
            group.target, group.partition_owners, group.subscription_metadata,
            group.static_members, persisted_view(group))


def assert_replays(driver: Driver, group_id: str = "g") -> GroupCoordinator:
    fresh = driver.replayed()
    assert snapshot(fresh.consumer_group(group_id)) == \
        snapshot(driver.coord.consumer_group(group_id))
    return fresh


def test_joins_reconciliation_and_leave_replay() -> None:
    d = Driver()
    a = d.hb(beat("a", 0))
    assert a.member_epoch == 1
    assert_replays(d)
    b = d.hb(beat("b", 0))
    assert b.member_epoch == 2
    fresh = assert_replays(d)  # a is Reconciling: UNREVOKED_PARTITIONS
    group = fresh.consumer_group("g")
    assert group is not None and group.state().value == "Reconciling"
    a = d.hb(beat("a", 1, owned=tuple((t, tuple(range(6))) for t in (T1,))))
    assert_replays(d)
    a = d.hb(beat("a", 1, owned=owned(a)))
    assert a.member_epoch == 2
    assert_replays(d)
    b = d.hb(beat("b", 2, owned=()))
    assert_replays(d)
    c = d.hb(beat("c", 0, topics=("t1", "t2"), instance="i-c"))
    assert c.member_epoch == 3
    assert_replays(d)
    d.hb(beat("b", -1, owned=None))
    fresh = assert_replays(d)
    group = fresh.consumer_group("g")
    assert group is not None and set(group.members) == {"a", "c"}


def test_replayed_members_keep_heartbeating_without_rebalance() -> None:
    d = Driver()
    a = d.hb(beat("a", 0))
    b = d.hb(beat("b", 0))
    a = d.hb(beat("a", 1, owned=((T1, tuple(range(6))),)))
    a = d.hb(beat("a", 1, owned=owned(a)))
    b = d.hb(beat("b", 2, owned=()))
    b = d.hb(beat("b", 2, owned=owned(b)))
    group = d.coord.consumer_group("g")
    assert group is not None and group.state().value == "Stable"
    holding = {m: to_ids(group.members[m].assignment.assigned) for m in ("a", "b")}
    assert all(holding.values())
    fresh = d.replayed(now_ms=1_000)
    for member in ("a", "b"):
        again = fresh.consumer_heartbeat(beat(member, 2, owned=holding[member]), 2_000).result
        assert again is not None
        assert (again.error, again.member_epoch, again.assignment) == (ErrorCode.none, 2, None)
    restored = fresh.consumer_group("g")
    assert restored is not None and restored.group_epoch == 2
    assert restored.state().value == "Stable"


def test_session_expiry_after_replay_and_tombstones() -> None:
    d = Driver()
    d.hb(beat("a", 0))
    d.hb(beat("b", 0))
    fresh = d.replayed(now_ms=10_000)
    step = fresh.tick(10_000 + CONFIG.consumer_session_timeout_ms + 1)
    assert fresh.consumer_group("g") is not None
    assert not fresh.consumer_group("g").members  # type: ignore[union-attr]
    tombstones = [clf.decode_key(r.key) for r in step.records if r.value is None]
    assert {(k.kind, k.member_id) for k in tombstones} == {
        (kind, m) for kind in (clf.MEMBER_METADATA, clf.TARGET_ASSIGNMENT_MEMBER,
                               clf.CURRENT_MEMBER_ASSIGNMENT) for m in ("a", "b")}


def test_expiry_and_delete_leave_nothing_to_replay() -> None:
    d = Driver()
    d.hb(beat("a", 0))
    d.hb(beat("b", 0))
    d.tick(CONFIG.consumer_session_timeout_ms + 1)
    group = d.coord.consumer_group("g")
    assert group is not None and not group.members
    assert_replays(d)
    step = d.coord.delete_groups(["g"], CONFIG.consumer_session_timeout_ms + 2)
    d.log += step.records
    d.check("g")
    assert step.result == [("g", ErrorCode.none)]
    kinds = [clf.decode_key(r.key).kind for r in step.records if r.value is None]
    assert kinds == [clf.TARGET_ASSIGNMENT_METADATA, clf.PARTITION_METADATA,
                     clf.GROUP_METADATA]
    fresh = d.replayed()
    assert fresh.consumer_group("g") is None
    assert fresh.consumer_describe(["g"])[0].error == ErrorCode.group_id_not_found


def test_static_leave_and_replacement_replay() -> None:
    d = Driver()
    a = d.hb(beat("a", 0, instance="i-a"))
    d.hb(beat("a", -2, owned=None, instance="i-a"))
    fresh = assert_replays(d)
    group = fresh.consumer_group("g")
    assert group is not None and group.members["a"].member_epoch == -2
    a2 = d.hb(beat("a2", 0, instance="i-a"))
    assert a2.error == ErrorCode.none and a2.member_epoch == a.member_epoch + 1
    fresh = assert_replays(d)
    group = fresh.consumer_group("g")
    assert group is not None and set(group.members) == {"a2"}
    assert group.static_members == {"i-a": "a2"}


def test_heartbeats_without_change_write_nothing() -> None:
    d = Driver()
    a = d.hb(beat("a", 0))
    d.hb(beat("a", 1, owned=owned(a)))
    before = len(d.log)
    d.hb(beat("a", 1, owned=owned(a)))
    assert len(d.log) == before


def test_corrupt_records_skipped(caplog: pytest.LogCaptureFixture) -> None:
    d = Driver()
    d.hb(beat("a", 0))
    good = list(d.log)
    partition = good[0].partition
    bad = [
        GroupLogRecord(partition, b"\x00\x05\x00\x01g", b"\x00\x00"),  # key without member
        GroupLogRecord(partition, clf.encode_key(clf.ConsumerKey(clf.GROUP_METADATA, "g")),
                       b"\x00\x00\x00"),  # truncated value
        GroupLogRecord(partition, clf.encode_key(clf.ConsumerKey(
            clf.CURRENT_MEMBER_ASSIGNMENT, "g", "a")), clf.encode_value(
            clf.CurrentAssignmentValue(1, 0, 99, (), ()))),  # unknown state
        GroupLogRecord(partition, clf.encode_key(clf.ConsumerKey(
            clf.MEMBER_METADATA, "g", "z")), clf.encode_value(clf.MemberMetadataValue(
                None, None, "", "", (), "(", None, 1))),  # bad regex
        GroupLogRecord(partition, b"\x00\x09\x00\x01g", b"\x00\x00"),  # unknown type
    ]
    d.log = good + bad
    with caplog.at_level("WARNING"):
        fresh = d.replayed()
    assert sum("skipping unreadable" in r.message for r in caplog.records) == len(bad)
    assert snapshot(fresh.consumer_group("g")) == snapshot(d.coord.consumer_group("g"))


def test_orphan_member_records_are_not_loaded() -> None:
    """A current assignment without member metadata, or records without a group epoch."""
    coord = GroupCoordinator(CONFIG)
    partition = coord.partition_for("g")
    records: list[tuple[clf.ConsumerKey, clf.ConsumerValue]] = [
        (clf.ConsumerKey(clf.GROUP_METADATA, "g"), clf.GroupEpochValue(3)),
        (clf.ConsumerKey(clf.CURRENT_MEMBER_ASSIGNMENT, "g", "ghost"),
         clf.CurrentAssignmentValue(3, 2, 0, ((T1, (0,)),), ())),
        (clf.ConsumerKey(clf.TARGET_ASSIGNMENT_MEMBER, "h", "x"), clf.TargetMemberValue(())),
    ]
    for key, value in records:
        coord.replay(GroupLogRecord(partition, clf.encode_key(key), clf.encode_value(value)))
    coord.tick(0)
    group = coord.consumer_group("g")
    assert group is not None and group.group_epoch == 3 and not group.members
    assert not group.partition_owners
    assert coord.consumer_group("h") is None


@pytest.mark.parametrize("seed", range(8))
def test_random_walk_log_matches_state_and_replays(seed: int) -> None:
    """Random joins, acknowledged and unacknowledged heartbeats, subscription changes, leaves,
    static leaves and expiries: after every call the compacted log equals the group's view, and
    replaying it reproduces the group."""
    import random

    rng = random.Random(seed)
    d = Driver()
    now = 0
    names = [f"m{i}" for i in range(5)]
    for _ in range(150):
        now += rng.randrange(0, 4_000)
        name = rng.choice(names)
        group = d.coord.consumer_group("g")
        member = None if group is None else group.members.get(name)
        roll = rng.random()
        if member is None or member.member_epoch < 0:
            d.hb(beat(name, 0, topics=rng.choice((("t1",), ("t1", "t2"))),
                      instance=f"i-{name}" if name in ("m3", "m4") else None), now)
        elif roll < 0.6:
            held = to_ids(member.assignment.owned() if rng.random() < 0.3
                          else member.assignment.assigned)
            d.hb(beat(name, member.member_epoch, owned=held, topics=None), now)
        elif roll < 0.7:
            d.hb(beat(name, member.member_epoch, topics=rng.choice((("t1",), ("t2",))),
                      owned=None), now)
        elif roll < 0.8:
            epoch = -2 if member.instance_id is not None and rng.random() < 0.5 else -1
            d.hb(beat(name, epoch, owned=None, topics=None, instance=member.instance_id), now)
        else:
            d.tick(now + rng.choice((0, CONFIG.consumer_session_timeout_ms)))
    if d.coord.consumer_group("g") is not None:
        assert_replays(d)
