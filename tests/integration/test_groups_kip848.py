"""KIP-848 consumer groups on strom with librdkafka's `group.protocol=consumer`: the server-side
assignors spread a 6-partition topic over three members without overlap, a closing member's
partitions move to the others, every record is consumed once with synchronous commits, and
ConsumerGroupDescribe / ConsumerGroupHeartbeat answer raw requests as Kafka does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient
from kio.schema.consumer_group_describe.v0.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.errors import ErrorCode
from kio.schema.types import GroupId
from kio.static.primitive import i32, i32Timedelta

from strom.testing import EmbeddedBroker
from tests.integration.conftest import ALL_ENGINES, DEADLINE_S, unique_name
from tests.integration.group_clients import (
    GROUP_BROKER_SETTINGS,
    Consumed,
    Member,
    close_all,
    drain,
    kip848_member,
    offsets_by_partition,
    produce_spread,
    settle,
)
from tests.integration.raw_client import RawClient

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

PARTITIONS = 6


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {**GROUP_BROKER_SETTINGS, "group.consumer.heartbeat.interval.ms": "300",
            "group.consumer.session.timeout.ms": "6000"}


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    close_all(made)


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_three_members_then_one_leaves(broker: EmbeddedBroker, new_topic: Any,
                                       members: list[Member], assignor: str) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(PARTITIONS)
    group = unique_name("kip848")
    log: list[Consumed] = []
    produce_spread(bootstrap, topic, 60, 0, PARTITIONS)
    for name in ("a", "b", "c"):
        members.append(kip848_member(name, bootstrap, group, topic, log, assignor))
    spread = settle(members, range(PARTITIONS))
    assert all(len(parts) == 2 for parts in spread.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(
        timeout=DEADLINE_S)
    assert described.type == ConsumerGroupType.CONSUMER
    assert described.state == ConsumerGroupState.STABLE
    assert {len(m.assignment.topic_partitions) for m in described.members} == {2}
    members[0].close()
    rest = members[1:]
    settle(rest, range(PARTITIONS))
    produce_spread(bootstrap, topic, 60, 60, PARTITIONS)
    drain(rest, lambda: len(log) >= 120)
    by_partition = offsets_by_partition(log)
    assert {p: sorted(offs) for p, offs in by_partition.items()} == {
        p: list(range(20)) for p in range(PARTITIONS)}
    assert len(log) == 120  # each record once


def heartbeat(client: RawClient, group: str, member_id: str, epoch: int, **extra: Any) -> Any:
    fields: dict[str, Any] = dict(
        group_id=group, member_id=member_id, member_epoch=i32(epoch),
        rebalance_timeout=i32Timedelta.parse(timedelta(seconds=10)),
        subscribed_topic_names=None, topic_partitions=())
    fields.update(extra)
    return client.request(ConsumerGroupHeartbeatRequest(**fields))


def test_raw_heartbeat_and_describe(broker: EmbeddedBroker, new_topic: Any) -> None:
    topic = new_topic(PARTITIONS)
    group = unique_name("kip848raw")
    member_id = str(uuid.uuid4())
    with RawClient(broker.port) as client:
        joined = heartbeat(client, group, member_id, 0, subscribed_topic_names=(topic,))
        assert joined.error_code == ErrorCode.none
        assert joined.member_epoch == 1
        assert joined.heartbeat_interval == timedelta(milliseconds=300)
        assert joined.assignment is not None
        assert sorted(joined.assignment.topic_partitions[0].partitions) == list(range(6))
        bad = heartbeat(client, group, member_id, 0, subscribed_topic_names=(topic,),
                        server_assignor="nope")
        assert bad.error_code == ErrorCode.unsupported_assignor
        fenced = heartbeat(client, group, member_id, 7)
        assert fenced.error_code == ErrorCode.fenced_member_epoch
        unknown = heartbeat(client, group, "who", 1)
        assert unknown.error_code == ErrorCode.unknown_member_id
        empty_id = heartbeat(client, group, "", 0, subscribed_topic_names=(topic,))
        assert empty_id.error_code == ErrorCode.invalid_request
        described = client.request(ConsumerGroupDescribeRequest(
            group_ids=(GroupId(group), GroupId(unique_name("none"))),
            include_authorized_operations=False))
        found, missing = described.groups
        assert found.error_code == ErrorCode.none
        assert (found.group_state, found.group_epoch, found.assignment_epoch) == ("Stable", 1, 1)
        assert found.assignor_name == "uniform"
        (member,) = found.members
        assert member.member_id == member_id
        assert member.assignment.topic_partitions[0].topic_name == topic
        assert missing.error_code == ErrorCode.group_id_not_found
        left = heartbeat(client, group, member_id, -1, rebalance_timeout=i32Timedelta.parse(
            timedelta(milliseconds=-1)), topic_partitions=None)
        assert left.error_code == ErrorCode.none and left.member_epoch == -1
