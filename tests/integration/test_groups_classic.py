"""Classic consumer groups on strom behave as Kafka's do for confluent-kafka members (eager and
cooperative-sticky rebalances, LeaveGroup, session expiry of a SIGKILLed member, static
membership, synchronous commits giving each record to the group once), and the group APIs answer
bad requests with Kafka's error codes while keeping the group's state consistent."""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_groups.v6.request import DescribeGroupsRequest as DescribeGroupsRequestV6
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v3.request import LeaveGroupRequest, MemberIdentity
from kio.schema.offset_commit.v7.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.static.primitive import i32, i64

from strom.testing import EmbeddedBroker
from tests.integration.conftest import ALL_ENGINES, DEADLINE_S, Delivered, producer, unique_name
from tests.integration.group_clients import (
    GROUP_BROKER_SETTINGS,
    Consumed,
    Member,
    Steady,
    Worker,
    close_all,
    drain,
    offsets_by_partition,
    settle,
    spread_ok,
)
from tests.integration.raw_client import RawClient

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def members() -> Iterator[list[Member]]:
    """Every Member a test appends here is closed after it, whatever happened."""
    made: list[Member] = []
    yield made
    close_all(made)


class Feed:
    """A producer that writes one record per call, to partitions in turn, up to `limit`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, limit: int) -> None:
        self.producer = producer(bootstrap)
        self.topic = topic
        self.partitions = partitions
        self.limit = limit
        self.sent = itertools.count()
        self.count = 0
        self.delivered = Delivered()

    def __call__(self) -> None:
        if self.count < self.limit:
            i = next(self.sent)
            self.producer.produce(self.topic, value=f"r{i}".encode(), partition=i % self.partitions,
                                  on_delivery=self.delivered)
            self.count += 1
        self.producer.poll(0)

    def wave(self, per_partition: int) -> set[tuple[int, int]]:
        """Produces `per_partition` records to each partition; returns every placed record."""
        for _ in range(per_partition * self.partitions):
            self.limit += 1
            self()
        return self.flush()

    def flush(self) -> set[tuple[int, int]]:
        assert self.producer.flush(DEADLINE_S) == 0, "records never reported"
        assert not self.delivered.failed, self.delivered.failed[:3]
        return self.placed()

    def placed(self) -> set[tuple[int, int]]:
        return {(m.partition(), m.offset()) for m in self.delivered.acked}


def describe(bootstrap: str, group: str) -> Any:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    return admin.describe_consumer_groups([group], request_timeout=10)[group].result(DEADLINE_S)


# 1. Eager rebalances with confluent-kafka -----------------------------------------------------


def test_rebalances_keep_one_owner_per_partition_and_each_record_is_consumed_once(
        broker: EmbeddedBroker, new_topic: Callable[..., str], members: list[Member]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=6, prefix="eager")
    group = unique_name("eager")
    everything = set(range(6))
    log: list[Consumed] = []
    feed = Feed(bootstrap, topic, 6, limit=10**9)

    def join(name: str) -> Member:
        member = Member.subscribe(name, bootstrap, group, topic, log, session_timeout_ms=10000)
        members.append(member)
        return member

    a, b, c = join("a"), join("b"), join("c")
    three = settle([a, b, c], everything, pump=feed)
    assert sorted(len(p) for p in three.values()) == [2, 2, 2], three

    d = join("d")
    four = settle([a, b, c, d], everything, pump=feed)
    assert sorted(len(p) for p in four.values()) == [1, 1, 2, 2], four

    left = b.partitions()
    started = time.monotonic()
    b.close()  # LeaveGroup: the others rebalance at once, not after b's 10 s session timeout
    after = settle([a, c, d], everything, pump=feed)
    assert time.monotonic() - started < 8, "the group waited for b's session to expire"
    assert left <= after["a"] | after["c"] | after["d"]
    assert b.events_of("revoke")[-1] == tuple(sorted(left))

    placed = feed.flush()
    drain([a, c, d], lambda: len(log) >= len(placed))

    consumed = [(r.partition, r.offset) for r in log]
    assert len(placed) > 60
    assert len(consumed) == len(set(consumed)), "a record was consumed twice"
    assert set(consumed) == placed
    # Each partition was read in offset order across its owners: whoever took a partition over
    # started right after the last offset its previous owner committed.
    ends = {p: 1 + max(o for q, o in placed if q == p) for p in everything}
    assert offsets_by_partition(log) == {p: list(range(ends[p])) for p in everything}
    committed = a.consumer.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == ends

    described = describe(bootstrap, group)
    assert described.state == ConsumerGroupState.STABLE
    assert not described.is_simple_consumer_group
    assert {m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
            for m in described.members} == {
        m.consumer.memberid(): set(m.partitions()) for m in (a, c, d)}


# 2. A SIGKILLed member -------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, step: Callable[[], object] | None = None,
             deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if step is not None:
            step()
        else:
            time.sleep(0.05)


def test_killed_member_partitions_move_after_its_session_timeout(
        broker: EmbeddedBroker, new_topic: Callable[..., str], members: list[Member],
        tmp_path: Path) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=4, prefix="kill")
    group = unique_name("kill")
    everything = set(range(4))
    feed = Feed(bootstrap, topic, 4, limit=0)
    feed.wave(per_partition=5)
    worker = Worker(bootstrap, topic, group, session_ms=2000, log_path=tmp_path / "worker.log")
    try:
        wait_for(lambda: len(worker.records()) == 20, "the worker to consume the first wave")
        log: list[Consumed] = []
        survivor = Member.subscribe("survivor", bootstrap, group, topic, log,
                                    session_timeout_ms=6000)
        members.append(survivor)

        def split() -> dict[str, frozenset[int]]:
            return {"survivor": survivor.partitions(), "worker": worker.assignment() or frozenset()}

        steady = Steady(1.0)
        wait_for(lambda: steady(spread_ok(split(), everything)),
                 f"the worker and the survivor to share {everything}", step=survivor.step)
        worker_parts = split()["worker"]

        placed = feed.wave(per_partition=5)

        def all_read() -> bool:
            seen = {(r.partition, r.offset) for r in log}
            seen |= {(p, o) for p, o, _ in worker.records()}
            return seen >= placed

        wait_for(all_read, "the second wave to be consumed", step=survivor.step)
        assert worker.assignment() == worker_parts, "the split changed while idle"

        worker.kill()  # idle: everything it printed, and nothing more, is committed
        killed = time.monotonic()
        placed = feed.wave(per_partition=5)
        wait_for(lambda: survivor.partitions() == everything,
                 "the survivor to get the killed worker's partitions", step=survivor.step)
        moved_after = time.monotonic() - killed
        wait_for(all_read, "the third wave to be consumed", step=survivor.step)
        drain([survivor], lambda: True, linger_s=0.5)
    finally:
        worker.close()

    assert moved_after >= 1.5, f"partitions moved {moved_after:.2f} s after the kill"
    by_worker = [(p, o) for p, o, _ in worker.records()]
    by_survivor = [(r.partition, r.offset) for r in log]
    assert len(by_worker) == len(set(by_worker))
    assert len(by_survivor) == len(set(by_survivor))
    assert not set(by_worker) & set(by_survivor), "a committed record was consumed again"
    assert set(by_worker) | set(by_survivor) == placed
    # The worker had committed its partitions through the second wave (offsets 0-9); the
    # survivor took them over at offset 10, right after the last commit.
    taken = offsets_by_partition(r for r in log if r.partition in worker_parts)
    for p in worker_parts:
        assert max(o for q, o in by_worker if q == p) == 9
        assert taken[p] == list(range(10, 15)), (p, taken[p])
    assert survivor.events_of("lost") == []
    described = describe(bootstrap, group)
    assert [m.member_id for m in described.members] == [survivor.consumer.memberid()]


# 3. cooperative-sticky -------------------------------------------------------------------------


def test_cooperative_sticky_revokes_only_the_partitions_that_move(
        broker: EmbeddedBroker, new_topic: Callable[..., str], members: list[Member]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=6, prefix="coop")
    group = unique_name("coop")
    everything = set(range(6))
    log: list[Consumed] = []

    def join(name: str) -> Member:
        member = Member.subscribe(name, bootstrap, group, topic, log,
                                  partition_assignment_strategy="cooperative-sticky")
        members.append(member)
        return member

    a = join("a")
    assert settle([a], everything) == {"a": frozenset(everything)}
    mark = len(a.events)
    b = join("b")
    after = settle([a, b], everything, stable_s=1.5)

    moved = set(after["b"])
    kept = set(after["a"])
    assert len(moved) == 3 and kept == everything - moved
    revoked_from_a = set().union(*map(set, a.events_of("revoke", mark)))
    assert revoked_from_a == moved, f"a's callbacks after b joined: {a.events[mark:]}"
    assert not any(a.events_of("assign", mark)), "a was given partitions it already had"
    assert not a.events_of("lost", mark)
    assert b.events_of("revoke") == [] and b.events_of("lost") == []
    assert set().union(*map(set, b.events_of("assign"))) == moved


# 4. Static membership --------------------------------------------------------------------------


def test_static_member_restarted_within_its_session_gets_its_partitions_without_rebalance(
        broker: EmbeddedBroker, new_topic: Callable[..., str], members: list[Member]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=4, prefix="static")
    group = unique_name("static")
    instance = unique_name("instance")
    everything = set(range(4))
    log: list[Consumed] = []

    def join(name: str, **extra: Any) -> Member:
        member = Member.subscribe(name, bootstrap, group, topic, log, session_timeout_ms=6000,
                                  **extra)
        members.append(member)
        return member

    other = join("other")  # the first member, so the leader; the static one is a follower
    settle([other], everything)
    first = join("static-1", group_instance_id=instance)
    before = settle([first, other], everything)
    first_member_id = first.consumer.memberid()
    mark = len(other.events)

    first.close()  # a static member's close sends no LeaveGroup
    second = join("static-2", group_instance_id=instance)
    after = settle([second, other], everything, stable_s=2.0)

    assert after["static-2"] == before["static-1"]
    assert after["other"] == before["other"]
    assert other.events[mark:] == [], "the other member went through a rebalance"
    assert second.events == [("assign", tuple(sorted(before["static-1"])))]
    assert second.consumer.memberid() != first_member_id
    described = describe(bootstrap, group)
    assert described.state == ConsumerGroupState.STABLE
    assert {m.member_id: m.group_instance_id for m in described.members} == {
        second.consumer.memberid(): instance, other.consumer.memberid(): None}


# 5. The group APIs on the raw protocol: bad input, and each state's errors ----------------------

SESSION = timedelta(seconds=30)
REBALANCE = timedelta(seconds=10)


def subscription(topic: str, user_data: bytes | None = None) -> bytes:
    """ConsumerProtocolSubscription v0: version, [topic], user data."""
    name = topic.encode()
    data = struct.pack(">i", -1) if user_data is None else (
        struct.pack(">i", len(user_data)) + user_data)
    return struct.pack(">hih", 0, 1, len(name)) + name + data


def assignment(topic: str, partitions: Sequence[int]) -> bytes:
    """ConsumerProtocolAssignment v0: version, [(topic, [partition])], null user data."""
    name = topic.encode()
    return (struct.pack(">hih", 0, 1, len(name)) + name + struct.pack(">i", len(partitions))
            + b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", -1))


def join_request(group: str, member_id: str = "", protocol_type: str = "consumer",
                 protocols: Sequence[tuple[str, bytes]] = (("range", subscription("t")),),
                 session: timedelta = SESSION, instance: str | None = None) -> JoinGroupRequest:
    return JoinGroupRequest(
        group_id=group, session_timeout=session, rebalance_timeout=REBALANCE,
        member_id=member_id, group_instance_id=instance, protocol_type=protocol_type,
        protocols=tuple(JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols))


def join_raw(client: RawClient, group: str, **kwargs: Any) -> Any:
    """JoinGroup v5 the way a client does it: again with the member id MEMBER_ID_REQUIRED gave."""
    answer = client.request(join_request(group, **kwargs))
    if answer.error_code == ErrorCode.member_id_required:
        kwargs["member_id"] = answer.member_id
        answer = client.request(join_request(group, **kwargs))
    return answer


def heartbeat(client: RawClient, group: str, member_id: str, generation: int,
              instance: str | None = None) -> ErrorCode:
    return client.request(HeartbeatRequest(
        group_id=group, generation_id=i32(generation), member_id=member_id,
        group_instance_id=instance)).error_code


def sync_request(group: str, member_id: str, generation: int,
                 assignments: Sequence[tuple[str, bytes]] = (),
                 instance: str | None = None) -> SyncGroupRequest:
    return SyncGroupRequest(
        group_id=group, generation_id=i32(generation), member_id=member_id,
        group_instance_id=instance,
        assignments=tuple(SyncGroupRequestAssignment(member_id=m, assignment=a)
                          for m, a in assignments))


def sync(client: RawClient, group: str, member_id: str, generation: int,
         assignments: Sequence[tuple[str, bytes]] = (),
         instance: str | None = None) -> Any:
    return client.request(sync_request(group, member_id, generation, assignments, instance))


def commit(client: RawClient, group: str, member_id: str, generation: int, topic: str,
           offset: int = 1) -> ErrorCode:
    """OffsetCommit v7 of one offset of partition 0; returns that partition's error."""
    answer = client.request(OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=i32(generation), member_id=member_id,
        group_instance_id=None, topics=(OffsetCommitRequestTopic(name=topic, partitions=(
            OffsetCommitRequestPartition(partition_index=i32(0), committed_offset=i64(offset),
                                         committed_leader_epoch=i32(-1),
                                         committed_metadata=None),)),)))
    return answer.topics[0].partitions[0].error_code


