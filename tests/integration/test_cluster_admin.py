"""Brokers sharing one PostgreSQL database answer the admin APIs truthfully, to kafka-python's
and confluent-kafka's admin clients: a reassignment moves a partition's leader within a
heartbeat and is listed as in progress only until then (or while its broker is down), a
cancellation gives the partition back to the balanced placement, a preferred election moves
a lease that is out of place at once (not at the holder's next heartbeat) and answers
PREFERRED_LEADER_NOT_AVAILABLE when the pinned broker is down, DescribeLogDirs lists on each
broker the partitions it leads, the internal topics get min(setting, live brokers) replicas,
and acks=all is refused with NOT_ENOUGH_REPLICAS below min.insync.replicas live replicas."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, Producer
from confluent_kafka import TopicPartition as CfTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient
from kio.schema.elect_leaders.v2 import request as elect
from kio.schema.errors import ErrorCode
from kio.schema.list_partition_reassignments.v0 import request as listing
from kio.schema.metadata.v12 import request as metadata
from kio.static.primitive import i8, i32

from strom.storage.postgres.connect import redact
from strom.testing import EmbeddedBroker
from strom.testing.postgres import PostgresServer
from tests.integration.conftest import DEADLINE_S, unique_name
from tests.integration.raw_client import RawClient
from tests.integration.test_postgres_membership import FAST, eventually, listed
from tests.integration.test_replica_admin import TIMEOUT

Leaders = dict[int, tuple[int, list[int], list[int]]]  # partition -> leader, replicas, isr


def brokers(url: str, *node_ids: int, settings: Mapping[str, str] = FAST
            ) -> list[EmbeddedBroker]:
    return [EmbeddedBroker(settings={**settings, "node.id": str(n)}, storage=url)
            for n in node_ids]


@contextmanager
def running(*members: EmbeddedBroker) -> Iterator[None]:
    started = []
    try:
        for member in members:
            started.append(member.start())
        ids = sorted(int(m.settings["node.id"]) for m in members)
        eventually(lambda: all(listed(m.bootstrap_servers) == ids for m in members),
                   "the brokers never listed each other")
        yield
    finally:
        for member in reversed(started):
            member.stop()


@pytest.fixture(scope="module")
def pair(postgres_server: PostgresServer) -> Iterator[tuple[EmbeddedBroker, EmbeddedBroker, str]]:
    """Brokers 1 and 2 on a new database (broker 1 started, alone, first)."""
    url = postgres_server.new_database()
    one, two = brokers(url, 1, 2)
    with running(one, two):
        yield one, two, url


@contextmanager
def kafka_admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        yield client
    finally:
        client.close()


def new_topic(members: Sequence[EmbeddedBroker], partitions: int, replication_factor: int,
              config: Mapping[str, str] | None = None) -> str:
    """Creates a topic through the first member; returns once every member shows a leader
    for each of its partitions, the same one."""
    name = unique_name("cluster")
    admin = AdminClient({"bootstrap.servers": members[0].bootstrap_servers})
    admin.create_topics([NewTopic(name, partitions, replication_factor,
                                  config=dict(config or {}))])[name].result(DEADLINE_S)

    def agreed() -> bool:
        views = [leaders(m, name) for m in members]
        return (len(views[0]) == partitions and all(v == views[0] for v in views)
                and all(leader >= 0 for leader, _, _ in views[0].values()))

    eventually(agreed, f"the brokers never agreed on {name}'s leaders")
    return name


def leaders(member: EmbeddedBroker, topic: str) -> Leaders:
    """The partitions of `topic` as this broker's Metadata shows them."""
    with RawClient(member.port) as client:
        answer = client.request(metadata.MetadataRequest(
            topics=(metadata.MetadataRequestTopic(topic_id=None, name=topic),),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False))
    [found] = answer.topics
    return {int(p.partition_index): (int(p.leader_id), [int(n) for n in p.replica_nodes],
                                     [int(n) for n in p.isr_nodes])
            for p in found.partitions}


def led_by(member: EmbeddedBroker, topic: str, partition: int, node: int
           ) -> Callable[[], bool]:
    return lambda: leaders(member, topic)[partition][0] == node


