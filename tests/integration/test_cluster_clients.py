"""Real clients against a 3-broker strom cluster on one PostgreSQL database: Metadata through
any broker lists the three brokers and a leader (with its epoch, replicas and ISR) for every
partition, spread over all three; confluent-kafka, kafka-python and aiokafka producers and
consumers, each bootstrapped from a different broker, see every record exactly once and in
order; consumer groups (classic with the three libraries, KIP-848 with confluent-kafka) work
with their coordinator on whichever broker leads their __consumer_offsets partition; and
transactions commit and abort with their coordinator on another broker than the partitions
they write, consume-transform-produce included.

The tests share one cluster (none of them stops a broker; test_cluster_moves.py does)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.testing.postgres import PostgresServer
from tests.integration import three_clients
from tests.integration.cluster import NODES, TXN_KEY, Cluster, eventually
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.group_clients import (
    Consumed,
    Member,
    close_all,
    drain,
    kip848_member,
    offsets_by_partition,
    produce_spread,
    settle,
)
from tests.integration.test_groups_mixed_clients import (
    HEARTBEAT_MS,
    SESSION_MS,
    ThreadMember,
    Trio,
    aiokafka_member,
    kafka_python_member,
)

pytestmark = pytest.mark.filterwarnings(three_clients.OPEN_TEXT_DEPRECATED)


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer) -> Iterator[Cluster]:
    with Cluster(postgres_server.new_database()) as running:
        running.wait_whole()
        yield running


def create_replicated(bootstrap: str, name: str, partitions: int, replication: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                            replication_factor=replication)],
                                  operation_timeout=10, request_timeout=15)
    futures[name].result(timeout=DEADLINE_S)
    return name


# -- 1. Metadata ------------------------------------------------------------------------------


def check_partition(p: Any, replication: int) -> None:
    """A led partition: no error, a leader, an epoch, the leader first among `replication`
    distinct replicas, all in sync, none offline."""
    assert int(p.error_code) == 0, p
    leader, replicas = int(p.leader_id), [int(n) for n in p.replica_nodes]
    assert leader in NODES and int(p.leader_epoch) >= 0, p
    assert replicas[0] == leader and len(replicas) == len(set(replicas)) == replication, p
    assert set(replicas) <= set(NODES)
    assert [int(n) for n in p.isr_nodes] == replicas, p
    assert list(p.offline_replicas) == [], p


def test_metadata_through_any_broker(cluster: Cluster) -> None:
    """Every broker answers the same: the three brokers, controller 1 (the lowest live node),
    and for each partition a leader, its epoch, and replicas led by the leader. A new
    12-partition topic and __consumer_offsets are led by all three brokers."""
    spread = create_topic(cluster.address(2), unique_name("cl-meta"), 12)
    replicated = create_replicated(cluster.address(3), unique_name("cl-meta-rf3"), 6, 3)
    names = [spread, replicated, OFFSETS_TOPIC]
    cluster.wait_whole(names)
    views = []
    for node in NODES:
        answer = cluster.metadata(node, names)
        assert {int(b.node_id): (b.host, int(b.port)) for b in answer.brokers} == {
            n: ("127.0.0.1", cluster.port(n)) for n in NODES}
        assert int(answer.controller_id) == 1
        topics = {t.name: t for t in answer.topics}
        for name, count, replication in ((spread, 12, 1), (replicated, 6, 3),
                                         (OFFSETS_TOPIC, 50, 1)):
            assert int(topics[name].error_code) == 0
            assert len(topics[name].partitions) == count
            for entry in topics[name].partitions:
                check_partition(entry, replication)
        views.append({name: sorted((int(p.partition_index), int(p.leader_id),
                                    int(p.leader_epoch), tuple(p.replica_nodes))
                                   for p in topics[name].partitions) for name in names})
    assert views[0] == views[1] == views[2]
    for name in names:
        leaders = Counter(leader for _, leader, _, _ in views[0][name])
        assert set(leaders) == set(NODES), (name, leaders)
    offsets = Counter(leader for _, leader, _, _ in views[0][OFFSETS_TOPIC])
    assert min(offsets.values()) >= 8, offsets  # 50 shards: about 17 each


# -- 2. Producers and consumers of the three libraries --------------------------------------------


def test_three_libraries_produce_and_consume_across_brokers(cluster: Cluster) -> None:
    """Each library's idempotent producer, bootstrapped from its own broker, writes 60 records
    over 6 partitions led by the three brokers; each library's consumer, bootstrapped from
    yet another broker, reads every acknowledged record exactly once, in offset order per
    partition, with each producer's records in the order it sent them."""
    partitions = 6
    topic = create_topic(cluster.address(1), unique_name("cl-libs"), partitions)
    cluster.wait_whole([topic])
    assert set(cluster.leaders(1, topic).values()) == set(NODES)
    placed: three_clients.Placed = {}
    sent: dict[str, list[tuple[int, bytes]]] = {}
    for node, library in zip(NODES, three_clients.LIBRARIES, strict=True):
        records = [(i % partitions, f"{library}-{i}".encode()) for i in range(60)]
        sent[library] = records
        got = three_clients.produce(library, cluster.address(node), topic, records)
        assert sorted(got.values()) == sorted(v for _, v in records), library
        assert not set(got) & set(placed), f"{library} was given offsets already taken"
        placed.update(got)
    for p in range(partitions):
        offsets = sorted(o for part, o in placed if part == p)
        assert offsets == list(range(len(offsets))), (p, offsets)
    for library, records in sent.items():
        for p in range(partitions):
            in_log = [v for (part, _), v in sorted(placed.items())
                      if part == p and v.startswith(library.encode() + b"-")]
            assert in_log == [v for part, v in records if part == p], (library, p)

    for node, library in zip((3, 1, 2), three_clients.LIBRARIES, strict=True):
        got = three_clients.read(library, cluster.address(node), topic, range(partitions),
                                 len(placed))
        assert len(got) == len(placed), f"{library} read {len(got)} of {len(placed)}"
        assert {(p, o): v for p, o, v in got} == placed, library
        for p in range(partitions):
            offsets = [o for part, o, _ in got if part == p]
            assert offsets == sorted(offsets), (library, p, offsets)