def leave(client: RawClient, group: str, *member_ids: str) -> Any:
    return client.request(LeaveGroupRequest(group_id=group, members=tuple(
        MemberIdentity(member_id=m, group_instance_id=None) for m in member_ids)))


def wait_for_heartbeat(client: RawClient, group: str, member_id: str, generation: int,
                       error: ErrorCode) -> None:
    """Heartbeats until the answer is `error` (another connection's request is in flight)."""
    deadline = time.monotonic() + DEADLINE_S
    while (got := heartbeat(client, group, member_id, generation)) != error:
        assert got == ErrorCode.none, got
        assert time.monotonic() < deadline, f"heartbeat never answered {error!r}"
        time.sleep(0.02)


def describe_raw(port: int, group: str) -> Any:
    with RawClient(port) as client:
        answer = client.request(DescribeGroupsRequest(groups=(group,),
                                                      include_authorized_operations=False))
    assert len(answer.groups) == 1
    return answer.groups[0]


def stable_group(client: RawClient, group: str) -> tuple[str, int, bytes]:
    """One raw member that joins, leads and syncs; returns (member id, generation, assignment)."""
    joined = join_raw(client, group)
    assert joined.error_code == ErrorCode.none, joined
    assert joined.leader == joined.member_id
    assert [m.member_id for m in joined.members] == [joined.member_id]
    given = assignment("t", [0, 1])
    synced = sync(client, group, joined.member_id, joined.generation_id,
                  [(joined.member_id, given)])
    assert synced.error_code == ErrorCode.none, synced
    assert synced.assignment == given
    return joined.member_id, int(joined.generation_id), given