def produce(bootstrap: str, topic: str, acks: str) -> int:
    """The error code of one record produced without retries (0: appended)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0,
                         "message.timeout.ms": 10000})
    outcome: list[KafkaError | None] = []
    producer.produce(topic, b"v", partition=0, on_delivery=lambda err, _: outcome.append(err))
    producer.flush(DEADLINE_S)
    assert len(outcome) == 1
    return 0 if outcome[0] is None else int(outcome[0].code())


def elections(answer: Any) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {(r.topic, p.partition_id): (p.error_code, p.error_message)
            for r in answer.replica_election_results for p in r.partition_result}


def test_a_reassignment_moves_the_leader_and_cancelling_gives_it_back(
        pair: tuple[EmbeddedBroker, EmbeddedBroker, str]) -> None:
    one, two, _ = pair
    topic = new_topic([one, two], 2, 2)
    balanced, replicas, _ = leaders(one, topic)[0]
    other = 2 if balanced == 1 else 1
    assert sorted(replicas) == [1, 2]
    tp = TopicPartition(topic, 0)
    with kafka_admin(two.bootstrap_servers) as admin:
        assert admin.alter_partition_reassignments({tp: [other]}) == {tp: None}
        for member in (one, two):
            eventually(led_by(member, topic, 0, other),
                       f"broker {other} never led {topic}-0")
        eventually(lambda: admin.list_partition_reassignments() == {},
                   "the reassignment stayed in progress")
        # led by the pin's broker, its preferred leader: no election needed
        assert elections(admin.elect_leaders(0, {topic: [0]})) == {
            (topic, 0): (ErrorCode.election_not_needed, None)}
        assert admin.alter_partition_reassignments({tp: None}) == {tp: None}
        for member in (one, two):
            eventually(led_by(member, topic, 0, balanced),
                       "the cancelled partition never went back to the balanced placement")
        assert admin.alter_partition_reassignments({tp: None}) == {
            tp: kafka_errors.NoReassignmentInProgressError}
    confluent = AdminClient({"bootstrap.servers": two.bootstrap_servers})
    result = confluent.elect_leaders(ElectionType.PREFERRED, [
        CfTopicPartition(topic, 0), CfTopicPartition(topic, 1)]).result(timeout=DEADLINE_S)
    assert {tp.partition: e.code() if e else None for tp, e in result.items()} == {
        0: ErrorCode.election_not_needed, 1: ErrorCode.election_not_needed}


def test_describe_log_dirs_lists_what_each_broker_leads(
        pair: tuple[EmbeddedBroker, EmbeddedBroker, str]) -> None:
    one, two, url = pair
    topic = new_topic([one, two], 4, 2)
    assert produce(one.bootstrap_servers, topic, "1") == 0
    led = leaders(one, topic)
    with kafka_admin(one.bootstrap_servers) as admin:
        described = admin.describe_log_dirs()
    seen: dict[int, int] = {}
    for entry in described:
        [log_dir] = entry["log_dirs"]
        assert (log_dir["error_code"], log_dir["log_dir"]) == (0, redact(url))
        assert (log_dir["total_bytes"], log_dir["usable_bytes"]) == (-1, -1)
        for t in log_dir["topics"]:
            if t["name"] != topic:
                continue
            for p in t["partitions"]:
                assert led[p["partition_index"]][0] == entry["broker"]
                seen[p["partition_index"]] = p["partition_size"]
    assert sorted(seen) == [0, 1, 2, 3]  # each partition listed once, by its leader
    assert seen[0] > 0 and seen[1] == seen[2] == seen[3] == 0


def test_min_insync_replicas_counts_the_replicas_in_sync(
        pair: tuple[EmbeddedBroker, EmbeddedBroker, str]) -> None:
    one, two, _ = pair
    enough = new_topic([one, two], 1, 2, {"min.insync.replicas": "2"})
    too_many = new_topic([one, two], 1, 2, {"min.insync.replicas": "3"})
    assert produce(one.bootstrap_servers, enough, "all") == 0
    # Kafka: an ISR of 2 (the replication factor) never reaches 3
    assert produce(one.bootstrap_servers, too_many, "all") == ErrorCode.not_enough_replicas
    assert produce(one.bootstrap_servers, too_many, "1") == 0


def test_internal_topics_get_at_most_the_live_brokers(
        pair: tuple[EmbeddedBroker, EmbeddedBroker, str]) -> None:
    one, two, _ = pair
    # broker 1 created __consumer_offsets at its start, alone: one replica (of 3 asked for)
    assert {len(r) for _, r, _ in leaders(one, "__consumer_offsets").values()} == {1}
    producer = Producer({"bootstrap.servers": two.bootstrap_servers,
                         "transactional.id": unique_name("txn")})
    producer.init_transactions(DEADLINE_S)  # creates __transaction_state, two brokers live
    eventually(lambda: len(leaders(two, "__transaction_state")) == 50,
               "broker 2 never learned of __transaction_state")
    state = leaders(two, "__transaction_state")
    assert {len(replicas) for _, replicas, _ in state.values()} == {2}
    assert all(sorted(isr) == [1, 2] for _, _, isr in state.values())


def test_a_pin_to_a_broker_that_is_down_stays_in_progress(postgres_server: PostgresServer
                                                          ) -> None:
    url = postgres_server.new_database()
    one, two = brokers(url, 1, 2)
    with running(one, two):
        bootstrap = one.bootstrap_servers
        topic = new_topic([one, two], 1, 2, {"min.insync.replicas": "2"})
        tp = TopicPartition(topic, 0)
        with kafka_admin(bootstrap) as admin:
            assert admin.alter_partition_reassignments({tp: [2]}) == {tp: None}
            eventually(led_by(one, topic, 0, 2), "broker 2 never led the partition")
            assert produce(bootstrap, topic, "all") == 0
            two.stop()  # hands its leases over at once
            eventually(led_by(one, topic, 0, 1), "broker 1 never took the partition")
            assert admin.list_partition_reassignments() == {tp: {
                "replicas": [2, 1], "adding_replicas": [2], "removing_replicas": [1]}}
            assert elections(admin.elect_leaders(0, {topic: [0]}, raise_errors=False)) == {
                (topic, 0): (ErrorCode.preferred_leader_not_available,
                             "The preferred leader was not available.")}
            assert elections(admin.elect_leaders(1, {topic: [0]})) == {
                (topic, 0): (ErrorCode.election_not_needed, None)}
            assert produce(bootstrap, topic, "all") == ErrorCode.not_enough_replicas
            assert produce(bootstrap, topic, "1") == 0
            two.start()  # the pin takes the lease back as soon as its broker is live
            eventually(led_by(one, topic, 0, 2), "broker 2 never led it again")
            assert admin.list_partition_reassignments() == {}
            eventually(lambda: produce(bootstrap, topic, "all") == 0,
                       "acks=all refused with both brokers live")


def test_an_election_moves_a_lease_now(postgres_server: PostgresServer) -> None:
    """A pin written to the database without a NOTIFY (as when the hint is lost): broker 2,
    which heartbeats often, sees that a partition belongs to it; broker 1, which holds it and
    heartbeats every 30 s, hands it over only when an election wakes it."""
    url = postgres_server.new_database()
    [one] = brokers(url, 1, settings={"broker.heartbeat.interval.ms": "30000",
                                      "broker.session.timeout.ms": "90000"})
    [two] = brokers(url, 2)
    with running(one, two):
        topic = new_topic([one, two], 4, 1)
        partition = next(p for p, (leader, _, _) in leaders(two, topic).items() if leader == 1)
        postgres_server.psql(url.rsplit("/", 1)[1], (
            "UPDATE strom_partition SET assigned = ARRAY[2] WHERE index = "
            f"{partition} AND topic_id = (SELECT topic_id FROM strom_topic "
            f"WHERE name = '{topic}')"))
        wanted = elect.TopicPartitions(topic=topic, partitions=(i32(partition),))
        with RawClient(two.port) as client:
            listing = list_request(topic, partition)
            eventually(lambda: bool(client.request(listing).topics),
                       "broker 2 never saw the pin")  # in progress: the lease is on 1
            assert leaders(two, topic)[partition][0] == 1
            asked = time.monotonic()
            answer = elections(client.request(elect.ElectLeadersRequest(
                election_type=i8(0), timeout=TIMEOUT, topic_partitions=(wanted,))))
            assert answer == {(topic, partition): (ErrorCode.none, None)}
            eventually(led_by(two, topic, partition, 2),
                       "the elected partition never moved to broker 2")
            assert time.monotonic() - asked < 10  # long before broker 1's next heartbeat
            again = elections(client.request(elect.ElectLeadersRequest(
                election_type=i8(0), timeout=TIMEOUT, topic_partitions=(wanted,))))
            assert again == {(topic, partition): (ErrorCode.election_not_needed, None)}
            assert client.request(listing).topics == ()


def list_request(topic: str, partition: int) -> Any:
    return listing.ListPartitionReassignmentsRequest(timeout=TIMEOUT, topics=(
        listing.ListPartitionReassignmentsTopics(name=topic,
                                                 partition_indexes=(i32(partition),)),))


def test_replicas_spread_over_racks(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    racks = {1: "a", 2: "a", 3: "b"}
    members = [EmbeddedBroker(settings={**FAST, "node.id": str(n), "broker.rack": rack},
                              storage=url) for n, rack in racks.items()]
    with running(*members):
        bootstrap = members[0].bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        described = admin.describe_cluster().result(DEADLINE_S)
        assert {n.id: n.rack for n in described.nodes} == racks
        topic = new_topic(members, 6, 2)
        for leader, replicas, _ in leaders(members[0], topic).values():
            assert replicas[0] == leader
            assert {racks[n] for n in replicas} == {"a", "b"}  # one replica per rack