# -- 3. Consumer groups --------------------------------------------------------------------------


def test_find_coordinator_answers_the_shard_leader(cluster: Cluster) -> None:
    """Every broker names the same coordinator for a group: the leader of the group's
    __consumer_offsets partition; 30 groups have their coordinators on all three brokers.
    Transactional ids likewise, with the leaders of __transaction_state."""
    groups = [f"cl-coord-group-{i}" for i in range(30)]
    answers = [cluster.coordinators(node, groups) for node in NODES]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0] == {g: cluster.coordinator_of(g) for g in groups}
    assert set(answers[0].values()) == set(NODES), answers[0]

    ids = [f"cl-coord-txn-{i}" for i in range(30)]
    # The first FindCoordinator of a transactional id creates __transaction_state.
    eventually(lambda: -1 not in cluster.coordinators(1, ids, TXN_KEY).values(),
               "no transaction coordinator for some ids")
    cluster.wait_whole([TXN_TOPIC])
    txn_answers = [cluster.coordinators(node, ids, TXN_KEY) for node in NODES]
    assert txn_answers[0] == txn_answers[1] == txn_answers[2]
    assert txn_answers[0] == {t: cluster.coordinator_of(t, TXN_KEY) for t in ids}
    assert set(txn_answers[0].values()) == set(NODES), txn_answers[0]