def assert_stable_with(port: int, group: str, member_id: str, metadata: bytes,
                       given: bytes) -> None:
    described = describe_raw(port, group)
    assert described.error_code == ErrorCode.none
    assert described.group_state == "Stable"
    assert described.protocol_type == "consumer" and described.protocol_data == "range"
    assert [(m.member_id, m.member_metadata, m.member_assignment)
            for m in described.members] == [(member_id, metadata, given)]


@pytest.mark.parametrize(("protocol_type", "protocols"), [
    ("consumer", ()),
    ("connect", (("range", subscription("t")),)),
    ("consumer", (("roundrobin", subscription("t")),)),
], ids=["no-protocols", "other-protocol-type", "no-common-protocol"])
def test_inconsistent_join_to_an_existing_group_is_refused_and_changes_nothing(
        broker: EmbeddedBroker, protocol_type: str,
        protocols: tuple[tuple[str, bytes], ...]) -> None:
    group = unique_name("inconsistent")
    with RawClient(broker.port) as leader, RawClient(broker.port) as other:
        member_id, generation, given = stable_group(leader, group)
        answer = other.request(join_request(group, protocol_type=protocol_type,
                                            protocols=protocols))
        assert answer.error_code == ErrorCode.inconsistent_group_protocol
        assert heartbeat(leader, group, member_id, generation) == ErrorCode.none
    assert_stable_with(broker.port, group, member_id, subscription("t"), given)


def test_join_of_a_new_group_without_protocols_is_refused(broker: EmbeddedBroker) -> None:
    group = unique_name("no-protocols")
    with RawClient(broker.port) as client:
        answer = client.request(join_request(group, protocols=()))
        assert answer.error_code == ErrorCode.inconsistent_group_protocol
    described = describe_raw(broker.port, group)
    assert described.members == ()
    assert described.group_state in ("Dead", "Empty")


@pytest.mark.parametrize(("request_class", "error"), [
    (DescribeGroupsRequest, ErrorCode.none),
    (DescribeGroupsRequestV6, ErrorCode.group_id_not_found),
], ids=["v5", "v6"])
def test_describe_of_an_unknown_group(broker: EmbeddedBroker, request_class: type,
                                      error: ErrorCode) -> None:
    """Kafka answers Dead with NONE before v6, and GROUP_ID_NOT_FOUND from v6 (KIP-1043)."""
    group = unique_name("unknown")
    with RawClient(broker.port) as client:
        answer = client.request(request_class(groups=(group,),
                                              include_authorized_operations=False))
    [described] = answer.groups
    assert (described.group_id, described.error_code, described.group_state,
            described.members) == (group, error, "Dead", ())


def test_join_with_a_session_timeout_below_the_minimum_is_refused(broker: EmbeddedBroker) -> None:
    group = unique_name("short-session")
    with RawClient(broker.port) as client:
        answer = client.request(join_request(group, session=timedelta(milliseconds=100)))
        assert answer.error_code == ErrorCode.invalid_session_timeout
    assert describe_raw(broker.port, group).members == ()