def group_coordinator(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(
        DEADLINE_S)
    return int(described.coordinator.id)


def test_a_classic_group_of_three_libraries_across_brokers(cluster: Cluster) -> None:
    """confluent-kafka, kafka-python and aiokafka members, each bootstrapped from another
    broker, share a 6-partition topic (range assignor) with their coordinator on the broker
    leading the group's shard; each record is consumed once with a synchronous commit; when
    the kafka-python member leaves, the other two take its partitions over from its commits
    and consume what follows, still each record once."""
    partitions, everything = 6, set(range(6))
    topic = create_topic(cluster.address(1), unique_name("cl-classic"), partitions)
    group = unique_name("cl-classic")
    cluster.wait_whole([topic])
    log: list[Consumed] = []
    confluent = Member.subscribe("confluent", cluster.address(1), group, topic, log,
                                 client_id="mixed-confluent",
                                 partition_assignment_strategy="range",
                                 session_timeout_ms=SESSION_MS,
                                 heartbeat_interval_ms=HEARTBEAT_MS)
    kp, aio = ThreadMember("kafka-python"), ThreadMember("aiokafka")
    trio = Trio(confluent, log, kp, aio)
    try:
        kp.start(kafka_python_member(cluster.address(2), group, topic))
        aio.start(aiokafka_member(cluster.address(3), group, topic))
        trio.poll_until(lambda: trio.spread_and_unchanged(everything),
                        "the three to share the partitions", stable_s=2.0)
        assert group_coordinator(cluster.bootstrap, group) == cluster.coordinator_of(group)
        produce_spread(cluster.address(2), topic, 60, 0, partitions)
        trio.poll_until(lambda: sum(map(len, trio.consumed().values())) >= 60,
                        "the first 60 records to be consumed")

        kp.join()  # kafka-python leaves the group (its consumer closes)
        duo = Trio(confluent, log, aio)
        duo.poll_until(lambda: duo.spread_and_unchanged(everything),
                       "the other two to take the partitions over", stable_s=2.0)
        produce_spread(cluster.address(3), topic, 60, 60, partitions)
        duo.poll_until(lambda: sum(map(len, trio.consumed().values())) >= 120,
                       "the next 60 records to be consumed")
        linger = time.monotonic() + 0.5
        while time.monotonic() < linger:
            duo.step()
    finally:
        trio.close()
    consumed = [r for records in trio.consumed().values() for r in records]
    assert len(consumed) == len(set(consumed)) == 120, Counter(consumed).most_common(3)
    assert set(consumed) == {(p, o) for p in everything for o in range(20)}
    committed = confluent_committed(cluster.address(3), group, topic, partitions)
    assert committed == dict.fromkeys(everything, 20)


def confluent_committed(bootstrap: str, group: str, topic: str, partitions: int
                        ) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                            timeout=DEADLINE_S)
        return {tp.partition: tp.offset for tp in found}
    finally:
        c.close()


def test_a_kip848_group_across_brokers(cluster: Cluster) -> None:
    """Three confluent-kafka members on the consumer protocol (KIP-848), bootstrapped from the
    three brokers, share a 6-partition topic; one leaves and the other two take its
    partitions; every record is consumed once, and the offsets are committed at the end."""
    partitions = 6
    topic = create_topic(cluster.address(2), unique_name("cl-848"), partitions)
    group = unique_name("cl-848")
    cluster.wait_whole([topic])
    log: list[Consumed] = []
    members: list[Member] = []
    try:
        for node, name in zip(NODES, "abc", strict=True):
            members.append(kip848_member(name, cluster.address(node), group, topic, log))
        spread = settle(members, range(partitions))
        assert all(len(parts) == 2 for parts in spread.values()), spread
        assert group_coordinator(cluster.bootstrap, group) == cluster.coordinator_of(group)
        produce_spread(cluster.address(3), topic, 60, 0, partitions)
        drain(members, lambda: len(log) >= 60)
        members[0].close()
        settle(members[1:], range(partitions))
        produce_spread(cluster.address(1), topic, 60, 60, partitions)
        drain(members[1:], lambda: len(log) >= 120)
    finally:
        close_all(members)
    by_partition = offsets_by_partition(log)
    assert {p: sorted(offs) for p, offs in by_partition.items()} == {
        p: list(range(20)) for p in range(partitions)}
    assert len(log) == 120  # each record once
    assert confluent_committed(cluster.address(1), group, topic, partitions) == dict.fromkeys(
        range(partitions), 20)