def test_heartbeat_and_sync_with_unknown_member_or_wrong_generation(
        broker: EmbeddedBroker) -> None:
    group = unique_name("generations")
    with RawClient(broker.port) as client:
        member_id, generation, given = stable_group(client, group)
        assert heartbeat(client, group, "no-such-member", generation) == \
            ErrorCode.unknown_member_id
        assert heartbeat(client, group, member_id, generation + 1) == ErrorCode.illegal_generation
        assert heartbeat(client, group, member_id, generation - 1) == ErrorCode.illegal_generation
        assert sync(client, group, member_id, generation + 1).error_code == \
            ErrorCode.illegal_generation
        assert sync(client, group, "no-such-member", generation).error_code == \
            ErrorCode.unknown_member_id
        # None of that disturbed the member: its generation and assignment stand.
        assert heartbeat(client, group, member_id, generation) == ErrorCode.none
        again = sync(client, group, member_id, generation)
        assert (again.error_code, again.assignment) == (ErrorCode.none, given)
    assert_stable_with(broker.port, group, member_id, subscription("t"), given)


def test_a_second_member_rebalances_the_group_on_the_wire(
        broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    """Kafka's classic protocol, request by request: the errors a member sees in each state."""
    topic = new_topic()
    group = unique_name("wire")
    with RawClient(broker.port) as one, RawClient(broker.port) as two:
        m1, gen1, _ = stable_group(one, group)
        # A second member: MEMBER_ID_REQUIRED, then a JoinGroup that waits for the rebalance.
        first = two.request(join_request(group))
        assert first.error_code == ErrorCode.member_id_required and first.member_id
        m2 = first.member_id
        two.send_raw(two.frame(join_request(group, member_id=m2)))

        # PreparingRebalance: the old generation may still commit, not sync.
        wait_for_heartbeat(one, group, m1, gen1, ErrorCode.rebalance_in_progress)
        assert describe_raw(broker.port, group).group_state == "PreparingRebalance"
        assert sync(one, group, m1, gen1).error_code == ErrorCode.rebalance_in_progress
        assert commit(one, group, m1, gen1, topic) == ErrorCode.none
        assert commit(one, group, m1, gen1 + 1, topic) == ErrorCode.illegal_generation
        assert heartbeat(one, group, m1, gen1 + 1) == ErrorCode.illegal_generation
        assert one.request(join_request(group, member_id="no-such-member")).error_code == \
            ErrorCode.unknown_member_id

        # m1 rejoins: the join phase completes for both, m1 stays the leader.
        led = one.request(join_request(group, member_id=m1))
        followed = two.read_response(JoinGroupRequest.__api_key__, JoinGroupRequest.__version__)
        gen2 = int(led.generation_id)
        assert (led.error_code, followed.error_code) == (ErrorCode.none, ErrorCode.none)
        assert gen2 == int(followed.generation_id) == gen1 + 1
        assert led.leader == followed.leader == m1
        assert sorted(m.member_id for m in led.members) == sorted([m1, m2])
        assert followed.members == ()
        assert (led.protocol_name, followed.protocol_name) == ("range", "range")

        # CompletingRebalance: heartbeats are fine, commits wait for the assignment.
        assert describe_raw(broker.port, group).group_state == "CompletingRebalance"
        assert heartbeat(two, group, m2, gen2) == ErrorCode.none
        assert commit(two, group, m2, gen2, topic) == ErrorCode.rebalance_in_progress
        two.send_raw(two.frame(sync_request(group, m2, gen2)))  # the follower waits
        a1, a2 = assignment(topic, [0]), assignment(topic, [])
        synced = sync(one, group, m1, gen2, [(m1, a1), (m2, a2)])
        followed_sync = two.read_response(SyncGroupRequest.__api_key__,
                                          SyncGroupRequest.__version__)
        assert (synced.error_code, synced.assignment) == (ErrorCode.none, a1)
        assert (followed_sync.error_code, followed_sync.assignment) == (ErrorCode.none, a2)

        # Stable: members commit with their generation; strangers and old generations cannot.
        described = describe_raw(broker.port, group)
        assert described.group_state == "Stable"
        assert sorted((m.member_id, m.member_assignment) for m in described.members) == sorted(
            [(m1, a1), (m2, a2)])
        assert commit(two, group, m2, gen2, topic, offset=2) == ErrorCode.none
        assert commit(one, group, m1, gen1, topic) == ErrorCode.illegal_generation
        assert commit(one, group, "no-such-member", gen2, topic) == ErrorCode.unknown_member_id
        assert commit(one, group, "", -1, topic) == ErrorCode.unknown_member_id

        # m2 leaves: a stranger's leave is refused member by member; m1 rejoins alone.
        left = leave(two, group, m2, "no-such-member")
        assert left.error_code == ErrorCode.none
        assert [(m.member_id, m.error_code) for m in left.members] == [
            (m2, ErrorCode.none), ("no-such-member", ErrorCode.unknown_member_id)]
        wait_for_heartbeat(one, group, m1, gen2, ErrorCode.rebalance_in_progress)
        alone = one.request(join_request(group, member_id=m1))
        assert alone.error_code == ErrorCode.none
        assert int(alone.generation_id) == gen2 + 1
        assert [m.member_id for m in alone.members] == [m1]
        assert heartbeat(two, group, m2, gen2) == ErrorCode.unknown_member_id


def test_a_static_member_rejoining_fences_its_old_member_id(broker: EmbeddedBroker) -> None:
    group = unique_name("static-wire")
    instance = unique_name("instance")
    given = assignment("t", [0])
    with RawClient(broker.port) as old, RawClient(broker.port) as new:
        # A static member needs no MEMBER_ID_REQUIRED round trip.
        joined = old.request(join_request(group, instance=instance))
        assert joined.error_code == ErrorCode.none and joined.leader == joined.member_id
        old_id, generation = joined.member_id, int(joined.generation_id)
        assert sync(old, group, old_id, generation, [(old_id, given)],
                    instance=instance).error_code == ErrorCode.none

        # The same instance joins again with no member id, in the Stable group: it takes the
        # member's place under a new member id, with no new generation.
        rejoined = new.request(join_request(group, instance=instance))
        assert rejoined.error_code == ErrorCode.none
        assert int(rejoined.generation_id) == generation
        new_id = rejoined.member_id
        assert new_id and new_id != old_id
        assert heartbeat(old, group, old_id, generation, instance) == \
            ErrorCode.fenced_instance_id
        assert heartbeat(new, group, new_id, generation, instance) == ErrorCode.none
        again = sync(new, group, new_id, generation, instance=instance)
        assert (again.error_code, again.assignment) == (ErrorCode.none, given)
    described = describe_raw(broker.port, group)
    assert described.group_state == "Stable"
    assert [(m.member_id, m.group_instance_id, m.member_assignment)
            for m in described.members] == [(new_id, instance, given)]


def test_oversized_member_metadata_gets_an_answer_or_a_clean_close(
        broker: EmbeddedBroker) -> None:
    group = unique_name("oversized")
    big = subscription("t", user_data=b"u" * (2 * 2**20))
    answers = []
    with RawClient(broker.port) as client:
        client.request(ApiVersionsRequest(client_software_name="raw",
                                          client_software_version="1"))
        try:
            joined = join_raw(client, group, protocols=(("range", big),))
            answers.append(joined.error_code)
            if joined.error_code == ErrorCode.none:
                synced = sync(client, group, joined.member_id, joined.generation_id,
                              [(joined.member_id, big)])
                answers.append(synced.error_code)
        except ConnectionError:
            answers.append("closed")
    assert answers, "no answer and no close"

    # The broker keeps serving groups, and the oversized group's state is consistent.
    described = describe_raw(broker.port, group)
    assert described.error_code == ErrorCode.none
    assert described.group_state in ("Empty", "Dead", "PreparingRebalance",
                                     "CompletingRebalance", "Stable"), described.group_state
    assert len(described.members) <= 1
    if described.group_state in ("Empty", "Dead"):
        assert described.members == ()
    for member in described.members:
        assert member.member_metadata == big
        assert member.member_assignment in (b"", big)
    with RawClient(broker.port) as client:
        assert stable_group(client, unique_name("after-oversized"))
